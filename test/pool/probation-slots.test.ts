import t, { type Test } from 'tap'
import Redis from 'ioredis'
import type { StickyPluginOptions } from '../../lib/index'
import type { BindingStore } from '../../lib/store/binding-store'
import { MemoryBindingStore } from '../../lib/store/memory-store'
import { NearCacheStore } from '../../lib/store/near-cache'
import { RedisBindingStore } from '../../lib/store/redis-store'
import { internalPools } from '../../lib/core/sticky-api'
import { eventually } from '../support/eventually'
import { startGateway } from '../support/gateway'
import { CookieJar, get } from '../support/http'
import { startRedis, uniquePrefix } from '../support/redis'
import { openStore } from '../support/stores'
import { startUpstreams, type TestUpstream } from '../support/upstreams'

// Security issue #16, finding 4 (second half): bindings on probation (clients that never came back) must not hold an
// upstream's maxSessions slots for long, or a flood of one-off requests locks new users out under overflow 'reject'.

const capped = (upstream: TestUpstream, maxSessions: number): StickyPluginOptions['pools'] =>
  ({ shop: { upstreams: [{ id: upstream.id, url: upstream.url, maxSessions }], overflow: 'reject' } })
const from = (address: string): Record<string, string> => ({ 'x-forwarded-for': address })

t.test('maxSessions with overflow reject: a flood of one-off sessions does not lock new users out', async (t) => {
  const redisServer = await startRedis(t)
  const redis = new Redis(redisServer.url)
  t.teardown(() => redis.disconnect())
  const [a] = await startUpstreams(t, ['a'])
  const prefix = uniquePrefix()
  const gateway = await startGateway(t, {
    pools: capped(a, 10),
    redis: redisServer.url,
    prefix,
    fastify: { trustProxy: true },
    // The hold must outlast the whole flood (30 requests one after the other, up to ~1 s when the cores are busy),
    // or its first sessions stop holding slots before the last arrive and an eleventh gets in.
    newBindings: { perClient: false, probationHold: '2s' }
  })

  // Thirty clients (a botnet: one address each) that never come back.
  const statuses: number[] = []
  const floodCookies: string[] = []
  for (let i = 0; i < 30; i++) {
    const response = await get(`${gateway.url}/`, { headers: from(`198.51.100.${i + 1}`) })
    statuses.push(response.status)
    if (response.status === 200) floodCookies.push(response.setCookies[0].split(';')[0])
  }
  t.equal(statuses.filter((s) => s === 200).length, 10, 'the flood fills the upstream')
  t.equal(statuses.filter((s) => s === 503).length, 20, 'and the rest are refused, as maxSessions says')

  const started = Date.now()
  const user = new CookieJar()
  t.ok(await eventually(async () => (await get(`${gateway.url}/`, { jar: user, headers: from('203.0.113.5') })).status === 200, 6000),
    'a real new user gets in once the one-off sessions stop holding slots')
  t.comment(`admitted after ${Date.now() - started} ms (probation hold 2 s, counts re-read each second)`)
  t.equal((await redis.keys(prefix + '*:b:*')).length, 11, 'the flood\'s bindings are still there (they expire after the probation)')
  const late = await get(`${gateway.url}/`, { headers: { ...from('198.51.100.1'), cookie: floodCookies[0] } })
  t.equal(late.status, 200, 'a flood session that does come back late is still served by its binding')
})

t.test('sessions whose clients came back keep counting: maxSessions still holds after the probation hold', async (t) => {
  const redisServer = await startRedis(t)
  const [a] = await startUpstreams(t, ['a'])
  const gateway = await startGateway(t, {
    pools: capped(a, 3),
    redis: redisServer.url,
    prefix: uniquePrefix(),
    // Touches are flushed within a tenth of the idle timeout (0.5 s), before the hold (1 s) ends.
    defaults: { idleTimeout: '5s' },
    newBindings: { probationHold: '1s' }
  })
  const made = Date.now()
  for (let i = 0; i < 3; i++) {
    const jar = new CookieJar()
    t.equal((await get(`${gateway.url}/`, { jar })).status, 200)
    t.equal((await get(`${gateway.url}/again`, { jar })).status, 200, 'the client comes back')
  }
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, made + 1300 - Date.now())))
  t.same(await gateway.app.sticky.sessionCounts('shop'), { a: 3 }, 'past the hold, returned sessions still count')
  await internalPools(gateway.app.sticky).get('shop')?.refreshCounts()
  t.equal((await get(`${gateway.url}/`)).status, 503, 'so a fourth new session is refused')
})

async function holdSemantics (t: Test, store: BindingStore): Promise<void> {
  const count = async (id: string): Promise<number> => (await store.sessionCounts('p', [id]))[id]
  await store.bindIfAbsent('p', 'k-held-one', 'a', 60_000, 150)
  await store.bindIfAbsent('p', 'k-full-one', 'a', 60_000)
  t.equal(await count('a'), 2, 'a new binding counts during its hold')
  t.ok(await eventually(async () => (await count('a')) === 1, 2000), 'and no longer once it has passed')
  t.match(await store.get('p', 'k-held-one'), { upstreamId: 'a' }, 'while it still routes its key')
  await store.touch([{ pool: 'p', keyId: 'k-held-one', upstreamId: 'a', ttlMs: 60_000 }])
  t.equal(await count('a'), 2, 'a touch (its client came back) counts it again')
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.equal(await count('a'), 2, 'for the TTL the touch set')

  await store.bindIfAbsent('p', 'k-held-two', 'a', 60_000, 100)
  t.ok(await eventually(async () => (await count('a')) === 2, 2000))
  t.match(await store.rebind('p', 'k-held-two', 'a', 'b'), { swapped: true })
  t.same(await store.sessionCounts('p', ['a', 'b']), { a: 2, b: 1 }, 'a move counts it again, on its new upstream')

  await store.bindIfAbsent('p', 'k-never', 'a', 60_000, 0)
  t.equal(await count('a'), 2, 'countedMs 0: not counted until touched')
  t.equal(await store.delete('p', 'k-never'), true)
  t.equal(await store.delete('p', 'k-held-one'), true)
  t.equal(await count('a'), 1, 'deleting a counted binding uncounts it; deleting an uncounted one changes nothing')
}

t.test('stores count a binding on probation for its hold only', async (t) => {
  t.test('memory', async (t) => { await holdSemantics(t, await openStore(t, new MemoryBindingStore())) })
  const redisServer = await startRedis(t)
  t.test('redis', async (t) => { await holdSemantics(t, await openStore(t, new RedisBindingStore({ redis: redisServer.url, prefix: uniquePrefix() }))) })
  t.test('redis behind the near cache', async (t) => {
    await holdSemantics(t, await openStore(t, new NearCacheStore(new RedisBindingStore({ redis: redisServer.url, prefix: uniquePrefix() }), { maxEntries: 100, ttlMs: 10_000 })))
  })
})
