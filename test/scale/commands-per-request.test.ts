import t from 'tap'
import Redis from 'ioredis'
import { request } from 'undici'
import type { BindingStore } from '../../lib/store/binding-store'
import { NearCacheStore } from '../../lib/store/near-cache'
import { RedisBindingStore } from '../../lib/store/redis-store'
import { startGateway } from '../helpers/gateway'
import { startRedis, uniquePrefix } from '../helpers/redis'
import { startUpstreams } from '../helpers/upstreams'
import { readCommandStats, resetCommandStats, type CommandStats } from './command-stats'

/** The target: Redis commands per proxied request at steady state on the cookie hit path. */
const TARGET = 0.05
// What a steady state costs: each client's cached binding is read again (GET + PTTL) once per safety TTL, and each
// gateway polls upstream states (HGETALL) once a second; per request that is 2/(r·T) + 1/R for r requests per
// second per client, T = 10 s and R requests per second in all. 16 busy clients keep it far below the target even
// when a loaded machine only manages a hundred or two requests per second (measured: ~140/s with the whole suite
// running on two cores, ~1000/s alone).
const CLIENTS = 16
const CONCURRENCY = 8
/** Longer than the near cache's 10 s safety TTL, so every client's entry is read again at least once. */
const MEASURE_MS = 11_000

interface Client {
  cookie: string
  upstream: string
}

t.test('steady state on the cookie hit path costs at most 0.05 Redis commands per request', async (t) => {
  const redis = await startRedis(t)
  const admin = new Redis(redis.url)
  t.teardown(() => admin.disconnect())
  const upstreams = await startUpstreams(t)

  const run = async (store: BindingStore, durationMs: number): Promise<{ requests: number, stats: CommandStats, wrong: number, perSecond: number }> => {
    t.teardown(() => store.close())
    await store.init()
    const gateway = await startGateway(t, { upstreams, store })
    // Each client binds (first request, on probation) and comes back once with its cookie (which touches the
    // binding to the full idle timeout): from then on it is at steady state.
    const clients: Client[] = []
    for (let i = 0; i < CLIENTS; i++) {
      const first = await request(`${gateway.url}/warm`)
      const echo = await first.body.json() as { upstream: string }
      const cookie = String(first.headers['set-cookie']).split(';')[0]
      const again = await request(`${gateway.url}/warm`, { headers: { cookie } })
      await again.body.dump()
      clients.push({ cookie, upstream: echo.upstream })
    }
    // Let the touch batch (sent within a second) go out before counting.
    await new Promise((resolve) => setTimeout(resolve, 1200))
    await resetCommandStats(admin)
    const started = Date.now()
    let requests = 0
    let wrong = 0
    await Promise.all(Array.from({ length: CONCURRENCY }, async (_, worker) => {
      for (let i = worker; Date.now() - started < durationMs; i += CONCURRENCY) {
        const client = clients[i % CLIENTS]
        const response = await request(`${gateway.url}/cart/${i}`, { headers: { cookie: client.cookie } })
        await response.body.dump()
        requests++
        if (response.headers['x-upstream-id'] !== client.upstream) wrong++
      }
    }))
    const elapsed = Date.now() - started
    const stats = await readCommandStats(admin)
    await gateway.app.close()
    return { requests, stats, wrong, perSecond: Math.round(requests / (elapsed / 1000)) }
  }

  const cached = await run(new NearCacheStore(new RedisBindingStore({ redis: redis.url, prefix: uniquePrefix() })), MEASURE_MS)
  const ratio = cached.stats.total / cached.requests
  t.comment(`near cache: ${cached.requests} requests (${cached.perSecond}/s) over ${MEASURE_MS} ms, ${cached.stats.total} Redis commands ` +
    `(${JSON.stringify(cached.stats.byCommand)}): ${ratio.toFixed(4)} per request`)
  t.equal(cached.wrong, 0, 'every request reached its client\'s upstream')
  t.ok(cached.requests >= 500, `enough requests to measure (${cached.requests}, ${(cached.requests / CLIENTS / (MEASURE_MS / 1000)).toFixed(1)}/s per client)`)
  t.ok(ratio <= TARGET, `≤ ${TARGET} commands per request (${ratio.toFixed(4)})`)

  // For comparison: the same traffic without the near cache costs one GET per request at least.
  const plain = await run(new RedisBindingStore({ redis: redis.url, prefix: uniquePrefix() }), 2000)
  const plainRatio = plain.stats.total / plain.requests
  t.comment(`without near cache: ${plain.requests} requests (${plain.perSecond}/s), ${plain.stats.total} Redis commands: ${plainRatio.toFixed(3)} per request`)
  t.ok(plainRatio >= 1, 'without it, each hit is a Redis GET')
})
