/**
 * @fastify/http-proxy made sticky with `stickyHttpProxy`: http-proxy's prefix and path rewriting, the plugin's
 * affinity (cookie, failover with x-sticky-rebound, two gateways agreeing through Redis), WebSocket through the
 * plugin's tunnel (cookie on the 101, same upstream as HTTP), Location mapped back under the prefix, and options
 * that conflict with routing by pool refused at register time.
 */
import http from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import Fastify from 'fastify'
import t, { type Test } from 'tap'
import WebSocket, { WebSocketServer } from 'ws'
import sticky from '../../lib/index'
import { stickyHttpProxy, type StickyHttpProxyOptions } from '../../lib/http-proxy/index'
import { startGateway, TEST_SECRET, type TestGateway } from '../helpers/gateway'
import { CookieJar, get } from '../helpers/http'
import { startRedis, uniquePrefix } from '../helpers/redis'
import { startUpstreams, type TestUpstream } from '../helpers/upstreams'

function proxyGateway (t: Test, upstreams: TestUpstream[], extra: { redis?: string, prefix?: string, websocket?: false }, proxy: StickyHttpProxyOptions[]): Promise<TestGateway> {
  return startGateway(t, {
    upstreams,
    newBindings: false,
    ...(extra.redis === undefined ? {} : { redis: extra.redis, prefix: extra.prefix }),
    ...(extra.websocket === false ? { websocket: false } : {}),
    routes (app) {
      for (const options of proxy) void app.register(stickyHttpProxy, options)
    }
  })
}

t.test('HTTP: prefix rewritten as http-proxy does, cookie affinity shared by two gateways on one Redis', async (t) => {
  const redis = await startRedis(t)
  const upstreams = await startUpstreams(t, ['a', 'b', 'c'])
  const shared = { redis: redis.url, prefix: uniquePrefix() }
  const gateways = [
    await proxyGateway(t, upstreams, shared, [{ prefix: '/shop', pool: 'shop' }]),
    await proxyGateway(t, upstreams, shared, [{ prefix: '/shop', pool: 'shop' }])
  ]
  const first = await get(`${gateways[0].url}/shop/cart?item=7`)
  t.equal(first.status, 200)
  t.equal(first.json().url, '/cart?item=7', 'the prefix is stripped (http-proxy\'s default rewritePrefix) and the query kept')
  t.equal(first.setCookies.length, 1, 'a new client gets a routing cookie')

  const clients = await Promise.all(Array.from({ length: 20 }, async (_, i) => {
    const jar = new CookieJar()
    const response = await get(`${gateways[i % 2].url}/shop/first`, { jar })
    return { i, jar, upstream: response.json().upstream as string }
  }))
  t.equal(new Set(clients.map((c) => c.upstream)).size, 3, 'new clients spread over the pool')
  let moved = 0
  let cookies = 0
  for (const client of clients) {
    const response = await get(`${gateways[(client.i + 1) % 2].url}/shop/again`, { jar: client.jar, method: 'POST', body: { n: client.i } })
    if (response.json().upstream !== client.upstream) moved++
    cookies += response.setCookies.length
    t.equal(response.json().body, JSON.stringify({ n: client.i }), 'the body reaches the upstream through http-proxy\'s pass-through parser')
  }
  t.equal(moved, 0, 'every client stays on its upstream through the other gateway')
  t.equal(cookies, 0, 'and gets no new cookie')
})

t.test('failover: a dead upstream\'s sessions move, the app is told with x-sticky-rebound', async (t) => {
  const upstreams = await startUpstreams(t, ['a', 'b'])
  const gateway = await proxyGateway(t, upstreams, {}, [{ prefix: '/shop', pool: 'shop' }])
  const jar = new CookieJar()
  const first = (await get(`${gateway.url}/shop/x`, { jar })).json().upstream as string
  await upstreams.find((u) => u.id === first)?.close()
  const after = await get(`${gateway.url}/shop/y`, { jar })
  t.equal(after.status, 200, 'answered by the other upstream, not a 502')
  t.not(after.json().upstream, first)
  t.equal(after.json().headers['x-sticky-rebound'], '1', 'the new upstream is told the session moved')
  t.equal(after.setCookies.length, 1, 'and the client gets the new binding\'s cookie')
  const again = await get(`${gateway.url}/shop/z`, { jar })
  t.same([again.json().upstream, again.json().headers['x-sticky-rebound'], again.setCookies.length], [after.json().upstream, undefined, 0])
})

