import t from 'tap'
import Fastify from 'fastify'
import { adminRoutes, type AdminUpstreamView } from '../../lib/admin/routes'
import { StoreKeyIds } from '../../lib/affinity/key-id'
import { createRoutingCookieCodec } from '../../lib/affinity/routing-cookie'
import sticky, { type BindingStore } from '../../lib/index'
import { TEST_SECRET } from '../support/gateway'
import { CookieJar, get } from '../support/http'
import { startRedis, uniquePrefix } from '../support/redis'
import { startUpstreams, type TestUpstream } from '../support/upstreams'
import { eventually } from '../support/eventually'
import { ADMIN_TOKEN, startAdminGateway } from './admin-gateway'

const UNAUTHORIZED = { statusCode: 401, error: 'Unauthorized', message: 'Unauthorized' }
/** What a script sends with a request that changes state (the status page does). */
const SCRIPTED = { 'x-sticky-admin': '1' }
const hits = (upstreams: TestUpstream[]): number => upstreams.reduce((total, u) => total + u.hits, 0)

t.test('options are checked at register', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(sticky, { secret: TEST_SECRET, pools: { shop: { upstreams: [{ id: 'a', url: 'http://127.0.0.1:9' }] } } })
  const base = { api: app.sticky }
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    ['neither token nor hook', {}, /needs a token \(Authorization: Bearer\) or an authHook/],
    ['both', { token: ADMIN_TOKEN, authHook: () => {} }, /either token or authHook, not both/],
    ['short token', { token: 'short' }, /admin\.token must be a string of at least 16 characters/],
    ['bad prefix', { token: ADMIN_TOKEN, prefix: '_sticky/' }, /admin\.prefix must be a path like "\/_sticky"/],
    ['wildcard prefix', { token: ADMIN_TOKEN, prefix: '/a/*' }, /admin\.prefix/]
  ]
  for (const [name, options, message] of cases) {
    const child = Fastify()
    await t.rejects(async () => { await child.register(adminRoutes, { ...base, ...options } as never).ready() }, { code: 'FST_STICKY_INVALID_OPTION', message }, name)
    await child.close()
  }
})

