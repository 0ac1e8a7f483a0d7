/**
 * The Express door's options: the plugin's, validated by the plugin's rules, less the Fastify-only ones; its own
 * (`logger`, `trustProxy`) checked the same way; route settings checked once, at `proxy()`.
 */
import t from 'tap'
import { createStickyMiddleware, type StickyExpressOptions } from '../../lib/express/index'
import { TEST_SECRET } from '../support/gateway'
import { CookieJar, get } from '../support/http'
import { startUpstreams } from '../support/upstreams'
import { startExpressGateway } from './express-gateway'

const base: StickyExpressOptions = { secret: TEST_SECRET, pools: { shop: { upstreams: [{ id: 'a', url: 'http://127.0.0.1:1' }] } } }

t.test('bad options fail at creation, naming the option', async (t) => {
  const cases: Array<[string, unknown, RegExp]> = [
    ['admin', { ...base, admin: { token: 'x'.repeat(16) } }, /admin is served by the Fastify plugin only/],
    ['metrics', { ...base, metrics: true }, /metrics is served by the Fastify plugin only/],
    ['unknown key', { ...base, colour: 'red' }, /colour must be absent/],
    ['short secret', { ...base, secret: 'short' }, /secret must be a string of at least 32 characters/],
    ['bad upstream', { ...base, pools: { shop: { upstreams: [{ id: 'a', url: '10.0.0.1' }] } } }, /pools\.shop\.upstreams\[0\]\.url must be an http\(s\) origin URL/],
    ['bad logger', { ...base, logger: { warn () {} } }, /logger must be an object with warn, info and debug methods/],
    ['bad trustProxy', { ...base, trustProxy: 'yes' }, /trustProxy must be a boolean, a whole number of hops or a function/],
    ['negative hops', { ...base, trustProxy: -1 }, /trustProxy must be/],
    ['bad default', { ...base, defaults: { idleTimeout: 'soon' } }, /defaults\.idleTimeout/]
  ]
  for (const [name, options, message] of cases) {
    await t.rejects(createStickyMiddleware(options as StickyExpressOptions), { code: 'FST_STICKY_INVALID_OPTION', message }, name)
  }
})

t.test('route settings are checked at proxy(), once', async (t) => {
  const sticky = await createStickyMiddleware({ ...base, logger: { warn () {}, info () {}, debug () {} } })
  t.teardown(() => sticky.close())
  t.throws(() => sticky.proxy({ pool: 'nope' }), { code: 'FST_STICKY_INVALID_ROUTE_CONFIG', message: /sticky\.proxy\(\) #1.*pool must name one of the pools \(shop\), got "nope"/ })
  t.throws(() => sticky.proxy({ key: { header: 'bad header' } } as never), { code: 'FST_STICKY_INVALID_ROUTE_CONFIG', message: /#2.*key\.header/ })
  t.type(sticky.proxy({ key: 'ip', idleTimeout: '5m' }), 'function')
  t.equal(sticky.upgrade, sticky.upgrade, 'the default upgrade listener is made once')
  await sticky.close()
  await sticky.close()
  t.pass('close() is idempotent')

  const several = await createStickyMiddleware({
    ...base,
    logger: { warn () {}, info () {}, debug () {} },
    pools: { one: base.pools.shop, two: base.pools.shop }
  })
  t.teardown(() => several.close())
  t.throws(() => several.upgrade, { code: 'FST_STICKY_INVALID_ROUTE_CONFIG', message: /when there is more than one/ }, 'several pools and no defaults.pool: name one')
  t.throws(() => several.proxy(false), { code: 'FST_STICKY_INVALID_ROUTE_CONFIG', message: /needs a default pool/ })
  t.type(several.proxy({ pool: 'two' }), 'function')
})

t.test('cookie options, and Secure behind a trusted TLS terminator', async (t) => {
  const upstreams = await startUpstreams(t, ['a'])
  const plain = await startExpressGateway(t, { upstreams, cookie: { name: 'route', maxAge: '1h', sameSite: 'strict' } })
  const named = await get(`${plain.url}/`)
  t.match(named.setCookies[0], /^route=[^;]+; Max-Age=3600; Path=\/; HttpOnly; SameSite=Strict$/)
  const spoofed = await get(`${plain.url}/`, { headers: { 'x-forwarded-proto': 'https' } })
  t.notMatch(spoofed.setCookies[0], /Secure/, 'an untrusted X-Forwarded-Proto is ignored')

  const behindTls = await startExpressGateway(t, { upstreams, trustProxy: 1 })
  const secure = await get(`${behindTls.url}/`, { headers: { 'x-forwarded-proto': 'https' } })
  t.match(secure.setCookies[0], /; Secure/, 'secure: auto follows the trusted protocol')
  t.equal(secure.json().headers['x-forwarded-proto'], 'https')

  const jar = new CookieJar()
  const other = await startExpressGateway(t, { upstreams, pools: { shop: { upstreams: [{ id: 'a', url: upstreams[0].url }] }, api: { upstreams: [{ id: 'a', url: upstreams[0].url }] } }, defaults: { pool: 'shop' },
    mount (sticky, app) { app?.use('/api', sticky.proxy({ pool: 'api' })) } })
  await get(`${other.url}/api/x`, { jar })
  t.ok(jar.has('sticky-api'), 'a pool other than the default has a cookie of its own name')
})
