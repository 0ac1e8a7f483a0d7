/**
 * The behaviour suite (test/doors/behaviours.ts) through `stickyHttpProxy` (fastify-sticky/http-proxy): each route
 * an @fastify/http-proxy registration naming the pool, WebSocket through the plugin's tunnel. Then what only this
 * door does: http-proxy's prefix and path rewriting (for upgrades too), its body pass-through, Location mapped back
 * under the prefix, the user's preHandler, `websocket: false`, and options that conflict with routing by pool
 * refused at register time.
 */
import http from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import Fastify from 'fastify'
import t from 'tap'
import sticky from '../../lib/index'
import { stickyHttpProxy, type StickyHttpProxyOptions } from '../../lib/http-proxy/index'
import { startGateway, TEST_SECRET } from '../support/gateway'
import { get } from '../support/http'
import { startUpstreams } from '../support/upstreams'
import { openSocket, refusedUpgrade, startWsUpstreams } from '../support/ws-upstream'
import { DOOR_ROUTES, doorBehaviours, fastifyDoor } from '../doors/behaviours'

const httpProxy = fastifyDoor('stickyHttpProxy', async (app) => {
  // rewritePrefix = prefix: the target goes upstream unchanged, as through the other doors.
  for (const route of DOOR_ROUTES) await app.register(stickyHttpProxy, { prefix: route.prefix, rewritePrefix: route.prefix, sticky: route.sticky })
  await app.register(stickyHttpProxy, {})
})

// The suite and the door's own cases share nothing: side by side.
t.jobs = 2

doorBehaviours(t, httpProxy)

t.test('stickyHttpProxy only', async (t) => {
  t.jobs = 4

  t.test('the prefix stripped as http-proxy does, the query kept; bodies through its pass-through parser', async (t) => {
    const upstreams = await startUpstreams(t, ['a', 'b'])
    const gateway = await startGateway(t, { upstreams, routes (app) { void app.register(stickyHttpProxy, { prefix: '/shop', pool: 'shop' }) } })
    const first = await get(`${gateway.url}/shop/cart?item=7`)
    t.equal(first.json().url, '/cart?item=7', 'http-proxy\'s default rewritePrefix strips the prefix')
    t.equal(first.setCookies.length, 1, 'a new client gets a routing cookie')
    const posted = await get(`${gateway.url}/shop/again`, { cookie: first.setCookies[0].split(';')[0], method: 'POST', body: { n: 1 } })
    t.same([posted.json().upstream, posted.json().body, posted.setCookies.length], [first.json().upstream, JSON.stringify({ n: 1 }), 0], 'same upstream, body intact')
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

  t.test('WebSocket: the upgrade target rewritten like HTTP; websocket: false answers upgrades 404', async (t) => {
    const upstreams = await startWsUpstreams(t, ['a', 'b'])
    const pools = { live: { upstreams: upstreams.map(({ id, url }) => ({ id, url })) } }
    const gateway = await startGateway(t, { pools, routes (app) { void app.register(stickyHttpProxy, { prefix: '/live', pool: 'live', websocket: true }) } })
    const opened = await openSocket(gateway.url.replace('http:', 'ws:') + '/live/socket?room=1')
    t.equal(opened.hello.url, '/socket?room=1', 'prefix stripped, query kept')
    t.equal(opened.setCookie.length, 1, 'through the plugin\'s tunnel: the routing cookie on the 101')
    opened.ws.terminate()
    const plain = await startGateway(t, { pools, routes (app) { void app.register(stickyHttpProxy, { prefix: '/live', pool: 'live', websocket: false }) } })
    t.equal((await refusedUpgrade(plain.url.replace('http:', 'ws:') + '/live/socket')).status, 404, 'as a route without WebSocket')
    t.equal((await get(`${plain.url}/live/http`)).status, 200, 'HTTP still proxied')
  })

  t.test('register-time errors name the option', async (t) => {
    const build = async (proxy: Record<string, unknown>, plugin: Record<string, unknown> = {}, withSticky = true): Promise<void> => {
      const app = Fastify()
      t.teardown(() => app.close())
      if (withSticky) await app.register(sticky, { secret: TEST_SECRET, pools: { shop: { upstreams: [{ id: 'a', url: 'http://127.0.0.1:1' }] } }, ...plugin })
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
})