t.test('auth: 401 with nothing revealed; admin paths are never proxied nor sticky', async (t) => {
  const upstreams = await startUpstreams(t, ['a', 'b'])
  // The sticky catch-all is registered before the admin API here, after it below: order does not matter.
  const gw = await startAdminGateway(t, { upstreams, adminFirst: false })
  const jar = new CookieJar()
  await get(`${gw.url}/shop`, { jar })
  const cookie = jar.get('sticky') as string
  const before = hits(upstreams)

  const guarded: Array<[string, string, object?]> = [
    ['GET', '/upstreams'],
    ['HEAD', '/upstreams'],
    ['POST', '/upstreams/a/drain'],
    ['POST', '/upstreams/a/undrain'],
    ['GET', '/metrics'],
    ['GET', `/bindings/${cookie}`],
    ['PUT', `/bindings/${cookie}`, { upstream: 'b' }],
    ['DELETE', `/bindings/${cookie}`],
    ['GET', '/no-such-route'],
    ['POST', '/'],
    ['DELETE', '']
  ]
  const presented: Array<[string, Record<string, string>]> = [
    ['no Authorization', {}],
    ['wrong token of the same length', { authorization: 'Bearer ' + ADMIN_TOKEN.replace(/.$/, 'X') }],
    ['token of another length', { authorization: 'Bearer ' + ADMIN_TOKEN + 'X' }],
    ['a prefix of the token', { authorization: 'Bearer ' + ADMIN_TOKEN.slice(0, 8) }],
    ['another scheme', { authorization: 'Basic ' + Buffer.from('admin:' + ADMIN_TOKEN).toString('base64') }],
    ['empty bearer', { authorization: 'Bearer ' }],
    ['token without scheme', { authorization: ADMIN_TOKEN }]
  ]
  for (const [method, path, body] of guarded) {
    for (const [name, headers] of presented) {
      const response = await get(`${gw.admin}${path}`, { method, headers, body })
      t.equal(response.status, 401, `${method} ${path || '(prefix)'}: ${name}`)
      if (method !== 'HEAD') t.same(response.json(), UNAUTHORIZED, 'the same short body every time')
      t.equal(response.headers['www-authenticate'], 'Bearer realm="fastify-sticky"')
      t.same(response.setCookies, [], 'no routing cookie')
    }
  }
  t.equal(hits(upstreams), before, 'no admin request reached an upstream')
  t.equal(gw.app.sticky.state('shop', 'a'), 'active', 'nothing was drained')

  const ok = await get(`${gw.admin}/upstreams`, { headers: { authorization: `bearer  ${ADMIN_TOKEN} ` } })
  t.equal(ok.status, 200, 'the scheme is case-insensitive and spaces around the token are ignored')
  t.same(ok.setCookies, [], 'admin routes are not sticky')
  t.equal(ok.headers['cache-control'], 'no-store')
  const list = ok.json<AdminUpstreamView[]>()
  t.same(list.map((u) => [u.pool, u.id, u.url, u.state, u.weight]), upstreams.map((u) => ['shop', u.id, u.url, 'active', 1]))
  t.equal(list.reduce((total, u) => total + (u.sessions ?? 0), 0), 1, 'the one session made above')

  const missing = await get(`${gw.admin}/no-such-route`, { headers: gw.auth })
  t.equal(missing.status, 404, 'unknown admin paths are 404 once authorized, not proxied')
  t.equal(hits(upstreams), before)

  for (const path of ['', '/']) {
    const page = await get(`${gw.admin}${path}`)
    t.equal(page.status, 200, `the status page shell at "${path}" needs no token (it holds no data; its login form asks for one)`)
    t.match(page.headers['content-type'], /^text\/html/)
    t.match(page.headers['content-security-policy'], /default-src 'none'; script-src 'sha256-[^']+'; style-src 'sha256-[^']+'; connect-src 'self'/)
    t.equal(page.headers['x-frame-options'], 'DENY')
    t.notMatch(page.body, ADMIN_TOKEN)
    t.same(page.setCookies, [])
  }
  t.equal(hits(upstreams), before)

  const proxied = await get(`${gw.url}/_stickyish/x`)
  t.equal(proxied.json().upstream !== undefined, true, 'paths merely starting like the prefix are still proxied')

  const log = gw.logs.join('')
  t.notMatch(log, ADMIN_TOKEN, 'the token is never logged')
  t.notMatch(log, ADMIN_TOKEN.slice(0, 8), 'not even partly')
  t.notOk(log.includes(cookie) || log.includes(decodeURIComponent(cookie)), 'nor the routing cookie looked up')
})

t.test('a user authHook replaces the token, and guards the page too', async (t) => {
  const upstreams = await startUpstreams(t, ['a'])
  const gw = await startAdminGateway(t, {
    upstreams,
    adminPrefix: '/ops/sticky',
    authHook: (request, reply, done) => {
      if (request.headers['x-ops'] === 'yes') done()
      else reply.code(401).send({ statusCode: 401, error: 'Unauthorized', message: 'Unauthorized' })
    }
  })
  t.equal((await get(`${gw.admin}/upstreams`, { headers: gw.auth })).status, 401, 'the bearer token means nothing now')
  t.equal((await get(`${gw.admin}/upstreams`, { headers: { 'x-ops': 'yes' } })).status, 200)
  t.equal((await get(`${gw.admin}/`)).status, 401, 'the page is behind the hook')
  const page = await get(`${gw.admin}/`, { headers: { 'x-ops': 'yes' } })
  t.equal(page.status, 200)
  t.match(page.body, 'data-auth="hook"')
  t.equal((await get(`${gw.url}/_sticky/upstreams`)).json().upstream, 'a', 'the default prefix is free: proxied')
})