t.test('rewritePrefix, Location back under the prefix, header key routes, preHandler kept', async (t) => {
  const [a, b] = await startUpstreams(t, ['a', 'b'])
  // An upstream that redirects with an absolute Location naming itself, under its own path space.
  const redirector = http.createServer((req, res) => {
    res.writeHead(302, { location: `http://127.0.0.1:${(redirector.address() as AddressInfo).port}/api/login?from=${encodeURIComponent(req.url ?? '')}` })
    res.end()
  })
  redirector.listen(0, '127.0.0.1')
  await once(redirector, 'listening')
  t.teardown(() => new Promise((resolve) => redirector.close(resolve)))
  const redirectorUrl = `http://127.0.0.1:${(redirector.address() as AddressInfo).port}`
  let preHandlerCalls = 0
  const gateway = await startGateway(t, {
    pools: {
      shop: { upstreams: [a, b].map(({ id, url }) => ({ id, url })) },
      auth: { upstreams: [{ id: 'r', url: redirectorUrl }] }
    },
    defaults: { pool: 'shop' },
    routes (app) {
      void app.register(stickyHttpProxy, {
        prefix: '/tenant',
        rewritePrefix: '/t',
        sticky: { key: { header: 'x-tenant' } },
        preHandler: async () => { preHandlerCalls++ }
      })
      void app.register(stickyHttpProxy, { prefix: '/auth', pool: 'auth', rewritePrefix: '/api' })
    }
  })
  const one = await get(`${gateway.url}/tenant/orders`, { headers: { 'x-tenant': 'acme' } })
  t.equal(one.json().url, '/t/orders', 'rewritePrefix maps the prefix to the upstream\'s path')
  t.equal(one.setCookies.length, 0, 'a header key sets no cookie')
  for (let i = 0; i < 5; i++) {
    t.equal((await get(`${gateway.url}/tenant/o${i}`, { headers: { 'x-tenant': 'acme' } })).json().upstream, one.json().upstream, 'the tenant stays put')
  }
  t.equal(preHandlerCalls, 6, 'the user\'s preHandler ran on every request')
  const redirect = await get(`${gateway.url}/auth/me`)
  t.equal(redirect.status, 302)
  t.equal(redirect.headers.location, '/auth/login?from=%2Fapi%2Fme', 'Location without the upstream\'s address, mapped back under the public prefix')
})

