import t from 'tap'
import { Registry } from 'prom-client'
import { StickyMetrics, METRIC_NAMES, SESSION_COUNTS_MAX_AGE_MS, type MetricsSource } from '../../lib/admin/metrics'
import { resolveAdminOptions, resolveMetricsOptions } from '../../lib/admin/admin-options'
import { instrumentCacheableStore, instrumentStore } from '../../lib/admin/instrumented-store'
import { NearCacheStore, type CacheableBindingStore, type ExpiringBinding } from '../../lib/store/near-cache'
import { MemoryBindingStore, type BindingStore } from '../../lib/index'
import { CookieJar, get } from '../support/http'
import { startUpstreams } from '../support/upstreams'
import { parsePrometheus, startAdminGateway, sum } from './admin-gateway'
import { openStore } from '../support/stores'

t.test('metrics after real traffic match what was sent', async (t) => {
  const [a, b, c] = await startUpstreams(t, ['a', 'b', 'c'])
  let failing = false
  // A switch in front of the real store: while on, every binding read fails (as a Redis outage would).
  const failable = (store: BindingStore): BindingStore => new Proxy(store, {
    get (target, property, receiver) {
      const value = Reflect.get(target, property, receiver) as unknown
      if (typeof value !== 'function') return value
      if (property === 'get') {
        return async (...args: unknown[]) => {
          if (failing) throw new Error('store down (test)')
          return (value as (...a: unknown[]) => unknown).apply(target, args)
        }
      }
      // A store that is down has nothing at hand either: it leaves every read to `get`.
      if (property === 'peek') return (...args: unknown[]) => failing ? undefined : (value as (...a: unknown[]) => unknown).apply(target, args)
      return (value as (...a: unknown[]) => unknown).bind(target)
    }
  })
  const gw = await startAdminGateway(t, {
    pools: {
      shop: { upstreams: [a, b].map(({ id, url }) => ({ id, url })) },
      spare: { upstreams: [{ id: c.id, url: c.url }] }
    },
    defaults: { pool: 'shop' },
    wrapStore: failable,
    routes (app, metrics) {
      app.all('/static/*', { config: { sticky: { key: false } }, onResponse: metrics.responseHook('/static/*', 'shop') }, (_q, reply) => reply.forward())
      app.all('/spare/*', { config: { sticky: { pool: 'spare' } }, onResponse: metrics.responseHook('/spare/*', 'spare') }, (_q, reply) => reply.forward())
      app.all('/*', { config: { sticky: true }, onResponse: metrics.responseHook('/*', 'shop') }, (_q, reply) => reply.forward())
    }
  })
  await gw.app.sticky.drain('spare', 'c')

  const clients = Array.from({ length: 5 }, () => new CookieJar())
  for (const jar of clients) t.equal((await get(`${gw.url}/cart`, { jar })).status, 200)
  for (let round = 0; round < 3; round++) {
    for (const jar of clients) await get(`${gw.url}/cart/${round}`, { jar })
  }
  for (let i = 0; i < 2; i++) t.equal((await get(`${gw.url}/cart`, { cookie: 'sticky=forged.value' })).status, 200)
  for (let i = 0; i < 4; i++) await get(`${gw.url}/static/app.js`)
  for (let i = 0; i < 3; i++) t.equal((await get(`${gw.url}/spare/x`)).status, 503, 'the spare pool has no active upstream')
  failing = true
  for (const jar of clients.slice(0, 2)) t.equal((await get(`${gw.url}/cart`, { jar })).status, 200, 'served while the store fails')
  failing = false

  const scrape = await get(`${gw.admin}/metrics`, { headers: gw.auth })
  t.equal(scrape.status, 200)
  t.match(scrape.headers['content-type'], /^text\/plain; version=0\.0\.4/)
  const samples = parsePrometheus(scrape.body)
  const requests = (labels: Record<string, string>): number => sum(samples, METRIC_NAMES.requests, labels)
  t.equal(requests({ pool: 'shop', route: '/*', decision: 'new' }), 7, '5 clients + 2 forged cookies were new sessions')
  t.equal(requests({ pool: 'shop', route: '/*', decision: 'hit' }), 15, 'every return with a cookie was a hit')
  t.equal(requests({ pool: 'shop', route: '/*', decision: 'degraded' }), 2, 'store failures were degraded')
  t.equal(requests({ pool: 'shop', route: '/static/*', decision: 'none' }), 4, 'stateless requests')
  t.equal(requests({ pool: 'spare', route: '/spare/*', decision: 'unavailable' }), 3, '503s without an upstream')
  t.equal(requests({}), 31, 'nothing else was counted (the admin scrape is no sticky request)')
  t.equal(sum(samples, METRIC_NAMES.invalidCookies, { reason: 'bad-signature' }), 2, 'forged cookies by reason')
  t.equal(sum(samples, METRIC_NAMES.invalidCookies), 2)

  t.equal(sum(samples, METRIC_NAMES.sessions, { pool: 'shop' }), 7, 'live sessions, store-wide')
  const shopCounts = await gw.app.sticky.sessionCounts('shop')
  for (const id of ['a', 'b']) t.equal(sum(samples, METRIC_NAMES.sessions, { pool: 'shop', upstream: id }), shopCounts[id], `sessions of ${id}`)
  t.equal(sum(samples, METRIC_NAMES.upstreamState, { pool: 'spare', upstream: 'c', state: 'draining' }), 1)
  t.equal(sum(samples, METRIC_NAMES.upstreamState, { pool: 'spare', upstream: 'c', state: 'active' }), 0)
  t.equal(sum(samples, METRIC_NAMES.upstreamState, { pool: 'shop', upstream: 'a', state: 'active' }), 1)

  t.equal(sum(samples, METRIC_NAMES.storeErrors, { operation: 'get' }), 2, 'each failed read counted once')
  t.ok(sum(samples, METRIC_NAMES.storeDuration + '_count', { operation: 'get' }) >= 17, 'every binding read was timed (15 hits, 2 failures)')
  t.ok(sum(samples, METRIC_NAMES.storeDuration + '_count', { operation: 'bindIfAbsent' }) >= 7, 'every new binding was timed')
  t.ok(sum(samples, METRIC_NAMES.storeDuration + '_count', { operation: 'setUpstreamState' }) >= 1, 'the drain was timed')
  const getBuckets = samples.filter((s) => s.name === METRIC_NAMES.storeDuration + '_bucket' && s.labels.operation === 'get')
  t.equal(getBuckets.at(-1)?.labels.le, '+Inf')
  t.equal(getBuckets.at(-1)?.value, sum(samples, METRIC_NAMES.storeDuration + '_count', { operation: 'get' }), 'histogram is consistent')

  for (const name of Object.values(METRIC_NAMES)) {
    if (name.startsWith('sticky_near_cache')) continue
    t.match(scrape.body, new RegExp(`^# TYPE ${name} (counter|gauge|histogram)$`, 'm'), `${name} is exposed with a type`)
  }
  t.notMatch(scrape.body, /sticky_near_cache/, 'near-cache series exist only once a near-cache reports')
})

