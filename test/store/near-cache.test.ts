import t, { type Test } from 'tap'
import Redis from 'ioredis'
import { NearCacheStore, type CacheableBindingStore, type ExpiringBinding } from '../../lib/store/near-cache'
import { RedisBindingStore } from '../../lib/store/redis-store'
import { startRedis, uniquePrefix } from '../support/redis'
import { readCommandStats, resetCommandStats } from '../../scripts/redis-command-stats'
import { sharedStoreContract } from './binding-store.contract'
import { eventually } from '../support/eventually'
import { openStore } from '../support/stores'

const KEY = 'AbCdEfGhIjKlMnOp'

t.test('near cache over a real Redis', async (t) => {
  const redis = await startRedis(t)
  const admin = new Redis(redis.url)
  t.teardown(() => admin.disconnect())

  const inners = new WeakMap<NearCacheStore, RedisBindingStore>()
  const open = async (t: Test, prefix: string, options: { ttlMs?: number, maxEntries?: number } = {}): Promise<NearCacheStore> => {
    const inner = new RedisBindingStore({ redis: redis.url, prefix })
    const store = await openStore(t, new NearCacheStore(inner, options))
    inners.set(store, inner)
    await eventually(() => store.live)
    return store
  }
  t.test('contract', async (t) => {
    sharedStoreContract(t, open)
  })

  t.test('a hit costs no Redis command; only existing bindings are cached', async (t) => {
    const prefix = uniquePrefix()
    const store = await open(t, prefix)
    const peer = await open(t, prefix)
    t.equal(await store.get('p', KEY), null)
    await peer.bindIfAbsent('p', KEY, 'a', 60_000)
    t.same((await store.get('p', KEY))?.upstreamId, 'a', 'an absent key is not cached: a binding made elsewhere is seen at once')
    await resetCommandStats(admin)
    for (let i = 0; i < 200; i++) t.equal((await store.get('p', KEY))?.upstreamId, 'a', 'hit ' + i, { diagnostic: false })
    const stats = await readCommandStats(admin)
    t.equal(stats.total, 0, `200 hits, ${stats.total} commands (${JSON.stringify(stats.byCommand)})`)
    t.ok(store.stats.hits >= 200)
    await resetCommandStats(admin)
    t.same((await peer.get('p', KEY))?.upstreamId, 'a', 'the creator cached its own new binding')
    t.equal((await readCommandStats(admin)).total, 0, 'so its first read is a hit too')
  })

  t.test('peek answers a live cached binding at once (a hit), and leaves everything else to get', async (t) => {
    const prefix = uniquePrefix()
    const store = await open(t, prefix)
    const peer = await open(t, prefix)
    await peer.bindIfAbsent('p', KEY, 'a', 60_000)
    t.equal(store.peek('p', KEY), undefined, 'not cached yet: only get can say')
    const bound = await store.get('p', KEY)
    await resetCommandStats(admin)
    const hits = store.stats.hits
    t.same(store.peek('p', KEY), bound, 'cached by the get')
    t.equal(store.stats.hits, hits + 1, 'counted as a hit')
    t.equal((await readCommandStats(admin)).total, 0, 'no Redis command')
    await peer.rebind('p', KEY, 'a', 'b')
    t.ok(await eventually(() => store.peek('p', KEY) === undefined), 'the invalidation drops it')
    t.equal((await store.get('p', KEY))?.upstreamId, 'b')
    t.equal(store.peek('p', KEY)?.upstreamId, 'b')
    const short = new NearCacheStore(new RedisBindingStore({ redis: redis.url, prefix }), { ttlMs: 30 })
    await openStore(t, short)
    await eventually(() => short.live)
    await short.get('p', KEY)
    t.equal(short.peek('p', KEY)?.upstreamId, 'b')
    await new Promise((resolve) => setTimeout(resolve, 40))
    t.equal(short.peek('p', KEY), undefined, 'past the safety TTL: asked again through get')
  })

  t.test('a move on one gateway reaches the other\'s cache within 50 ms', async (t) => {
    const prefix = uniquePrefix()
    const a = await open(t, prefix)
    const b = await open(t, prefix)
    const latencies: number[] = []
    for (let i = 0; i < 30; i++) {
      const key = ('lat' + i).padEnd(16, 'x')
      await a.bindIfAbsent('p', key, 'a', 60_000)
      t.equal((await b.get('p', key))?.upstreamId, 'a', 'b caches it', { diagnostic: false })
      const misses = b.stats.misses
      await a.rebind('p', key, 'a', 'b')
      const moved = Date.now()
      // Each check reads b's cache; once the invalidation is in, b asks Redis (a miss) and sees the move.
      let seen = false
      while (!seen && Date.now() - moved < 1000) {
        seen = (await b.get('p', key))?.upstreamId === 'b'
        if (!seen) await new Promise((resolve) => setImmediate(resolve))
      }
      latencies.push(Date.now() - moved)
      t.ok(seen, 'b sees the move', { diagnostic: false })
      t.ok(b.stats.misses > misses, 'through an invalidation, not the safety TTL', { diagnostic: false })
    }
    latencies.sort((x, y) => x - y)
    const median = latencies[Math.floor(latencies.length / 2)]
    const max = latencies[latencies.length - 1]
    t.comment(`invalidation latency over ${latencies.length} moves: median ${median} ms, max ${max} ms`)
    t.ok(max < 50, `every move seen within 50 ms (max ${max} ms)`)
  })

  t.test('the subscription drops: cache flushed and bypassed until it is back', async (t) => {
    const prefix = uniquePrefix()
    const a = await open(t, prefix)
    const b = await open(t, prefix)
    await a.bindIfAbsent('p', KEY, 'a', 60_000)
    t.equal((await b.get('p', KEY))?.upstreamId, 'a')
    t.ok(b.size >= 1, 'cached')
    const during: string[] = []
    const down = new Promise<void>((resolve) => {
      const off = (inners.get(b) as RedisBindingStore).onInvalidationsLive((live) => {
        if (live) return
        off()
        // While the feed is down, a change made elsewhere is not announced to b, yet b must see it.
        void a.rebind('p', KEY, 'a', 'b').then(() => b.get('p', KEY)).then((found) => {
          during.push(found?.upstreamId ?? 'none')
          resolve()
        })
      })
    })
    const killed = await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub')
    t.ok(Number(killed) >= 2, 'both subscriber connections killed')
    await down
    t.same(during, ['b'], 'a move made while the feed was down is seen (cache flushed, read from Redis)')
    t.ok(b.stats.bypassed >= 1, 'reads bypassed the cache meanwhile')
    t.ok(await eventually(() => a.live && b.live), 'subscriptions come back by themselves')
    t.equal((await b.get('p', KEY))?.upstreamId, 'b')
    await resetCommandStats(admin)
    t.equal((await b.get('p', KEY))?.upstreamId, 'b')
    t.equal((await readCommandStats(admin)).total, 0, 'and the cache serves hits again')
    await a.rebind('p', KEY, 'b', 'c')
    t.ok(await eventually(async () => (await b.get('p', KEY))?.upstreamId === 'c', 1000), 'invalidations flow again')
  })

  t.test('Redis away: every read fails fast (no stale answers), then the cache recovers', async (t) => {
    const local = await startRedis(t)
    const store = await openStore(t, new NearCacheStore(new RedisBindingStore({ redis: local.url, prefix: uniquePrefix() })))
    t.ok(await eventually(() => store.live))
    await store.bindIfAbsent('p', KEY, 'a', 60_000)
    t.equal((await store.get('p', KEY))?.upstreamId, 'a')
    await local.stop()
    t.ok(await eventually(() => !store.live, 1000), 'the dropped subscription is noticed')
    t.equal(store.size, 0, 'flushed')
    await t.rejects(store.get('p', KEY), 'a read goes to Redis and fails: the caller routes degraded')
    await local.restart()
    t.ok(await eventually(() => store.live, 5000), 'live again once Redis is back')
    t.equal(await store.get('p', KEY), null, 'Redis restarted empty: nothing cached from before')
  })

  t.test('the safety TTL bounds a lost invalidation', async (t) => {
    const prefix = uniquePrefix()
    const store = await open(t, prefix, { ttlMs: 300 })
    const raw = await openStore(t, new RedisBindingStore({ redis: redis.url, prefix }))
    await store.bindIfAbsent('p', KEY, 'a', 60_000)
    // Move it behind the feed's back, as a lost message would.
    await admin.set(raw.bindingKey('p', KEY), (await admin.get(raw.bindingKey('p', KEY)) as string).replace(/^a\|/, 'b|'), 'KEEPTTL')
    const changed = Date.now()
    t.equal((await store.get('p', KEY))?.upstreamId, 'a', 'stale at first')
    t.ok(await eventually(async () => (await store.get('p', KEY))?.upstreamId === 'b', 2000), 'then read again')
    const waited = Date.now() - changed
    t.ok(waited <= 450, `within the 300 ms safety TTL (${waited} ms)`)
  })

  t.test('an entry never outlives its binding', async (t) => {
    const prefix = uniquePrefix()
    const a = await open(t, prefix)
    const b = await open(t, prefix)
    await a.bindIfAbsent('p', KEY, 'a', 400)
    const made = Date.now()
    t.equal((await b.get('p', KEY))?.upstreamId, 'a', 'b caches it with its remaining TTL (read with PTTL)')
    t.ok(await eventually(async () => (await b.get('p', KEY)) === null, 2000), 'gone once Redis expired it')
    t.ok(Date.now() - made < 600, 'not kept for the 10 s safety TTL')
    const other = 'QrStUvWxYz012345'
    await a.bindIfAbsent('p', other, 'a', 60_000)
    t.equal((await b.get('p', other))?.upstreamId, 'a')
    // A touch with a shorter TTL (another route of the pool with a shorter idle timeout) shortens the entry too.
    await b.touch([{ pool: 'p', keyId: other, upstreamId: 'a', ttlMs: 200 }])
    t.ok(await eventually(async () => (await b.get('p', other)) === null, 2000), 'a shortened binding expires in the cache too')
  })

  t.test('a read racing with a move never caches the old upstream', async (t) => {
    const prefix = uniquePrefix()
    const inner = new RedisBindingStore({ redis: redis.url, prefix })
    let hold: Promise<void> | undefined
    // Every method delegates to the Redis store; reads take the old value, then answer only after the move.
    const slow = new Proxy(inner, {
      get (target, property) {
        if (property === 'getWithTtl') {
          return async (pool: string, keyId: string): Promise<ExpiringBinding | null> => {
            const found = await target.getWithTtl(pool, keyId)
            if (hold !== undefined) await hold
            return found
          }
        }
        const value = Reflect.get(target, property, target) as unknown
        return typeof value === 'function' ? value.bind(target) : value
      }
    }) as CacheableBindingStore
    const b = await openStore(t, new NearCacheStore(slow))
    t.ok(await eventually(() => b.live))
    const a = await open(t, prefix)
    await a.bindIfAbsent('p', KEY, 'a', 60_000)
    let release = (): void => {}
    hold = new Promise((resolve) => { release = resolve })
    const racing = b.get('p', KEY)
    await new Promise((resolve) => setTimeout(resolve, 20))
    const invalidations = new Promise<void>((resolve) => { const off = inner.onInvalidate(() => { off(); resolve() }) })
    await a.rebind('p', KEY, 'a', 'b')
    await invalidations
    release()
    hold = undefined
    t.equal((await racing)?.upstreamId, 'a', 'the racing read answers what it read')
    t.equal((await b.get('p', KEY))?.upstreamId, 'b', 'but did not cache it')
  })

  t.test('bounded: least recently used entries go first', async (t) => {
    const prefix = uniquePrefix()
    const store = await open(t, prefix, { maxEntries: 3 })
    const keys = ['k1', 'k2', 'k3', 'k4'].map((k) => k.padEnd(16, 'x'))
    for (const key of keys.slice(0, 3)) await store.bindIfAbsent('p', key, 'a', 60_000)
    await store.get('p', keys[0])
    await store.bindIfAbsent('p', keys[3], 'a', 60_000)
    t.equal(store.size, 3)
    await resetCommandStats(admin)
    await store.get('p', keys[0])
    await store.get('p', keys[3])
    t.equal((await readCommandStats(admin)).total, 0, 'the recently used and the newest are cached')
    await store.get('p', keys[1])
    t.ok((await readCommandStats(admin)).total > 0, 'the least recently used was dropped')
  })

  t.test('an observer is told of every lookup', async (t) => {
    const seen: string[] = []
    const store = await openStore(t, new NearCacheStore(new RedisBindingStore({ redis: redis.url, prefix: uniquePrefix() }), {
      observer: { hit: (pool) => seen.push('hit ' + pool), miss: (pool) => seen.push('miss ' + pool) }
    }))
    t.ok(await eventually(() => store.live))
    await store.get('p', KEY)
    await store.bindIfAbsent('p', KEY, 'a', 60_000)
    await store.get('p', KEY)
    t.same(seen, ['miss p', 'hit p'])
  })

  t.test('options are checked', async (t) => {
    const inner = new RedisBindingStore({ redis: redis.url, prefix: uniquePrefix() })
    t.teardown(() => inner.close())
    t.throws(() => new NearCacheStore(inner, { maxEntries: 0 }), { name: 'TypeError', message: /maxEntries must be a positive integer, got 0/ })
    t.throws(() => new NearCacheStore(inner, { ttlMs: 1.5 }), { name: 'TypeError', message: /ttlMs must be a positive integer, got 1.5/ })
  })
})
