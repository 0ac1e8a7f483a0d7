/**
 * Redis (or Redis Cluster, or Redis behind Sentinel) binding store, shared by every gateway on the same Redis and
 * prefix: the {@link BindingStore} methods on the layout and scripts of `redis-layout.ts` (every key, value and Lua
 * script is there; docs/redis-layout.md is the operators' copy).
 *
 * Its parts, each in a file of its own: the client it creates from a URL, Sentinel or Cluster addresses
 * (`redis-connection.ts`), the shared key-id salt (`redis-salt.ts`) and the invalidation feed over pub/sub
 * (`redis-invalidations.ts`). This file wires them to one client and owns its lifecycle (`init`, `close`).
 */
import type Redis from 'ioredis'
import type { Cluster } from 'ioredis'
import type {
  Binding, BindResult, BindingStore, Invalidation, RebindResult, TouchRequest, UpstreamStateChange, UpstreamStatus
} from './binding-store'
import { FORGET_REMOVED_AFTER_MS } from './binding-store'
import type { CacheableBindingStore, ExpiringBinding } from './near-cache'
import { createRedisClient, type RedisConnection } from './redis-connection'
import { InvalidationFeed } from './redis-invalidations'
import { ReadBatch } from './redis-read-batch'
import {
  RedisKeyLayout, TRIM_EVERY_BINDS, defineStickyCommands, invalidationMessage, parseBinding, parseUpstreamStatus, type StickyClient
} from './redis-layout'
import { SharedSalt } from './redis-salt'

// The connection forms are part of this store's options: lib/index.ts and lib/options keep importing them from here.
export type {
  RedisAddress, RedisConnection, RedisSentinelConnection, RedisClusterConnection
} from './redis-connection'

/** Default key prefix. */
export const DEFAULT_REDIS_PREFIX = 'sticky:'
/** Default number of shards per pool (hash-tag groups). */
export const DEFAULT_REDIS_SHARDS = 16
/** Longest wait for a first connection in `init()` (the client keeps connecting afterwards). */
const INIT_CONNECT_TIMEOUT_MS = 2000
/** Default per-command timeout; a gateway must not wait on a slow Redis for long. */
export const DEFAULT_REDIS_COMMAND_TIMEOUT_MS = 250

/** Options of {@link RedisBindingStore}. */
export interface RedisBindingStoreOptions {
  /** See {@link RedisConnection}. */
  redis: RedisConnection
  /**
   * Prefix of every key and of the invalidation channel.
   * @defaultValue `'sticky:'`
   */
  prefix?: string
  /**
   * Hash-tag groups per pool; every gateway on one prefix must use the same number.
   * @defaultValue 16
   */
  shards?: number
  /**
   * Per-command timeout of a client the store creates from a URL, in ms.
   * @defaultValue 250
   */
  commandTimeoutMs?: number
}

/**
 * A {@link BindingStore} in Redis, Redis Cluster or Redis behind Sentinel, shared by every gateway using the same
 * prefix. It also offers what a {@link NearCacheStore} in front of it needs (reads with the remaining TTL, and the
 * state of the invalidation subscription).
 */
export class RedisBindingStore implements BindingStore, CacheableBindingStore {
  readonly #client: StickyClient
  readonly #ownsClient: boolean
  readonly #keys: RedisKeyLayout
  readonly #salt: SharedSalt
  readonly #invalidations: InvalidationFeed
  #initialized: Promise<void> | undefined
  // Reads of one turn as one MGET (each alone on a Cluster, where the keys of a batch live in different slots).
  readonly #reads: ReadBatch
  // Counts this store's new bindings, so one in TRIM_EVERY_BINDS trims its index.
  #binds = 0
  readonly #onError = (): void => {}