t.test('forward errors and near-cache counters', async (t) => {
  const registry = new Registry()
  const metrics = new StickyMetrics({ registry })
  metrics.onForwardError('shop', 502)
  metrics.onForwardError('shop', 502)
  metrics.onForwardError('shop', 504)
  metrics.onForwardError('models', 503)
  const nearCache = metrics.nearCache()
  t.equal(metrics.nearCache(), nearCache, 'one set of near-cache counters')
  nearCache.hit('shop')
  nearCache.hit('shop')
  nearCache.hit('shop')
  nearCache.miss('shop')
  const samples = parsePrometheus(await registry.metrics())
  t.equal(sum(samples, METRIC_NAMES.forwardErrors, { pool: 'shop', status: '502' }), 2)
  t.equal(sum(samples, METRIC_NAMES.forwardErrors, { pool: 'shop', status: '504' }), 1)
  t.equal(sum(samples, METRIC_NAMES.forwardErrors, { pool: 'models', status: '503' }), 1)
  t.equal(sum(samples, METRIC_NAMES.nearCacheHits, { pool: 'shop' }), 3)
  t.equal(sum(samples, METRIC_NAMES.nearCacheMisses, { pool: 'shop' }), 1)
  t.equal(sum(samples, METRIC_NAMES.sessions), 0, 'no source attached: no session series')
})

