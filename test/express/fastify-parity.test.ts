/**
 * One Redis, one secret, one prefix: an Express gateway, a Fastify gateway with hand-written routes and a Fastify
 * gateway on @fastify/http-proxy (stickyHttpProxy) are one gateway to the clients. Whichever door a client comes in
 * first, every later request through another door lands on the same upstream, with no new cookie; header keys
 * agree the same way, and every door sends the same bytes (Set-Cookie) and the same request headers upstream. A
 * routing cookie got over HTTP through one door routes a WebSocket through another.
 */
import t from 'tap'
import { stickyHttpProxy } from '../../lib/http-proxy/index'
import { startGateway, type TestGateway } from '../support/gateway'
import { CookieJar, get } from '../support/http'
import { startRedis, uniquePrefix } from '../support/redis'
import { startUpstreams } from '../support/upstreams'
import { openSocket, startWsUpstreams } from '../support/ws-upstream'
import { startExpressGateway, type TestExpressGateway } from './express-gateway'

t.test('Express, Fastify and http-proxy gateways sharing one Redis route every client identically', async (t) => {
  const redis = await startRedis(t)
  const upstreams = await startUpstreams(t, ['a', 'b', 'c'])
  const prefix = uniquePrefix()
  // 50 new clients from one address in a few seconds: the per-client new-binding budget would serve some unbound.
  const shared = { upstreams, redis: redis.url, prefix, newBindings: false as const }
  const fastify: TestGateway = await startGateway(t, {
    ...shared,
    routes (app) {
      app.all('/tenant/*', { config: { sticky: { key: { header: 'x-tenant' } } } }, (_request, reply) => reply.forward())
      app.all('/*', { config: { sticky: true } }, (_request, reply) => reply.forward())
    }
  })
  const express: TestExpressGateway = await startExpressGateway(t, {
    ...shared,
    mount (sticky, app) {
      app?.use('/tenant', sticky.proxy({ key: { header: 'x-tenant' } }))
      app?.use(sticky.proxy())
    }
  })
  const httpProxy: TestGateway = await startGateway(t, {
    ...shared,
    routes (app) {
      void app.register(stickyHttpProxy, { prefix: '/tenant', rewritePrefix: '/tenant', sticky: { key: { header: 'x-tenant' } } })
      void app.register(stickyHttpProxy, {})
    }
  })
  const doors = [{ name: 'express', url: express.url }, { name: 'fastify', url: fastify.url }, { name: 'http-proxy', url: httpProxy.url }]
  const hitsOf = (): number[] => [express.sticky.api.stats.hit, fastify.app.sticky.stats.hit, httpProxy.app.sticky.stats.hit]

  t.test('50 cookie clients: first request through one door, later ones through the next', async (t) => {
    const hitsBefore = hitsOf()
    const clients = await Promise.all(Array.from({ length: 50 }, async (_, i) => {
      const jar = new CookieJar()
      const first = doors[i % 3]
      const response = await get(`${first.url}/first/${i}`, { jar })
      return { i, jar, first, upstream: response.json().upstream as string, cookies: response.setCookies.length }
    }))
    t.ok(clients.every((c) => c.cookies === 1), 'each new client got one routing cookie from its first door')
    t.ok(new Set(clients.map((c) => c.upstream)).size === 3, 'spread over all three upstreams')
    let mismatches = 0
    let newCookies = 0
    for (let round = 0; round < 3; round++) {
      await Promise.all(clients.map(async (client) => {
        const other = doors[(client.i + 1) % 3]
        const response = await get(`${other.url}/later/${round}`, { jar: client.jar })
        if (response.json().upstream !== client.upstream) mismatches++
        newCookies += response.setCookies.length
      }))
    }
    t.equal(mismatches, 0, 'all 150 later requests, through another door, reached the client\'s upstream')
    t.equal(newCookies, 0, 'and no door re-issued a cookie')
    // Door d serves the later requests of the clients that came in at door d - 1: 16 or 17 clients, 3 rounds each.
    const hits = hitsOf().map((after, d) => after - hitsBefore[d])
    t.same(hits, [48, 51, 51], 'each door found the previous door\'s bindings in Redis')
    const counts = await Promise.all([express.sticky.api.sessionCounts('shop'), fastify.app.sticky.sessionCounts('shop'), httpProxy.app.sticky.sessionCounts('shop')])
    t.same(counts[1], counts[0], 'the Fastify door counts the same sessions as the Express door')
    t.same(counts[2], counts[0], 'and so does the http-proxy door')
  })

  t.test('header-key clients agree too, and a race for one new key has one winner', async (t) => {
    const tenants = Array.from({ length: 20 }, (_, i) => `tenant-${i}`)
    const bound = await Promise.all(tenants.map(async (tenant, i) =>
      (await get(`${doors[i % 3].url}/tenant/x`, { headers: { 'x-tenant': tenant } })).json().upstream as string))
    for (const [i, tenant] of tenants.entries()) {
      const response = await get(`${doors[(i + 1) % 3].url}/tenant/y`, { headers: { 'x-tenant': tenant } })
      t.equal(response.json().upstream, bound[i], `${tenant} through the other door`)
      t.equal(response.setCookies.length, 0, 'header keys set no cookie')
    }
    const racers = await Promise.all(Array.from({ length: 20 }, async (_, i) =>
      (await get(`${doors[i % 3].url}/tenant/race`, { headers: { 'x-tenant': 'racer' } })).json().upstream as string))
    t.equal(new Set(racers).size, 1, `20 concurrent first requests for one tenant, over the three doors: one upstream (${[...new Set(racers)].join(',')})`)
  })

  t.test('every door sends the same cookie bytes and the same request upstream', async (t) => {
    const viaExpress = await get(`${express.url}/same?q=1`, { headers: { 'x-app': 'v', cookie: 'app=1' } })
    const viaFastify = await get(`${fastify.url}/same?q=1`, { headers: { 'x-app': 'v', cookie: 'app=1' } })
    const viaHttpProxy = await get(`${httpProxy.url}/same?q=1`, { headers: { 'x-app': 'v', cookie: 'app=1' } })
    const shape = (line: string): string => line.replace(/^sticky=[^;]+/, 'sticky=<token>')
    t.same(viaExpress.setCookies.map(shape), viaFastify.setCookies.map(shape), 'same Set-Cookie attributes')
    t.same(viaHttpProxy.setCookies.map(shape), viaFastify.setCookies.map(shape), 'same Set-Cookie attributes through http-proxy')
    t.equal(viaExpress.headers['cache-control'], viaFastify.headers['cache-control'])
    t.equal(viaHttpProxy.headers['cache-control'], viaFastify.headers['cache-control'])
    const seen = (echo: { upstream: string, url: string, headers: Record<string, string> }): Record<string, unknown> => {
      const { host, 'x-forwarded-host': forwardedHost, connection, ...headers } = echo.headers
      void host; void connection
      return { url: echo.url, headers, forwardedHostIsGateway: forwardedHost !== undefined }
    }
    t.same(seen(viaExpress.json()), seen(viaFastify.json()), 'same target and headers (Host and X-Forwarded-Host name each gateway)')
    t.same(seen(viaHttpProxy.json()), seen(viaFastify.json()), 'and through http-proxy')
    // A cookie made by one door is verified by the other (same secret, same signer).
    const jar = new CookieJar().store(viaExpress.setCookies)
    const back = await get(`${fastify.url}/same`, { jar })
    t.same([back.json().upstream, back.setCookies.length], [viaExpress.json().upstream, 0])
  })

  t.test('a routing cookie from one door\'s HTTP routes the next door\'s WebSocket', async (t) => {
    const live = await startWsUpstreams(t, ['a', 'b', 'c'])
    const wsShared = { pools: { shop: { upstreams: live.map(({ id, url }) => ({ id, url })) } }, redis: redis.url, prefix: uniquePrefix(), newBindings: false as const }
    const wsDoors = [
      (await startExpressGateway(t, wsShared)).url,
      (await startGateway(t, wsShared)).url,
      (await startGateway(t, { ...wsShared, routes (app) { void app.register(stickyHttpProxy, {}) } })).url
    ]
    for (let i = 0; i < 6; i++) {
      const page = await get(`${wsDoors[i % 3]}/page`)
      const opened = await openSocket(wsDoors[(i + 1) % 3].replace('http:', 'ws:') + '/live', page.setCookies[0].split(';')[0])
      t.same([opened.hello.upstream, opened.setCookie.length], [page.json().upstream, 0], `client ${i}: same upstream, no new cookie`)
      opened.ws.terminate()
    }
  })
})