t.test('upstream lookups: 404 unknown, 409 ambiguous, ?pool= decides', async (t) => {
  const [a1, b1, a2] = await startUpstreams(t, ['a', 'b', 'a'])
  const gw = await startAdminGateway(t, {
    pools: {
      shop: { upstreams: [{ id: 'a', url: a1.url }, { id: 'b', url: b1.url, weight: 3 }] },
      models: { upstreams: [{ id: 'a', url: a2.url }] }
    },
    defaults: { pool: 'shop' }
  })
  const post = (path: string): ReturnType<typeof get> => get(`${gw.admin}${path}`, { method: 'POST', headers: { ...gw.auth, ...SCRIPTED } })
  const list = (await get(`${gw.admin}/upstreams`, { headers: gw.auth })).json<AdminUpstreamView[]>()
  t.same(list.map((u) => `${u.pool}/${u.id}/${u.weight}`), ['shop/a/1', 'shop/b/3', 'models/a/1'])

  const ambiguous = await post('/upstreams/a/drain')
  t.equal(ambiguous.status, 409)
  t.match(ambiguous.json(), { message: /in several pools \(shop, models\): add \?pool=/, pools: ['shop', 'models'] })
  t.equal((await post('/upstreams/zz/drain')).status, 404)
  t.equal((await post('/upstreams/b/drain?pool=models')).status, 404, 'not in that pool')
  t.equal((await post('/upstreams/a/drain?pool=nope')).status, 404, 'no such pool')

  const drained = await post('/upstreams/a/drain?pool=models')
  t.equal(drained.status, 200)
  t.match(drained.json(), { pool: 'models', id: 'a', state: 'draining', sessions: 0 })
  t.equal(gw.app.sticky.state('models', 'a'), 'draining')
  t.equal(gw.app.sticky.state('shop', 'a'), 'active', 'the other pool\'s "a" is untouched')
  const drainB = await post('/upstreams/b/drain')
  t.match(drainB.json(), { pool: 'shop', id: 'b', state: 'draining' }, 'an id in one pool needs no ?pool=')
  t.match((await post('/upstreams/b/undrain')).json(), { state: 'active' })
  t.match((await post('/upstreams/a/undrain?pool=models')).json(), { state: 'active' })
  const again = await post('/upstreams/b/undrain')
  t.equal(again.status, 200, 'undraining an active upstream is a no-op')
})

