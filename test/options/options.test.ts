import Fastify from 'fastify'
import replyFrom from '@fastify/reply-from'
import t from 'tap'
import sticky, { type StickyPluginOptions } from '../../lib/index'
import { resolveOptions } from '../../lib/options'
import { MemoryBindingStore } from '../../lib/store/memory-store'
import { TEST_SECRET } from '../support/gateway'

const base: StickyPluginOptions = { secret: TEST_SECRET, pools: { shop: { upstreams: [{ id: 'a', url: 'http://127.0.0.1:1' }] } } }

t.test('bad options fail at register with FST_STICKY_INVALID_OPTION naming the option', async (t) => {
  const cases: Array<[string, unknown, RegExp]> = [
    ['no secret', { ...base, secret: undefined }, /secret must be a string or a non-empty array/],
    ['short secret', { ...base, secret: 'short' }, /secret must be a string of at least 32 characters, got "5 characters"/],
    ['short secret in list', { ...base, secret: [TEST_SECRET, 'x'] }, /secret\[1\] must be/],
    ['no pools', { ...base, pools: {} }, /pools must be an object with at least one named pool/],
    ['bad pool name', { ...base, pools: { 'a b': base.pools.shop } }, /pools\.a b must be named/],
    ['empty upstreams', { ...base, pools: { shop: { upstreams: [] } } }, /pools\.shop\.upstreams must be a non-empty array/],
    ['bad url', { ...base, pools: { shop: { upstreams: [{ id: 'a', url: 'http://x:1' }, { id: 'b', url: '10.0.0.1' }] } } }, /pools\.shop\.upstreams\[1\]\.url must be an http\(s\) origin URL.*got "10\.0\.0\.1"/],
    ['url with path', { ...base, pools: { shop: { upstreams: [{ id: 'a', url: 'http://x:1/api' }] } } }, /upstreams\[0\]\.url must be/],
    ['duplicate id', { ...base, pools: { shop: { upstreams: [{ id: 'a', url: 'http://x:1' }, { id: 'a', url: 'http://x:2' }] } } }, /upstreams\[1\]\.id must be unique/],
    ['bad id', { ...base, pools: { shop: { upstreams: [{ id: 'a.b', url: 'http://x:1' }] } } }, /upstreams\[0\]\.id must be a string of 1-32/],
    ['bad weight', { ...base, pools: { shop: { upstreams: [{ id: 'a', url: 'http://x:1', weight: 0 }] } } }, /upstreams\[0\]\.weight must be a number above 0/],
    ['unknown upstream key', { ...base, pools: { shop: { upstreams: [{ id: 'a', url: 'http://x:1', host: 'x' }] } } }, /upstreams\[0\]\.host must be absent/],
    ['unknown option', { ...base, sticky: true }, /sticky must be absent/],
    ['bad redis', { ...base, redis: 'localhost:6379' }, /redis must be a redis:\/\/ or rediss:\/\/ URL/],
    ['bad redis object', { ...base, redis: {} }, /redis must be/],
    ['bad store', { ...base, store: {} }, /store must be an object implementing BindingStore/],
    ['bad prefix', { ...base, prefix: 'a{b}' }, /prefix must be/],
    ['bad idle', { ...base, defaults: { idleTimeout: '30 minutes' } }, /defaults\.idleTimeout must be a positive duration/],
    ['negative lifetime', { ...base, defaults: { maxLifetime: -1 } }, /defaults\.maxLifetime must be a positive duration/],
    ['bad default key', { ...base, defaults: { key: 'magic' } }, /defaults\.key must be 'cookie', 'ip', \{ ip \}, \{ header \}/],
    ['unknown default', { ...base, defaults: { keys: 'cookie' } }, /defaults\.keys is not a known option/],
    ['bad default pool', { ...base, defaults: { pool: 'nope' } }, /defaults\.pool must name one of the pools \(shop\), got "nope"/],
    ['bad cookie name', { ...base, cookie: { name: 'a b' } }, /cookie\.name must be a cookie name token/],
    ['bad sameSite', { ...base, cookie: { sameSite: 'Lax!' } }, /cookie\.sameSite must be 'lax', 'strict' or 'none'/],
    ['bad maxAge', { ...base, cookie: { maxAge: 'soon' } }, /cookie\.maxAge must be a positive duration/],
    ['bad secure', { ...base, cookie: { secure: 'yes' } }, /cookie\.secure must be 'auto' or a boolean/],
    ['unknown cookie option', { ...base, cookie: { httpOnly: false } }, /cookie\.httpOnly must be absent/],
    ['handoff without secret', { ...base, handoff: {} }, /handoff\.secret must be a string of at least 32 characters, got "undefined"/],
    ['short handoff secret', { ...base, handoff: { secret: 'short' } }, /handoff\.secret must be a string of at least 32 characters, got "5 characters"/],
    ['handoff hold above timeout', { ...base, handoff: { secret: TEST_SECRET, timeout: '1s', hold: '2s' } }, /handoff\.hold must be at most handoff\.timeout \(1000 ms\)/],
    ['bad handoff path', { ...base, handoff: { secret: TEST_SECRET, path: 'x' } }, /handoff\.path must be a path like/],
    ['handoff concurrency', { ...base, handoff: { secret: TEST_SECRET, concurrency: 1000 } }, /handoff\.concurrency must be at most 256/],
    ['unknown handoff key', { ...base, handoff: { secret: TEST_SECRET, retries: 1 } }, /handoff\.retries must be absent/],
    ['bad pool cookie name', { ...base, pools: { shop: { ...base.pools.shop, cookie: { name: 'a;b' } } } }, /pools\.shop\.cookie\.name must be a cookie name token/],
    ['bad pool cookie path', { ...base, pools: { shop: { ...base.pools.shop, cookie: { path: 'x' } } } }, /pools\.shop\.cookie\.path must be a path starting with/],
    ['unknown pool cookie key', { ...base, pools: { shop: { ...base.pools.shop, cookie: { domain: 'x' } } } }, /pools\.shop\.cookie\.domain must be absent/],
    ['pool cookie taken', { ...base, pools: { shop: base.pools.shop, api: { ...base.pools.shop, cookie: { name: 'sticky' } } } }, /pools\.api\.cookie\.name must be a cookie name no other pool uses \(pool "shop" uses it\)/],
    ['bad timeout', { ...base, timeouts: { headers: 0 } }, /timeouts\.headers must be a positive duration/],
    ['bad maxBindings', { ...base, maxBindings: 1.5 }, /maxBindings must be a positive integer/],
    ['url with password', { ...base, pools: { shop: { upstreams: [{ id: 'a', url: 'http://:pw@h:1' }] } } }, /upstreams\[0\]\.url must be/],
    ['url with fragment', { ...base, pools: { shop: { upstreams: [{ id: 'a', url: 'http://h:1/#x' }] } } }, /upstreams\[0\]\.url must be/],
    ['SameSite=None without Secure', { ...base, cookie: { sameSite: 'none', secure: false } }, /cookie\.secure must be true or 'auto' when cookie\.sameSite is 'none'/],
    ['bad cookie.forward', { ...base, cookie: { forward: 'yes' } }, /cookie\.forward must be a boolean/],
    ['bad xForwarded', { ...base, xForwarded: 1 }, /xForwarded must be a boolean/],
    ['bad reboundHeader', { ...base, reboundHeader: 'x y' }, /reboundHeader must be a header name or false/],
    ['reboundHeader the gateway writes', { ...base, reboundHeader: 'X-Forwarded-Proto' }, /reboundHeader must be a header the gateway does not write itself/],
    ['reboundHeader of handoff', { ...base, reboundHeader: 'x-sticky-session' }, /reboundHeader must be a header the gateway does not write itself/],
    ['cookie path the Set-Cookie serializer refuses', { ...base, cookie: { path: '/a<b' } }, /cookie\.path must be a path starting with "\/" of printable ASCII/],
    ['non-ASCII cookie path', { ...base, cookie: { path: '/é' } }, /cookie\.path must be/],
    ['pool cookie path with a control character', { ...base, pools: { shop: { ...base.pools.shop, cookie: { path: '/a\u0001' } } } }, /pools\.shop\.cookie\.path must be/],
    ['cookie domain ending in a dot', { ...base, cookie: { domain: 'example.com.' } }, /cookie\.domain must be a domain name/],
    ['cookie domain label with an outer hyphen', { ...base, cookie: { domain: 'a-.com' } }, /cookie\.domain must be a domain name/],
    ['cookie domain with an empty label', { ...base, cookie: { domain: 'a..b' } }, /cookie\.domain must be a domain name/],
    ['bad replayBodyLimit', { ...base, replayBodyLimit: -1 }, /replayBodyLimit must be a whole number of bytes/],
    ['unknown pool option', { ...base, pools: { shop: { ...base.pools.shop, sticky: true } } }, /pools\.shop\.sticky must be absent/],
    ['bad cooldown', { ...base, pools: { shop: { ...base.pools.shop, cooldown: 'never' } } }, /pools\.shop\.cooldown must be a positive duration/],
    ['bad slowStart', { ...base, pools: { shop: { ...base.pools.shop, slowStart: -5 } } }, /pools\.shop\.slowStart must be a positive duration/],
    ['bad healthCheck', { ...base, pools: { shop: { ...base.pools.shop, healthCheck: { path: 'health' } } } }, /pools\.shop\.healthCheck\.path must be a path starting with "\/"/],
    ['bad healthCheck threshold', { ...base, pools: { shop: { ...base.pools.shop, healthCheck: { path: '/h', healthyThreshold: 0 } } } }, /healthCheck\.healthyThreshold must be a positive integer/],
    ['unknown healthCheck option', { ...base, pools: { shop: { ...base.pools.shop, healthCheck: { path: '/h', every: 1 } } } }, /healthCheck\.every must be absent/],
    ['bad failover', { ...base, defaults: { failover: 'retry' } }, /defaults\.failover must be 'rebind' or 'strict'/],
    ['bad strategy', { ...base, pools: { shop: { ...base.pools.shop, strategy: 'fastest' } } }, /pools\.shop\.strategy must be 'least-sessions', 'weighted-round-robin', 'random-two-choices', 'hash'/],
    ['bad loadFactor', { ...base, pools: { shop: { ...base.pools.shop, loadFactor: 0.5 } } }, /pools\.shop\.loadFactor must be a number from 1 to 100/],
    ['bad overflow', { ...base, pools: { shop: { ...base.pools.shop, overflow: 'drop' } } }, /pools\.shop\.overflow must be 'reject' or 'least-loaded'/],
    ['bad maxSessions', { ...base, pools: { shop: { upstreams: [{ id: 'a', url: 'http://x:1', maxSessions: 0 }] } } }, /upstreams\[0\]\.maxSessions must be a positive integer/]
  ]
  for (const [name, options, message] of cases) {
    const app = Fastify()
    await t.rejects(async () => { await app.register(sticky, options as StickyPluginOptions).ready() }, { code: 'FST_STICKY_INVALID_OPTION', message }, name)
    await app.close()
  }
  t.throws(() => resolveOptions(null as unknown as StickyPluginOptions), { code: 'FST_STICKY_INVALID_OPTION' })
})