t.test('live sessions are read off the request path, at most once a second', async (t) => {
  const registry = new Registry()
  const metrics = new StickyMetrics({ registry })
  let reads = 0
  let count = 3
  const source: MetricsSource = {
    pools: new Map([['shop', { name: 'shop', upstreams: [{ id: 'a', url: 'http://127.0.0.1:1', weight: 1 }] }]]) as unknown as MetricsSource['pools'],
    stats: { invalidCookie: {} },
    async sessionCounts () {
      reads++
      await new Promise((resolve) => setTimeout(resolve, 20))
      return { a: count }
    },
    state: () => 'active'
  }
  metrics.attach(source)
  const scrapes = await Promise.all([registry.metrics(), registry.metrics(), registry.metrics()])
  t.equal(reads, 1, 'concurrent scrapes share one read')
  for (const text of scrapes) t.equal(sum(parsePrometheus(text), METRIC_NAMES.sessions, { upstream: 'a' }), 3)
  count = 4
  t.equal(sum(parsePrometheus(await registry.metrics()), METRIC_NAMES.sessions, { upstream: 'a' }), 3, 'cached within a second')
  t.equal(reads, 1)
  await new Promise((resolve) => setTimeout(resolve, SESSION_COUNTS_MAX_AGE_MS + 50))
  t.equal(sum(parsePrometheus(await registry.metrics()), METRIC_NAMES.sessions, { upstream: 'a' }), 4, 're-read after a second')
  t.equal(reads, 2)
  source.sessionCounts = async () => { reads++; throw new Error('store down') }
  await new Promise((resolve) => setTimeout(resolve, SESSION_COUNTS_MAX_AGE_MS + 50))
  t.equal(sum(parsePrometheus(await registry.metrics()), METRIC_NAMES.sessions, { upstream: 'a' }), 4, 'a failed read keeps the last figure')
  t.equal(reads, 3)
})

t.test('one registry, one set of sticky metrics', async (t) => {
  const registry = new Registry()
  const first = new StickyMetrics({ registry })
  t.throws(() => new StickyMetrics({ registry }), { code: 'FST_STICKY_INVALID_OPTION', message: /metrics\.registry already holds sticky_\* metrics/ })
  first.nearCache()
  first.unregister()
  t.equal((await registry.getMetricsAsJSON()).length, 0, 'unregister removes every series, near-cache ones too')
  t.doesNotThrow(() => new StickyMetrics({ registry }), 'and the registry can take them again')
})

t.test('instrumentStore passes results, errors and listeners through', async (t) => {
  const registry = new Registry()
  const metrics = new StickyMetrics({ registry })
  const inner = new MemoryBindingStore()
  const store = instrumentStore(inner, metrics)
  t.teardown(() => store.close())
  await store.init()
  const salt = await store.sharedSalt()
  t.equal(salt, await inner.sharedSalt())
  const invalidations: string[] = []
  const stop = store.onInvalidate((change) => { invalidations.push(change.keyId) })
  t.match(await store.bindIfAbsent('p', 'k1', 'a', 60_000), { upstreamId: 'a', created: true })
  t.match(await store.get('p', 'k1'), { upstreamId: 'a' })
  t.match(await store.rebind('p', 'k1', 'a', 'b'), { upstreamId: 'b', swapped: true })
  await store.touch([{ pool: 'p', keyId: 'k1', upstreamId: 'b', ttlMs: 60_000 }])
  t.same(await store.sessionCounts('p', ['a', 'b']), { a: 0, b: 1 })
  t.match(await store.setUpstreamState('p', 'a', { admin: 'draining' }), { admin: 'draining' })
  t.match(await store.upstreamStates('p'), { a: { admin: 'draining' } })
  t.equal(await store.delete('p', 'k1'), true)
  t.same(invalidations, ['k1', 'k1'], 'rebind and delete reached the listener')
  stop()
  const broken = instrumentStore({ ...inner, get: () => { throw new Error('sync failure') } } as unknown as BindingStore, metrics)
  await t.rejects(broken.get('p', 'k'), /sync failure/, 'a synchronous throw becomes a rejection')
  const samples = parsePrometheus(await registry.metrics())
  for (const operation of ['sharedSalt', 'get', 'bindIfAbsent', 'rebind', 'touch', 'delete', 'sessionCounts', 'upstreamStates', 'setUpstreamState']) {
    t.ok(sum(samples, METRIC_NAMES.storeDuration + '_count', { operation }) >= 1, `${operation} timed`)
  }
  t.equal(sum(samples, METRIC_NAMES.storeErrors, { operation: 'get' }), 1)
  t.equal(sum(samples, METRIC_NAMES.storeErrors), 1)
})