t.test('binding look-up, move and evict: input checks', async (t) => {
  const upstreams = await startUpstreams(t, ['a', 'b'])
  const [a, b] = upstreams
  let race: ((store: BindingStore, pool: string, keyId: string) => Promise<void>) | undefined
  const gw = await startAdminGateway(t, {
    upstreams,
    // A store where, at the chosen moment, another gateway moves the binding first.
    wrapStore: (store) => new Proxy(store, {
      get (target, property, receiver) {
        const value = Reflect.get(target, property, receiver) as (...args: unknown[]) => unknown
        if (property === 'rebind') {
          return async (pool: string, keyId: string, expected: string, next: string) => {
            if (race !== undefined) await race(target, pool, keyId)
            return target.rebind(pool, keyId, expected, next)
          }
        }
        return typeof value === 'function' ? value.bind(target) : value
      }
    })
  })
  const jar = new CookieJar()
  const first = await get(`${gw.url}/`, { jar })
  const bound = first.json().upstream as string
  const other = bound === 'a' ? 'b' : 'a'
  const cookie = jar.get('sticky') as string
  const binding = (path = '', options: Parameters<typeof get>[1] = {}): ReturnType<typeof get> =>
    get(`${gw.admin}/bindings/${path}`, { headers: gw.auth, ...options })

  const view = await binding(cookie)
  t.equal(view.status, 200, 'found by the cookie value as the browser stores it (slashes and all)')
  t.match(view.json(), { pool: 'shop', key: 'cookie', upstream: bound, state: 'active', cookieUpstream: bound })
  t.match(view.json().keyId, /^[A-Za-z0-9_-]{16}$/)
  t.ok(Math.abs(Date.parse(view.json().createdAt) - Date.now()) < 10_000)
  t.equal((await binding(encodeURIComponent(cookie))).status, 200, 'and percent-encoded')
  t.equal((await binding(encodeURIComponent(encodeURIComponent(cookie)))).status, 200, 'even twice')
  t.equal((await binding(cookie + '?pool=shop')).status, 200)
  t.equal((await binding(cookie + '?pool=nope')).status, 404)
  t.match((await binding('not-a-cookie')).json(), { statusCode: 404, message: 'no binding for this key' }, 'a value that is not a routing cookie names no binding')
  const forged = createRoutingCookieCodec(['another-secret-0123456789-abcdefghijkl']).sign({ bindingId: 'A'.repeat(22), upstreamId: 'a', createdAt: Date.now() })
  t.equal((await binding(encodeURIComponent(forged))).status, 404, 'a cookie signed by another secret is nobody\'s')
  const unbound = createRoutingCookieCodec([TEST_SECRET]).sign({ bindingId: 'B'.repeat(22), upstreamId: 'a', createdAt: Date.now() })
  t.match((await binding(encodeURIComponent(unbound))).json(), { statusCode: 404, message: 'no binding for this key' })

  const put = (body: unknown, headers: Record<string, string> = {}): ReturnType<typeof get> =>
    binding(cookie, { method: 'PUT', headers: { ...gw.auth, ...SCRIPTED, ...headers }, body: body as object })
  t.equal((await put({})).status, 400, 'upstream is required')
  t.match((await put({ upstream: 'zz' })).json(), { statusCode: 400, message: 'pool "shop" has no upstream "zz"' })
  t.equal((await put('{"upstream":', { 'content-type': 'application/json' })).status, 400, 'bad JSON')
  t.equal((await put('upstream=b', { 'content-type': 'application/x-www-form-urlencoded' })).status, 415, 'JSON only')
  t.equal((await put({ upstream: 'b', pad: 'x'.repeat(2000) })).status, 413, 'small bodies only')
  t.match((await put({ upstream: bound })).json(), { upstream: bound }, 'moving to where it is is a no-op')

  race = async (store, pool, keyId) => {
    race = undefined
    await store.rebind(pool, keyId, bound, other)
  }
  const conflict = await put({ upstream: other })
  t.equal(conflict.status, 409, 'the binding changed between look-up and move')
  t.match(conflict.json(), { message: 'the binding changed meanwhile; look it up again', upstream: other, code: 'FST_STICKY_BINDING_CHANGED' })
  t.equal((await get(`${gw.url}/`, { jar })).json().upstream, other, 'the client follows the other move')
  race = async () => { throw new Error('connection lost') }
  const failed = await put({ upstream: bound })
  t.equal(failed.status, 503, 'a store that fails the move')
  t.match(failed.json(), { code: 'FST_STICKY_STORE_UNAVAILABLE', message: 'the binding store did not answer; try again' })
  t.notMatch(failed.body, /connection lost/, 'the cause stays out of the answer')
  t.ok(gw.logs.some((line) => line.includes('admin binding request failed') && line.includes('connection lost')), 'and goes to the log')
  race = undefined
  const back = await put({ upstream: bound })
  t.equal(back.status, 200)
  t.ok(gw.logs.some((line) => line.includes('admin moved a binding') && line.includes('"reqId"')), 'a move leaves an audit line with its request id')
  t.match(back.json(), { upstream: bound })
  t.equal((await get(`${gw.url}/`, { jar })).json().upstream, bound)

  // A down upstream takes no moved session.
  await gw.app.sticky.store.setUpstreamState('shop', other, { down: true })
  await eventually(async () => gw.app.sticky.state('shop', other) === 'down', 3000)
  t.match((await put({ upstream: other })).json(), { statusCode: 409, message: `upstream "${other}" is down`, code: 'FST_STICKY_UPSTREAM_DOWN' })
  await gw.app.sticky.store.setUpstreamState('shop', other, { down: false })

  t.equal((await binding(cookie, { method: 'DELETE', headers: { ...gw.auth, ...SCRIPTED } })).status, 204)
  const gone = await binding(cookie, { method: 'DELETE', headers: { ...gw.auth, ...SCRIPTED } })
  t.equal(gone.status, 404, 'gone')
  t.match(gone.json(), { code: 'FST_STICKY_UNKNOWN_BINDING' })
  t.equal((await binding(cookie)).status, 404)
  t.equal(a.hits + b.hits, 3, 'only the client\'s own requests reached upstreams')
})