interface WsUpstream { id: string, url: string }
async function startWsUpstreams (t: Test, ids: string[]): Promise<WsUpstream[]> {
  const result: WsUpstream[] = []
  for (const id of ids) {
    const server = http.createServer((req, res) => { res.end(JSON.stringify({ upstream: id, url: req.url })) })
    const wss = new WebSocketServer({ server })
    wss.on('connection', (socket, req) => {
      socket.send(`${id}:hello:${req.url ?? ''}`)
      socket.on('message', (data) => socket.send(`${id}:${String(data)}`))
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    result.push({ id, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` })
    t.teardown(async () => {
      for (const client of wss.clients) client.terminate()
      wss.close()
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    })
  }
  return result
}

async function openWs (url: string, cookie?: string): Promise<{ ws: WebSocket, setCookie: string[], first: string }> {
  const ws = new WebSocket(url, { headers: cookie === undefined ? {} : { cookie } })
  let setCookie: string[] = []
  ws.once('upgrade', (response) => { setCookie = (response.headers['set-cookie'] as string[] | undefined) ?? [] })
  const [first] = await once(ws, 'message')
  return { ws, setCookie, first: String(first) }
}

t.test('WebSocket: through the plugin\'s tunnel, cookie on the 101, same upstream as HTTP, failover before the 101', async (t) => {
  const upstreams = await startWsUpstreams(t, ['a', 'b', 'c'])
  const gateway = await startGateway(t, {
    pools: { live: { upstreams: upstreams.map(({ id, url }) => ({ id, url })), cooldown: '1h' } },
    routes (app) { void app.register(stickyHttpProxy, { prefix: '/live', pool: 'live', websocket: true }) }
  })
  const wsUrl = gateway.url.replace('http:', 'ws:') + '/live/socket?room=1'
  const opened = await openWs(wsUrl)
  t.equal(opened.setCookie.length, 1, 'the 101 carries the routing cookie')
  const [upstream, , path] = opened.first.split(':')
  t.equal(path, '/socket?room=1', 'the upgrade target is rewritten like HTTP (prefix stripped, query kept)')
  opened.ws.send('ping')
  const [echo] = await once(opened.ws, 'message')
  t.equal(String(echo), `${upstream}:ping`, 'messages go through the tunnel')
  const cookie = opened.setCookie[0].split(';')[0]
  t.equal((await get(`${gateway.url}/live/http`, { cookie })).json().upstream, upstream, 'HTTP with the 101\'s cookie goes to the same upstream')
  opened.ws.close()

  const again = await openWs(wsUrl, cookie)
  t.same([again.first.split(':')[0], again.setCookie.length], [upstream, 0], 'a reconnect with the cookie returns to it, no new cookie')
  again.ws.terminate()

  const plain = await startGateway(t, {
    pools: { live: { upstreams: upstreams.map(({ id, url }) => ({ id, url })) } },
    routes (app) { void app.register(stickyHttpProxy, { prefix: '/live', pool: 'live', websocket: false }) }
  })
  const ws = new WebSocket(plain.url.replace('http:', 'ws:') + '/live/socket')
  ws.on('error', () => {})
  const [, refused] = await once(ws, 'unexpected-response') as [unknown, http.IncomingMessage]
  t.equal(refused.statusCode, 404, 'websocket: false answers upgrades 404, as a route without WebSocket')
  refused.resume()
  ws.terminate()
})

t.test('WebSocket failover: the session\'s upstream gone, the upgrade is retried elsewhere before any 101', async (t) => {
  const [a, b] = await startUpstreams(t, ['a', 'b'])
  const live = await startWsUpstreams(t, ['w'])
  // Pool of a dead HTTP-only upstream id bound first, then a live WebSocket one.
  const gateway = await startGateway(t, {
    pools: { live: { upstreams: [{ id: a.id, url: a.url }, { id: 'w', url: live[0].url }] } },
    routes (app) { void app.register(stickyHttpProxy, { prefix: '/live', pool: 'live' }) }
  })
  void b
  const jar = new CookieJar()
  let bound = ''
  for (let i = 0; i < 10 && bound !== 'a'; i++) {
    const next = new CookieJar()
    const response = await get(`${gateway.url}/live/who`, { jar: next })
    bound = response.json().upstream
    if (bound === 'a') jar.store(response.setCookies)
  }
  t.equal(bound, 'a', 'a client bound to upstream a')
  await a.close()
  const opened = await openWs(gateway.url.replace('http:', 'ws:') + '/live/socket', jar.header())
  t.equal(opened.first.split(':')[0], 'w', 'the upgrade reached the live upstream')
  t.equal(opened.setCookie.length, 1, 'with the moved session\'s new cookie on the 101')
  opened.ws.terminate()
})

t.test('register-time errors name the option', async (t) => {
  const [a] = await startUpstreams(t, ['a'])
  const build = async (proxy: Record<string, unknown>, plugin: Record<string, unknown> = {}, withSticky = true): Promise<void> => {
    const app = Fastify()
    t.teardown(() => app.close())
    if (withSticky) await app.register(sticky, { secret: TEST_SECRET, pools: { shop: { upstreams: [{ id: a.id, url: a.url }] } }, ...plugin })
    await app.register(stickyHttpProxy, proxy as StickyHttpProxyOptions)
    await app.ready()
  }
  await t.rejects(build({ prefix: '/x', upstream: 'http://127.0.0.1:1' }), { code: 'FST_STICKY_INVALID_OPTION', message: /stickyHttpProxy\.upstream .*pool/ })
  await t.rejects(build({ prefix: '/x', replyOptions: {} }), { message: /stickyHttpProxy\.replyOptions/ })
  await t.rejects(build({ prefix: '/x', wsReconnect: {} }), { message: /stickyHttpProxy\.wsReconnect/ })
  await t.rejects(build({ prefix: '/x', pool: 'shop', sticky: { pool: 'other' } }), { message: /stickyHttpProxy\.pool names "shop" but stickyHttpProxy\.sticky\.pool names "other"/ })
  await t.rejects(build({ prefix: '/x', pool: 'nope' }), { code: 'FST_STICKY_INVALID_ROUTE_CONFIG', message: /nope/ })
  await t.rejects(build({ prefix: '/x', websocket: true }, { websocket: false }), { message: /stickyHttpProxy\.websocket is true/ })
  await t.rejects(build({ prefix: '/x' }, {}, false), { message: /needs the fastify-sticky plugin registered first/ })
  await t.resolves(build({ prefix: '/x', pool: 'shop' }), 'a valid proxy registers')
})