t.test('the metrics and admin options are checked', async (t) => {
  const registry = new Registry()
  t.equal(resolveMetricsOptions(undefined), false)
  t.equal(resolveMetricsOptions(false), false)
  t.same(resolveMetricsOptions(true), { registry: undefined }, 'true: the global registry')
  t.equal((resolveMetricsOptions({ registry }) as { registry: Registry }).registry, registry)
  t.throws(() => resolveMetricsOptions({ registry: {} }), { code: 'FST_STICKY_INVALID_OPTION', message: /metrics\.registry must be a prom-client Registry/ })
  t.throws(() => resolveMetricsOptions({ registy: registry }), { message: /metrics\.registy is not a known option/ })
  t.throws(() => resolveMetricsOptions('yes'), { message: /metrics must be a boolean or \{ registry \}/ })
  t.equal(resolveAdminOptions(undefined), undefined)
  t.same(resolveAdminOptions({ token: 'x'.repeat(16) }), { prefix: '/_sticky', token: 'x'.repeat(16), authHook: undefined, listen: undefined })
  t.same(resolveAdminOptions({ token: 'x'.repeat(16), listen: { port: 9090 } })?.listen, { port: 9090, host: '127.0.0.1' }, 'admin.listen binds loopback by default')
  t.throws(() => resolveAdminOptions({ token: 'x'.repeat(16), path: '/x' }), { message: /admin\.path is not a known option \(known: token, prefix, authHook, listen, reload\)/ })
  let message = ''
  try {
    resolveAdminOptions({ token: 'tooshort' })
  } catch (error) {
    message = (error as Error).message
  }
  t.match(message, /admin\.token must be a string of at least 16 characters/)
  t.notMatch(message, 'tooshort', 'a bad token is never echoed')
})

t.test('under a near-cache: the histogram times the store, the observer counts hits and misses', async (t) => {
  const registry = new Registry()
  const metrics = new StickyMetrics({ registry })
  // The memory store made cacheable, as the Redis store is: a read with its TTL, and a live invalidation feed.
  class CacheableMemoryStore extends MemoryBindingStore implements CacheableBindingStore {
    readonly invalidationsLive = true
    async getWithTtl (pool: string, keyId: string): Promise<ExpiringBinding | null> {
      const binding = await this.get(pool, keyId)
      return binding === null ? null : { ...binding, ttlMs: 60_000 }
    }

    onInvalidationsLive (): () => void {
      return () => {}
    }
  }
  const cacheable = new CacheableMemoryStore()
  const store = await openStore(t, new NearCacheStore(instrumentCacheableStore(cacheable, metrics), { observer: metrics.nearCache() }))
  await store.bindIfAbsent('shop', 'k1', 'a', 60_000) // through the near-cache, which keeps the winner
  await cacheable.bindIfAbsent('shop', 'k2', 'b', 60_000) // as another gateway would: this cache has not seen it
  for (let i = 0; i < 5; i++) t.match(await store.get('shop', 'k1'), { upstreamId: 'a' })
  for (let i = 0; i < 5; i++) t.match(await store.get('shop', 'k2'), { upstreamId: 'b' })
  const samples = parsePrometheus(await registry.metrics())
  t.equal(sum(samples, METRIC_NAMES.nearCacheMisses, { pool: 'shop' }), 1, 'the first read of k2 went to the store')
  t.equal(sum(samples, METRIC_NAMES.nearCacheHits, { pool: 'shop' }), 9, 'every other read was answered locally')
  t.equal(sum(samples, METRIC_NAMES.storeDuration + '_count', { operation: 'get' }), 1, 'only the store read is timed as a store get')
  t.equal(sum(samples, METRIC_NAMES.storeDuration + '_count', { operation: 'bindIfAbsent' }), 1, 'the bind made through it')
})