t.test('two gateways on one Redis: drain, undrain, move and evict change routing on both', async (t) => {
  const redis = await startRedis(t)
  const upstreams = await startUpstreams(t, ['a', 'b', 'c'])
  const prefix = uniquePrefix()
  const g1 = await startAdminGateway(t, { upstreams, redisUrl: redis.url, prefix })
  const g2 = await startAdminGateway(t, { upstreams, redisUrl: redis.url, prefix })
  const admin = (gw: typeof g1, path: string, method = 'GET', body?: object): ReturnType<typeof get> =>
    get(`${gw.admin}${path}`, { method, headers: { ...gw.auth, ...SCRIPTED }, body })
  const sessionsOf = async (gw: typeof g1): Promise<Record<string, number | null>> =>
    Object.fromEntries((await admin(gw, '/upstreams')).json<AdminUpstreamView[]>().map((u) => [u.id, u.sessions]))
  const total = (counts: Record<string, number | null>): number => Object.values(counts).reduce<number>((s, n) => s + (n ?? 0), 0)

  // Six clients through g1, spread over a, b, c by least sessions.
  const clients = await Promise.all(Array.from({ length: 6 }, async () => {
    const jar = new CookieJar()
    const upstream = (await get(`${g1.url}/`, { jar })).json().upstream as string
    await get(`${g1.url}/again`, { jar }) // returning: off probation
    return { jar, upstream }
  }))
  t.same(await sessionsOf(g2), { a: 2, b: 2, c: 2 }, 'both gateways count every session')

  t.test('drain on one gateway: the other sends no new session there, and keeps the bound ones', async (t) => {
    const drained = await admin(g1, '/upstreams/b/drain', 'POST')
    t.match(drained.json(), { id: 'b', state: 'draining', sessions: 2 })
    t.ok(await eventually(async () => (await admin(g2, '/upstreams')).json<AdminUpstreamView[]>().find((u) => u.id === 'b')?.state === 'draining', 3000),
      'g2 sees it within the state poll')
    const fresh = await Promise.all(Array.from({ length: 8 }, async () => (await get(`${g2.url}/`)).json().upstream as string))
    t.notOk(fresh.includes('b'), `no new session on b (got ${fresh.join(',')})`)
    for (const client of clients.filter((c) => c.upstream === 'b')) {
      t.equal((await get(`${g2.url}/x`, { jar: client.jar })).json().upstream, 'b', 'a bound client stays')
    }
    const undrained = await admin(g2, '/upstreams/b/undrain', 'POST')
    t.match(undrained.json(), { id: 'b', state: 'active' })
    t.ok(await eventually(async () => g1.app.sticky.state('shop', 'b') === 'active', 3000), 'g1 sees it active again')
    const later = await Promise.all(Array.from({ length: 4 }, async () => (await get(`${g1.url}/`)).json().upstream as string))
    t.ok(later.includes('b'), `b takes new sessions again: it has the fewest (got ${later.join(',')})`)
  })

  t.test('move through one gateway: the client lands there through the other', async (t) => {
    const client = clients[0]
    const target = ['a', 'b', 'c'].find((id) => id !== client.upstream) as string
    const cookie = client.jar.get('sticky') as string
    const moved = await admin(g2, `/bindings/${cookie}`, 'PUT', { upstream: target })
    t.equal(moved.status, 200)
    t.match(moved.json(), { upstream: target, cookieUpstream: client.upstream })
    const next = await get(`${g1.url}/cart`, { jar: client.jar })
    t.equal(next.json().upstream, target, 'routed to the new upstream')
    t.equal(next.setCookies.length, 1, 'with a cookie that names it')
    t.match((await admin(g1, `/bindings/${client.jar.get('sticky') as string}`)).json(), { upstream: target, cookieUpstream: target })
    t.equal((await get(`${g2.url}/cart`, { jar: client.jar })).json().upstream, target, 'and stays there on both gateways')
    client.upstream = target
  })

  t.test('evict through one gateway: the binding is gone everywhere and the next request binds afresh', async (t) => {
    const client = clients[1]
    const cookie = client.jar.get('sticky') as string
    const before = total(await sessionsOf(g1))
    t.equal((await admin(g2, `/bindings/${cookie}`, 'DELETE')).status, 204)
    t.equal((await admin(g1, `/bindings/${cookie}`)).status, 404, 'g1 no longer finds it')
    t.equal(total(await sessionsOf(g1)), before - 1, 'one session fewer, store-wide')
    const newBefore = g1.app.sticky.stats.new
    const next = await get(`${g1.url}/cart`, { jar: client.jar })
    t.equal(g1.app.sticky.stats.new, newBefore + 1, 'a new binding, not a hit')
    // The routing cookie is the binding of record when the store has none: the client returns to the upstream
    // its cookie names (as after a Redis restart). Moving a client elsewhere is PUT's job.
    t.equal(next.json().upstream, client.upstream)
    t.equal((await admin(g2, `/bindings/${cookie}`)).status, 200, 'bound again, seen by g2')
    t.equal(total(await sessionsOf(g2)), before)
  })
})