  /** @param options - see {@link RedisBindingStoreOptions} */
  constructor (options: RedisBindingStoreOptions) {
    this.#keys = new RedisKeyLayout(options.prefix ?? DEFAULT_REDIS_PREFIX, options.shards ?? DEFAULT_REDIS_SHARDS)
    const created = createRedisClient(options.redis, options.commandTimeoutMs ?? DEFAULT_REDIS_COMMAND_TIMEOUT_MS)
    this.#client = defineStickyCommands(created ?? options.redis as Redis | Cluster)
    this.#ownsClient = created !== undefined
    const client = this.#client
    this.#reads = new ReadBatch((keys) => client.mget(keys), (key) => client.get(key), !client.isCluster)
    // An 'error' listener keeps ioredis from printing every reconnect failure of our own client; failed commands
    // still reject. A caller's client keeps whatever error handling its owner gave it.
    if (this.#ownsClient) this.#client.on('error', this.#onError)
    this.#salt = new SharedSalt(this.#client, this.#keys.saltKey)
    this.#invalidations = new InvalidationFeed(this.#client, this.#keys.channel)
  }

  /** Connects (when the store owns the client) and loads the shared salt. */
  init (): Promise<void> {
    this.#initialized ??= this.#connect()
    return this.#initialized
  }

  async #connect (): Promise<void> {
    this.#salt.startChecks()
    if (this.#ownsClient && this.#client.status === 'wait') {
      // A client asking unreachable sentinels (or a host that drops packets) may wait long before it gives up on a
      // first connection, and keeps trying afterwards anyway: init fails after a bounded wait, so a gateway can start
      // degraded, while the client goes on connecting in the background.
      const connecting = this.#client.connect()
      connecting.catch(() => {})
      let timer: NodeJS.Timeout | undefined
      try {
        await Promise.race([connecting, new Promise<never>((_resolve, reject) => {
          timer = setTimeout(() => reject(new Error(`fastify-sticky: Redis not connected within ${INIT_CONNECT_TIMEOUT_MS} ms`)), INIT_CONNECT_TIMEOUT_MS)
        })])
      } finally {
        clearTimeout(timer)
      }
    }
    await this.sharedSalt()
  }

  /**
   * Listens for a change of the shared salt (after Redis lost it and another gateway wrote a new one first):
   * key ids must then be derived anew, or this gateway would disagree with the others.
   * @returns a function that unsubscribes
   */
  onSaltChange (listener: (salt: string) => void): () => void {
    return this.#salt.onChange(listener)
  }

  sharedSalt (): Promise<string> {
    return this.#salt.get()
  }

  /** Every binding is in Redis: only `get` can say (a near cache in front answers from memory). */
  peek (): undefined {
    return undefined
  }

  async get (pool: string, keyId: string): Promise<Binding | null> {
    const key = this.bindingKey(pool, keyId)
    const value = await this.#reads.get(key)
    return value === null ? null : parseBinding(value)
  }

  /**
   * Reads a binding and its remaining TTL in one round trip (`GET` and `PTTL`, pipelined: two commands, which is
   * why {@link RedisBindingStore.get} does not). Used by a near cache, so an entry never outlives the binding.
   * @returns the binding and its remaining time-to-live in ms (`Infinity` without expiry), or `null`
   */
  async getWithTtl (pool: string, keyId: string): Promise<ExpiringBinding | null> {
    const key = this.bindingKey(pool, keyId)
    const replies = await this.#client.pipeline().get(key).pttl(key).exec()
    if (replies === null) throw new Error('fastify-sticky: Redis pipeline aborted')
    for (const [error] of replies) if (error !== null) throw error
    const value = replies[0][1] as string | null
    const ttl = Number(replies[1][1])
    // PTTL -2: the key expired between the two commands (they are not atomic); -1: no expiry (never written so).
    if (value === null || ttl === -2) return null
    const binding = parseBinding(value)
    return binding === null ? null : { ...binding, ttlMs: ttl < 0 ? Infinity : ttl }
  }

  async bindIfAbsent (pool: string, keyId: string, upstreamId: string, ttlMs: number, countedMs = ttlMs): Promise<BindResult> {
    const tag = this.#keys.bindingTag(pool, keyId)
    const ttl = Math.max(1, Math.round(ttlMs))
    const counted = Number.isFinite(countedMs) ? Math.min(ttl, Math.max(0, Math.round(countedMs))) : ttl
    const trim = ++this.#binds % TRIM_EVERY_BINDS === 0 ? 1 : 0
    const [created, value] = await this.#client.stickyBindIfAbsent(
      this.#keys.bindingKey(tag, keyId), this.#keys.indexKey(tag, upstreamId), upstreamId, ttl, keyId, counted, Date.now(), trim)
    const binding = parseBinding(value ?? '')
    if (binding === null) throw new Error(`fastify-sticky: unreadable binding value in Redis for pool "${pool}"`)
    return { upstreamId: binding.upstreamId, createdAt: binding.createdAt, created: created === 1 }
  }

  async rebind (pool: string, keyId: string, expected: string, next: string): Promise<RebindResult> {
    const tag = this.#keys.bindingTag(pool, keyId)
    const [swapped, current] = await this.#client.stickyRebind(
      this.#keys.bindingKey(tag, keyId), this.#keys.indexKey(tag, expected), this.#keys.indexKey(tag, next),
      expected, next, keyId, this.#keys.channel, invalidationMessage(pool, keyId))
    return { upstreamId: current ?? null, swapped: swapped === 1 }
  }