t.test('resolveOptions fills defaults, freezes, does not mutate its input', async (t) => {
  const input = { ...base, defaults: { idleTimeout: '10m' as const } }
  const copy = JSON.parse(JSON.stringify(input))
  const resolved = resolveOptions(input)
  t.same(input, copy, 'input unchanged')
  t.ok(Object.isFrozen(resolved))
  t.same(resolved.cookie, { name: 'sticky', path: '/', domain: undefined, maxAgeSeconds: undefined, sameSite: 'lax', secure: 'auto', forward: false })
  t.same(resolved.timeouts, { connectMs: 5000, headersMs: 60000, bodyMs: 60000 })
  t.same(resolved.secrets, [TEST_SECRET])
  t.same(resolved.pools.shop, { upstreams: [{ id: 'a', url: 'http://127.0.0.1:1', weight: 1, maxSessions: Infinity }], healthCheck: undefined, cooldownMs: 10_000, slowStartMs: 0, strategy: 'least-sessions', loadFactor: 1.25, overflow: 'reject', cookieName: 'sticky', cookiePath: '/', cookieMaxAgeSeconds: undefined })
  t.same([resolved.reboundHeader, resolved.replayBodyLimit, resolved.xForwarded], ['x-sticky-rebound', 65536, { allowedHosts: undefined }])
  t.same(resolved.newBindings, { perClient: { rate: 30, perMs: 60_000, burst: 30 }, perGateway: { rate: 1000, perMs: 1000, burst: 1000 }, probationHoldMs: 10_000 })
  const two = resolveOptions({ ...base, pools: { shop: base.pools.shop, models: base.pools.shop }, defaults: { pool: 'models' } })
  t.same([two.pools.models.cookieName, two.pools.shop.cookieName], ['sticky', 'sticky-shop'], 'the default pool keeps the plain cookie name')
})

