/**
 * `stickyProxy`: a prefix proxied to a pool without @fastify/http-proxy — target kept or prefix replaced, cookie
 * affinity, per-proxy route settings, methods, %-encoded prefixes refused, options checked at register time.
 */
import Fastify from 'fastify'
import t from 'tap'
import sticky, { stickyProxy, type StickyProxyOptions } from '../../lib/index'
import { startGateway, TEST_SECRET } from '../support/gateway'
import { CookieJar, get } from '../support/http'
import { rawExchange } from '../support/raw-http'
import { startUpstreams } from '../support/upstreams'

t.test('targets: kept, stripped or mapped; cookie affinity; settings and methods per proxy', async (t) => {
  const [a, b, c] = await startUpstreams(t, ['a', 'b', 'c'])
  const gateway = await startGateway(t, {
    pools: {
      shop: { upstreams: [a, b].map(({ id, url }) => ({ id, url })) },
      api: { upstreams: [{ id: c.id, url: c.url }] }
    },
    defaults: { pool: 'shop' },
    routes (app) {
      void app.register(stickyProxy, { prefix: '/shop', pool: 'shop' })
      void app.register(stickyProxy, { prefix: '/bare', pool: 'shop', rewritePrefix: '' })
      void app.register(stickyProxy, { prefix: '/v1', pool: 'api', rewritePrefix: '/api/', methods: ['GET'] })
      void app.register(stickyProxy, { prefix: '/tenant', sticky: { key: { header: 'x-tenant' } } })
    }
  })
  const cases: Array<[string, string]> = [
    ['/shop/cart?x=1', '/shop/cart?x=1'],
    ['/shop', '/shop'],
    ['/bare/cart?x=1', '/cart?x=1'],
    ['/bare', '/'],
    ['/bare?x=1', '/?x=1'],
    ['/v1/users/7', '/api/users/7'],
    ['/v1?q=a%20b', '/api?q=a%20b'],
    ['/v1/%2Fenc', '/api/%2Fenc']
  ]
  for (const [path, upstreamSees] of cases) {
    const response = await get(`${gateway.url}${path}`)
    t.equal(response.json().url, upstreamSees, `${path} reaches the upstream as ${upstreamSees}`)
  }
  t.equal((await get(`${gateway.url}/v1/x`)).json().upstream, 'c', 'pool api')
  t.equal((await get(`${gateway.url}/v1/x`, { method: 'POST', body: 'x' })).status, 404, 'methods: only GET is routed under /v1')

  const jar = new CookieJar()
  const first = await get(`${gateway.url}/shop/a`, { jar })
  t.equal(first.setCookies.length, 1, 'a routing cookie for a new client')
  for (let i = 0; i < 4; i++) {
    const again = await get(`${gateway.url}/bare/b${i}`, { jar, method: 'POST', body: { i } })
    t.same([again.json().upstream, again.setCookies.length, again.json().body], [first.json().upstream, 0, JSON.stringify({ i })], 'same pool, same cookie, same upstream; body intact')
  }
  const tenant = await get(`${gateway.url}/tenant/x`, { headers: { 'x-tenant': 'acme' } })
  t.equal(tenant.setCookies.length, 0, 'a header-key proxy sets no cookie')
  for (let i = 0; i < 4; i++) t.equal((await get(`${gateway.url}/tenant/y${i}`, { headers: { 'x-tenant': 'acme' } })).json().upstream, tenant.json().upstream)

  const encoded = await rawExchange(gateway.url, 'GET /b%61re/cart HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
  t.equal(encoded.status, 400, 'a %-encoded prefix is refused, never cut at the wrong place')
  t.match(encoded.rest, /FST_STICKY_BAD_REQUEST_TARGET/)
  // Sent raw: a WHATWG URL client would resolve the dot segments itself.
  const climb = await rawExchange(gateway.url, 'GET /v1/a/%2e%2e/%2e%2e/secret HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
  t.equal(climb.status, 400, 'a climb out of the mapped prefix is refused')
  t.match(climb.rest, /FST_STICKY_BAD_REQUEST_TARGET/)
})

t.test('register-time errors name the option', async (t) => {
  const [a] = await startUpstreams(t, ['a'])
  const build = async (proxy: Record<string, unknown>, withSticky = true): Promise<void> => {
    const app = Fastify()
    t.teardown(() => app.close())
    if (withSticky) await app.register(sticky, { secret: TEST_SECRET, pools: { shop: { upstreams: [{ id: a.id, url: a.url }] } } })
    await app.register(stickyProxy, proxy as StickyProxyOptions)
    await app.ready()
  }
  await t.rejects(build({ prefix: '/x', upstream: 'http://127.0.0.1:1' }), { code: 'FST_STICKY_INVALID_OPTION', message: /stickyProxy\.upstream is not a known option/ })
  await t.rejects(build({ prefix: '/x', rewritePrefix: 'api' }), { message: /stickyProxy\.rewritePrefix must be/ })
  await t.rejects(build({ prefix: '/x', methods: [] }), { message: /stickyProxy\.methods/ })
  await t.rejects(build({ prefix: '/x', pool: '' }), { message: /stickyProxy\.pool must be a pool name/ })
  await t.rejects(build({ prefix: '/x', sticky: 'yes' }), { message: /stickyProxy\.sticky must be/ })
  await t.rejects(build({ prefix: '/x', pool: 'nope' }), { code: 'FST_STICKY_INVALID_ROUTE_CONFIG', message: /nope/ })
  await t.rejects(build({ prefix: '/x' }, false), { message: /stickyProxy needs the fastify-sticky plugin registered first/ })
  await t.resolves(build({ prefix: '/x', pool: 'shop' }))
})