  async touch (requests: readonly TouchRequest[]): Promise<void> {
    // One script per key: on a Cluster the keys live in different slots, so no multi-key batch is possible;
    // ioredis sends them back to back without waiting for each answer.
    await Promise.all(requests.map((request) => {
      const tag = this.#keys.bindingTag(request.pool, request.keyId)
      return this.#client.stickyTouch(this.#keys.bindingKey(tag, request.keyId), this.#keys.indexKey(tag, request.upstreamId),
        request.upstreamId, Math.max(1, Math.round(request.ttlMs)), request.keyId)
    }))
  }

  async delete (pool: string, keyId: string): Promise<boolean> {
    const tag = this.#keys.bindingTag(pool, keyId)
    const deleted = await this.#client.stickyDelete(this.#keys.bindingKey(tag, keyId), keyId, this.#keys.indexKeyPrefix(tag),
      this.#keys.channel, invalidationMessage(pool, keyId))
    return deleted === 1
  }

  async sessionCounts (pool: string, upstreamIds: readonly string[]): Promise<Record<string, number>> {
    const result: Record<string, number> = {}
    for (const id of upstreamIds) result[id] = 0
    if (upstreamIds.length === 0) return result
    const perShard = await Promise.all(Array.from({ length: this.#keys.shards }, (_, shard) => {
      const tag = this.#keys.shardTag(pool, shard)
      const keys = upstreamIds.map((id) => this.#keys.indexKey(tag, id))
      return this.#client.stickyCount(keys.length, ...keys)
    }))
    for (const counts of perShard) {
      for (let i = 0; i < upstreamIds.length; i++) result[upstreamIds[i]] += Number(counts[i])
    }
    return result
  }

  async sessionsOf (pool: string, upstreamId: string, limit: number): Promise<string[]> {
    const now = Date.now()
    const found: string[] = []
    // Shard by shard, each index read only as far as still needed.
    for (let shard = 0; shard < this.#keys.shards && found.length < limit; shard++) {
      const index = this.#keys.indexKey(this.#keys.shardTag(pool, shard), upstreamId)
      found.push(...await this.#client.zrangebyscore(index, now, '+inf', 'LIMIT', 0, limit - found.length))
    }
    return found
  }

  async upstreamStates (pool: string): Promise<Record<string, UpstreamStatus>> {
    const raw = await this.#client.hgetall(this.#keys.upstreamStatesKey(pool))
    const states: Record<string, UpstreamStatus> = {}
    for (const [id, value] of Object.entries(raw)) states[id] = parseUpstreamStatus(value)
    return states
  }

  async setUpstreamState (pool: string, upstreamId: string, change: UpstreamStateChange): Promise<UpstreamStatus> {
    const down = change.down === undefined ? '' : change.down ? '1' : '0'
    const value = await this.#client.stickySetUpstreamState(this.#keys.upstreamStatesKey(pool), upstreamId, change.admin ?? '', down,
      change.url ?? '', change.weight === undefined ? '' : String(change.weight), FORGET_REMOVED_AFTER_MS)
    return parseUpstreamStatus(value)
  }

  onInvalidate (listener: (change: Invalidation) => void): () => void {
    return this.#invalidations.onInvalidate(listener)
  }

  /**
   * `true` while the invalidation subscription is active. While it is not (never started, connecting, dropped),
   * changes made by other gateways may go unseen.
   */
  get invalidationsLive (): boolean {
    return this.#invalidations.live
  }

  /**
   * Listens for changes of {@link RedisBindingStore.invalidationsLive}: `false` as soon as the subscriber
   * connection drops, `true` once it is subscribed again.
   * @returns a function that unsubscribes
   */
  onInvalidationsLive (listener: (live: boolean) => void): () => void {
    return this.#invalidations.onLive(listener)
  }

  /**
   * Resolves once the invalidation subscription is active (tests, and callers that must not miss a change).
   * @param timeoutMs - how long to wait
   * @throws Error when it is not active within `timeoutMs`, or nobody subscribed yet
   */
  invalidationsReady (timeoutMs = 5000): Promise<void> {
    return this.#invalidations.ready(timeoutMs)
  }

  async close (): Promise<void> {
    this.#salt.close()
    this.#client.off('error', this.#onError)
    this.#invalidations.close()
    if (this.#ownsClient) this.#client.disconnect()
  }

  /**
   * The Redis key of one binding (exposed for tests and tools that inspect the layout).
   * @returns `<prefix>{<pool>:<shard>}:b:<keyId>`
   */
  bindingKey (pool: string, keyId: string): string {
    return this.#keys.bindingKey(this.#keys.bindingTag(pool, keyId), keyId)
  }
}
