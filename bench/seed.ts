/**
 * Seeds a Redis with live bindings and measures Redis memory per binding on the way. The first
 * `SEED_MEMORY_AT` bindings go through the library's own store API (`bindIfAbsent`: the real key layout,
 * index entries and values; memory per binding is measured on them). The rest, up to `SEED_COUNT`, are
 * written in bulk (pipelined SET PX + ZADD) with keys from the store's own `bindingKey()`, ~10× faster than
 * one script call each, then checked against the store: `get()` reads them back, `sessionCounts()` counts
 * them, and their memory per binding is compared with the API-made ones.
 *
 * Run as its own process (`node -r tsx/cjs bench/seed.ts`, pinned to the idle gateway core by bench/run.ts)
 * with env: SEED_REDIS_URL, SEED_PREFIX, SEED_POOL, SEED_COUNT, SEED_MEMORY_AT (binding count at which memory
 * is sampled), SEED_UPSTREAMS (comma list of ids), SEED_TTL_MS, SEED_CONCURRENCY, SEED_BUDGET_MS (stop early,
 * and say so, when seeding would overrun the time budget).
 * Prints progress lines and, last, `SEED_JSON {...}`.
 */
import { randomBytes } from 'node:crypto'
import Redis from 'ioredis'
import { RedisBindingStore } from '../lib/store/redis-store'
import { KEY_ID_LENGTH } from '../lib/affinity/key-id'

/** What a seeding run reports. */
export interface SeedReport {
  readonly requested: number
  readonly seeded: number
  readonly stoppedByBudget: boolean
  readonly seconds: number
  readonly perSecond: number
  /** used_memory before the first binding. */
  readonly memoryBefore: number
  /** Binding count and used_memory at the sampling point (`SEED_MEMORY_AT`), or null when not reached. */
  readonly memoryAtSample: { readonly bindings: number, readonly usedMemory: number } | null
  /**
   * Where the bytes of an API-made binding go, from `MEMORY USAGE` (approximate; Redis's own estimate):
   * the binding string key, and its share of the per-upstream index ZSETs. The rest of used_memory per binding
   * is the keyspace and expires dictionaries.
   */
  readonly breakdown: { readonly bindingKeyBytes: number, readonly indexBytesPerBinding: number } | null
  /** Bindings written in bulk, and how they compare with API-made ones; null when none were. */
  readonly bulk: {
    readonly bindings: number
    readonly seconds: number
    readonly bytesPerBinding: number
    /** `store.get()` of sampled bulk bindings returned the upstream written. */
    readonly readBack: boolean
    /** `store.sessionCounts()` over the pool, summed. */
    readonly counted: number
  } | null
  readonly memoryAtEnd: number
  readonly keysAtEnd: number
}

function env (name: string, fallback?: string): string {
  const value = process.env[name] ?? fallback
  if (value === undefined) throw new Error(`seed: env ${name} is required`)
  return value
}

async function usedMemory (client: Redis): Promise<number> {
  // Let Redis finish incremental rehashing and shrink client buffers before sampling.
  await new Promise((resolve) => setTimeout(resolve, 300))
  const info = await client.info('memory')
  return Number(/used_memory:(\d+)/.exec(info)?.[1] ?? NaN)
}

async function main (): Promise<void> {
  const url = env('SEED_REDIS_URL')
  const prefix = env('SEED_PREFIX')
  const pool = env('SEED_POOL')
  const count = Number(env('SEED_COUNT'))
  const memoryAt = Number(env('SEED_MEMORY_AT', '0'))
  const upstreams = env('SEED_UPSTREAMS').split(',')
  const ttlMs = Number(env('SEED_TTL_MS', String(2 * 3600_000)))
  const concurrency = Number(env('SEED_CONCURRENCY', '256'))
  const budgetMs = Number(env('SEED_BUDGET_MS', '60000'))

  const store = new RedisBindingStore({ redis: url, prefix, commandTimeoutMs: 10_000 })
  await store.init()
  const stats = new Redis(url, { maxRetriesPerRequest: 1 })
  const memoryBefore = await usedMemory(stats)
  const started = Date.now()
  let next = 0
  let seeded = 0
  let stoppedByBudget = false
  let memoryAtSample: SeedReport['memoryAtSample'] = null
  let lastProgress = started
  const sampledKeyIds: string[] = []

  // Seeds up to `limit` bindings with `concurrency` calls in flight.
  const seedUpTo = async (limit: number): Promise<void> => {
    const worker = async (): Promise<void> => {
      while (next < limit && !stoppedByBudget) {
        const i = next++
        const keyId = randomBytes(12).toString('base64url').slice(0, KEY_ID_LENGTH)
        const result = await store.bindIfAbsent(pool, keyId, upstreams[i % upstreams.length], ttlMs)
        if (result.created) seeded++
        if (sampledKeyIds.length < 200 && i % 101 === 0) sampledKeyIds.push(keyId)
        if ((seeded & 0x3fff) === 0) {
          const now = Date.now()
          if (now - started > budgetMs) stoppedByBudget = true
          if (now - lastProgress > 5000) {
            lastProgress = now
            console.log(`seed progress ${seeded} bindings, ${Math.round(seeded / ((now - started) / 1000))}/s`)
          }
        }
      }
    }
    await Promise.all(Array.from({ length: concurrency }, worker))
  }

  if (memoryAt > 0 && memoryAt <= count) {
    await seedUpTo(memoryAt)
    if (!stoppedByBudget) memoryAtSample = { bindings: seeded, usedMemory: await usedMemory(stats) }
  }
  const breakdown = memoryAtSample === null ? null : await memoryBreakdown(store, stats, pool, sampledKeyIds, memoryAtSample.bindings)
  let bulk: SeedReport['bulk'] = null
  if (memoryAtSample !== null && count > seeded) {
    bulk = await seedInBulk(store, stats, pool, upstreams, count - seeded, ttlMs, memoryAtSample.usedMemory, started, budgetMs)
    seeded += bulk.bindings
    if (bulk.bindings < count - memoryAtSample.bindings) stoppedByBudget = true
  } else {
    await seedUpTo(count)
  }
  const seconds = (Date.now() - started) / 1000
  const report: SeedReport = {
    requested: count,
    seeded,
    stoppedByBudget,
    seconds,
    perSecond: seeded / seconds,
    memoryBefore,
    memoryAtSample,
    breakdown,
    bulk,
    memoryAtEnd: await usedMemory(stats),
    keysAtEnd: await stats.dbsize()
  }
  stats.disconnect()
  await store.close()
  console.log('SEED_JSON ' + JSON.stringify(report))
}