t.test('handoff defaults', async (t) => {
  t.equal(resolveOptions(base).handoff, undefined, 'off unless asked for')
  t.same(resolveOptions({ ...base, handoff: { secret: TEST_SECRET } }).handoff, { secret: TEST_SECRET, path: '/.well-known/sticky-handoff', timeoutMs: 5000, holdMs: 500, concurrency: 8, maxStateBytes: 1024 * 1024 })
})

t.test("a pool's own cookie overrides the plugin's name, path and Max-Age", async (t) => {
  const resolved = resolveOptions({
    ...base,
    cookie: { maxAge: '1h' },
    pools: { shop: base.pools.shop, api: { ...base.pools.shop, cookie: { name: 'api-session', path: '/api', maxAge: '2h' } }, plain: { ...base.pools.shop, cookie: { maxAge: 0 } } }
  })
  t.same([resolved.pools.shop.cookieName, resolved.pools.shop.cookiePath, resolved.pools.shop.cookieMaxAgeSeconds], ['sticky', '/', 3600])
  t.same([resolved.pools.api.cookieName, resolved.pools.api.cookiePath, resolved.pools.api.cookieMaxAgeSeconds], ['api-session', '/api', 7200])
  t.same([resolved.pools.plain.cookieName, resolved.pools.plain.cookieMaxAgeSeconds], ['sticky-plain', undefined], 'maxAge 0: a session cookie')
})

