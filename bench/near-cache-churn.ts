/**
 * `npm run bench:churn`: the cost of a near-cache hit, and of a key-id and routing-cookie cache hit, as a function
 * of how many sessions came and went before it (issue #17: the Redis-mode hit path decayed with session churn).
 * In-process, no network: each phase first makes `churn` new entries (a full cache evicting its oldest), then times
 * one hot key's hits. A hit path whose cost does not depend on churn prints the same ns/hit on every line.
 *
 *   npm run bench:churn [-- --churn 0,50000,150000,400000 --hits 200000]
 */
import { performance } from 'node:perf_hooks'
import { LruMap } from '../lib/lru-map'
import { NearCacheStore, type CacheableBindingStore, type ExpiringBinding } from '../lib/store/near-cache'
import type { Binding } from '../lib/store/binding-store'

function argList (name: string, fallback: number[]): number[] {
  const at = process.argv.indexOf(`--${name}`)
  return at < 0 ? fallback : process.argv[at + 1].split(',').map(Number)
}

// Answers every read at once with a binding: the cache is what is measured, not the store behind it.
function instantStore (): CacheableBindingStore {
  const binding: ExpiringBinding = { upstreamId: 'a', createdAt: Date.now(), ttlMs: 3_600_000 }
  const unsupported = async (): Promise<never> => { throw new Error('not used by this bench') }
  return {
    invalidationsLive: true,
    onInvalidationsLive: () => () => {},
    onInvalidate: () => () => {},
    onSaltChange: () => () => {},
    init: async () => {},
    close: async () => {},
    sharedSalt: async () => 'salt',
    getWithTtl: async () => binding,
    get: async (): Promise<Binding> => binding,
    bindIfAbsent: unsupported,
    rebind: unsupported,
    touch: async () => {},
    delete: unsupported,
    sessionCounts: unsupported,
    upstreamStates: unsupported,
    setUpstreamState: unsupported
  } as unknown as CacheableBindingStore
}

async function nearCacheHitNs (churn: number, hits: number): Promise<number> {
  const cache = new NearCacheStore(instantStore(), { maxEntries: 100_000, ttlMs: 3_600_000 })
  await cache.init()
  await cache.get('shop', 'hot')
  for (let i = 0; i < churn; i++) await cache.get('shop', 'k' + i)
  await cache.get('shop', 'hot')
  const started = performance.now()
  for (let i = 0; i < hits; i++) await cache.get('shop', 'hot')
  const ns = (performance.now() - started) * 1e6 / hits
  await cache.close()
  return ns
}

function lruHitNs (churn: number, hits: number): number {
  const lru = new LruMap<string, number>(100_000)
  lru.set('hot', 1)
  for (let i = 0; i < churn; i++) {
    lru.set('k' + i, i)
    // A steady client among the churn, as the hot cookie is among new sessions.
    if (i % 4 === 0) lru.get('hot')
  }
  const started = performance.now()
  let sum = 0
  for (let i = 0; i < hits; i++) sum += lru.get('hot') as number
  const ns = (performance.now() - started) * 1e6 / hits
  if (sum !== hits) throw new Error('lost the hot key')
  return ns
}

async function main (): Promise<void> {
  const churns = argList('churn', [0, 50_000, 150_000, 400_000])
  const [hits] = argList('hits', [200_000])
  // Warm-up, so the first line is not JIT time.
  await nearCacheHitNs(1000, 20_000)
  lruHitNs(1000, 20_000)
  process.stdout.write('churn (new entries before)   near-cache hit   LruMap hit   (ns per hit, median of 3)\n')
  for (const churn of churns) {
    const median = (values: number[]): number => values.sort((a, b) => a - b)[1]
    const near = median([await nearCacheHitNs(churn, hits), await nearCacheHitNs(churn, hits), await nearCacheHitNs(churn, hits)])
    const lru = median([lruHitNs(churn, hits), lruHitNs(churn, hits), lruHitNs(churn, hits)])
    process.stdout.write(`${String(churn).padStart(26)}   ${near.toFixed(0).padStart(14)}   ${lru.toFixed(0).padStart(10)}\n`)
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${(error as Error).stack ?? String(error)}\n`)
  process.exitCode = 1
})