async function memoryBreakdown (store: RedisBindingStore, client: Redis, pool: string, keyIds: readonly string[], bindings: number): Promise<SeedReport['breakdown']> {
  if (keyIds.length === 0) return null
  let keyBytes = 0
  for (const keyId of keyIds) keyBytes += Number(await client.call('MEMORY', 'USAGE', store.bindingKey(pool, keyId)))
  // The index keys share the binding's hash tag; find them from one binding key (…:b:<keyId> → …:z:*).
  const sample = store.bindingKey(pool, keyIds[0])
  const tagStart = sample.indexOf('{')
  const prefix = sample.slice(0, tagStart)
  let indexBytes = 0
  let cursor = '0'
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}{${pool}:*}:z:*`, 'COUNT', 1000)
    cursor = next
    for (const key of keys) indexBytes += Number(await client.call('MEMORY', 'USAGE', key, 'SAMPLES', '0'))
  } while (cursor !== '0')
  return { bindingKeyBytes: keyBytes / keyIds.length, indexBytesPerBinding: indexBytes / bindings }
}

/**
 * Pipelined SET PX + ZADD, in the layout `bindIfAbsent` makes (see the header of lib/store/redis-layout.ts),
 * with keys derived from the store's own `bindingKey()`; then checked against the store.
 */
async function seedInBulk (store: RedisBindingStore, client: Redis, pool: string, upstreams: readonly string[], count: number,
  ttlMs: number, memoryBefore: number, started: number, budgetMs: number): Promise<NonNullable<SeedReport['bulk']>> {
  const t0 = Date.now()
  const BATCH = 2000
  const IN_FLIGHT = 4
  const samples: Array<[string, string]> = []
  let written = 0
  let lastProgress = t0
  const batch = async (size: number): Promise<void> => {
    const pipeline = client.pipeline()
    const now = Date.now()
    const random = randomBytes(12 * size)
    for (let i = 0; i < size; i++) {
      const keyId = random.subarray(12 * i, 12 * i + 12).toString('base64url').slice(0, KEY_ID_LENGTH)
      const upstreamId = upstreams[(written + i) % upstreams.length]
      const key = store.bindingKey(pool, keyId)
      const suffix = ':b:' + keyId
      if (!key.endsWith(suffix)) throw new Error(`seed: bindingKey() no longer ends with ":b:<keyId>" (${key}); bulk seeding must be updated`)
      const tag = key.slice(0, key.length - suffix.length)
      pipeline.set(key, upstreamId + '|' + now, 'PX', ttlMs)
      pipeline.zadd(tag + ':z:' + upstreamId, now + ttlMs, keyId)
      if (samples.length < 20 && (written + i) % 997 === 0) samples.push([keyId, upstreamId])
    }
    written += size
    const results = await pipeline.exec()
    const failed = results?.find(([error]) => error !== null)
    if (failed !== undefined) throw failed[0] as Error
  }
  const inFlight = new Set<Promise<void>>()
  while (written < count && Date.now() - started < budgetMs) {
    const p = batch(Math.min(BATCH, count - written)).finally(() => inFlight.delete(p))
    inFlight.add(p)
    if (inFlight.size >= IN_FLIGHT) await Promise.race(inFlight)
    if (Date.now() - lastProgress > 5000) {
      lastProgress = Date.now()
      console.log(`seed progress ${written} bulk bindings, ${Math.round(written / ((Date.now() - t0) / 1000))}/s`)
    }
  }
  await Promise.all(inFlight)
  const seconds = (Date.now() - t0) / 1000
  const memoryAfter = await usedMemory(client)
  let readBack = samples.length > 0
  for (const [keyId, upstreamId] of samples) {
    const binding = await store.get(pool, keyId)
    if (binding?.upstreamId !== upstreamId) readBack = false
  }
  const counts = await store.sessionCounts(pool, upstreams)
  const counted = Object.values(counts).reduce((a, b) => a + b, 0)
  return { bindings: written, seconds, bytesPerBinding: (memoryAfter - memoryBefore) / written, readBack, counted }
}

main().catch((error: unknown) => {
  console.error(error)
  process.exit(1)
})