t.test('a bad route config fails naming the route and the option', async (t) => {
  const cases: Array<[unknown, RegExp]> = [
    ['yes', /route GET \/x: config\.sticky must be true, false or an object, got "yes"/],
    [{ pool: 'nope' }, /route GET \/x: config\.sticky\.pool must name one of the pools \(shop\), got "nope"/],
    [{ key: 'header' }, /config\.sticky\.key must be 'cookie', 'ip'/],
    [{ key: { header: 'a b' } }, /config\.sticky\.key\.header must be a header name/],
    [{ key: ['cookie', 'ip'] }, /config\.sticky\.key\[0\] 'cookie' always yields a key .* must come last/],
    [{ key: [] }, /config\.sticky\.key must name at least one key source/],
    [{ key: { ip: { ipv6Prefix: 129 } } }, /config\.sticky\.key\.ip\.ipv6Prefix must be a whole number from 0 to 128/],
    [{ key: { nope: 'x' } }, /unknown key source "nope"/],
    [{ key: [{ learn: 'A' }, { learn: 'B' }] }, /may learn one app cookie only/],
    [{ idleTimeout: 'forever' }, /config\.sticky\.idleTimeout must be a positive duration/],
    [{ maxLifetime: {} }, /config\.sticky\.maxLifetime must be a positive duration/],
    [{ colour: 'red' }, /config\.sticky\.colour is not a known option/]
  ]
  for (const [config, message] of cases) {
    const app = Fastify()
    await app.register(sticky, base)
    t.throws(() => app.get('/x', { config: { sticky: config as boolean } }, async () => 'no'), { code: 'FST_STICKY_INVALID_ROUTE_CONFIG', message })
    await app.close()
  }
  // Routes registered inside a plugin surface the error from ready().
  const app = Fastify()
  await app.register(sticky, base)
  app.register(async (child) => { child.get('/inner', { config: { sticky: { pool: 'nope' } } }, async () => 'no') })
  await t.rejects(async () => { await app.ready() }, { code: 'FST_STICKY_INVALID_ROUTE_CONFIG', message: /GET \/inner/ })
  await app.close()
})

t.test('with several pools a route must name one', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(sticky, { ...base, pools: { one: base.pools.shop, two: base.pools.shop } })
  t.throws(() => app.get('/x', { config: { sticky: true } }, async () => 'no'), /config\.sticky\.pool must name one of the pools \(one, two\) when there is more than one/)
  app.get('/plain', async (_request, reply) => reply.forward())
  const response = await app.inject('/plain')
  t.equal(response.statusCode, 500, 'forward() without a default pool is a programming error')
  t.match(response.json().message, /needs a default pool/)
})

t.test('reply-from registered with base is refused; without base it is reused', async (t) => {
  const withBase = Fastify()
  await withBase.register(replyFrom, { base: 'http://127.0.0.1:1' })
  await t.rejects(async () => { await withBase.register(sticky, base).ready() }, { code: 'FST_STICKY_REPLY_FROM_BASE', message: /registered with a `base` option/ })
  await withBase.close()
  const without = Fastify()
  await without.register(replyFrom)
  await without.register(sticky, base)
  await without.ready()
  t.ok(without.hasDecorator('sticky'), 'plugin registered over the existing reply-from')
  await without.close()
})

t.test('a given store that cannot be reached at start fails register clearly', async (t) => {
  const store = new MemoryBindingStore()
  store.init = async () => { throw new Error('no route to store') }
  const app = Fastify()
  await t.rejects(async () => { await app.register(sticky, { ...base, store }).ready() }, /binding store is not reachable at start \(no route to store\)/)
  await app.close()
})
