/**
 * Redis (or Redis Cluster) binding store, shared by every gateway on the same Redis and prefix.
 *
 * Key layout (all key strings are built here and nowhere else):
 * - binding  `<prefix>{<pool>:<shard>}:b:<keyId>` → `<upstreamId>|<createdAtMs>`, PX = remaining TTL
 * - index    `<prefix>{<pool>:<shard>}:z:<upstreamId>` ZSET keyId → until when it counts, ms: its expiry, or for a
 *   binding on probation the end of its probation hold until it is touched (exact live counts, lazily trimmed)
 * - upstreams `<prefix>{<pool>}:u` HASH upstreamId → `<admin>|<down 0/1>|<changedAtMs>|<url>|<weight>` (shared
 *   state; url and weight only for upstreams added at run time)
 * - salt     `<prefix>salt` (SET NX once; every gateway derives the same key ids)
 * - channel  `<prefix>inv` invalidations, message `<pool>\n<keyId>`
 * A binding and its index entry share one hash tag, so each script touches a single Cluster slot, while
 * the shard number spreads one pool's bindings over the cluster.
 *
 * Invalidations travel over a subscriber connection of their own. On a Cluster it is a plain connection to one
 * node (classic PUBLISH reaches every node through the cluster bus), managed here rather than by ioredis' cluster
 * subscriber, so that a dropped subscription is always seen: {@link RedisBindingStore.invalidationsLive} turns
 * false at once, and a near cache stops trusting itself until it is back.
 *
 * Why one file of ~650 lines: the key layout above, the Lua scripts that depend on it and the class that builds
 * the keys must change together (a key string built in two places is how a layout drifts apart). Not yet moved
 * out, though they could be: the Lua sources (~100 lines, to a `redis-scripts.ts` beside this one) and
 * `InvalidationSubscriber` (~90 lines, its own job). Planned with the layout change the shard function needs.
 */
import { randomBytes } from 'node:crypto'
import Redis, { Cluster, type ClusterOptions, type RedisOptions } from 'ioredis'
import type {
  Binding, BindResult, BindingStore, Invalidation, RebindResult, TouchRequest, UpstreamStateChange, UpstreamStatus
} from './binding-store'
import type { CacheableBindingStore, ExpiringBinding } from './near-cache'

/** Default key prefix. */
export const DEFAULT_REDIS_PREFIX = 'sticky:'
/** Default number of shards per pool (hash-tag groups). */
export const DEFAULT_REDIS_SHARDS = 16
/** How often the shared salt is checked (and written back if Redis lost it). */
const SALT_CHECK_INTERVAL_MS = 10_000
/** Longest wait for a first connection in `init()` (the client keeps connecting afterwards). */
const INIT_CONNECT_TIMEOUT_MS = 2000
/** Default per-command timeout; a gateway must not wait on a slow Redis for long. */
export const DEFAULT_REDIS_COMMAND_TIMEOUT_MS = 250

/** A Redis address. */
export interface RedisAddress {
  readonly host: string
  readonly port: number
}

/** Credentials and transport shared by the connection forms the store creates itself. */
interface RedisAuthOptions {
  /** ACL user name. */
  readonly username?: string
  /** Password of the Redis servers. */
  readonly password?: string
  /** Connect with TLS (certificates verified). @defaultValue false */
  readonly tls?: boolean
}

/** Redis behind Sentinel: the store asks the sentinels for the master of `name` and follows its failovers. */
export interface RedisSentinelConnection extends RedisAuthOptions {
  /** Some or all of the sentinels (ioredis discovers the rest). */
  readonly sentinels: readonly RedisAddress[]
  /** The master group's name, as in `sentinel monitor <name> ...`. */
  readonly name: string
  /** Password of the sentinels themselves, when they require one. */
  readonly sentinelPassword?: string
  /** ACL user name on the sentinels. */
  readonly sentinelUsername?: string
  /** Database number. @defaultValue 0 */
  readonly db?: number
}

/** Redis Cluster: some of its nodes (the client discovers the others). */
export interface RedisClusterConnection extends RedisAuthOptions {
  /** Startup nodes. */
  readonly cluster: readonly RedisAddress[]
}

/**
 * Where the store's Redis is: a `redis://`/`rediss://` URL, sentinel or cluster addresses (the store creates and owns
 * a fail-fast client for these), or an ioredis `Redis`/`Cluster` instance (the caller owns it and chose its options).
 */
export type RedisConnection = string | Redis | Cluster | RedisSentinelConnection | RedisClusterConnection

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

// Redis 7 replicates scripts by effects, so TIME is allowed and gives every gateway one clock.
const NOW_LUA = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`

// KEYS[1] binding, KEYS[2] index of ARGV[1]; ARGV: upstreamId, ttlMs, keyId, countedMs (<= ttlMs)
// → { created (0|1), '<upstreamId>|<createdAt>' }
const BIND_IF_ABSENT_LUA = `${NOW_LUA}
local current = redis.call('GET', KEYS[1])
if current then return { 0, current } end                    -- an earlier caller won: report its binding
local value = ARGV[1] .. '|' .. string.format('%d', now)
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[3]) -- counted for countedMs only (probation), unless touched
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)          -- trim expired members so counts stay exact
return { 1, value }`

// KEYS[1] binding, KEYS[2] index of expected, KEYS[3] index of next; ARGV: expected, next, keyId, channel, message
// → { swapped (0|1), current upstream or nothing }
const REBIND_LUA = `${NOW_LUA}
local current = redis.call('GET', KEYS[1])
if not current then return { 0 } end
local sep = string.find(current, '|', 1, true)
local bound = string.sub(current, 1, sep - 1)
if bound ~= ARGV[1] then return { 0, bound } end             -- someone moved it first: report where
if ARGV[1] ~= ARGV[2] then
  local ttl = redis.call('PTTL', KEYS[1])
  redis.call('SET', KEYS[1], ARGV[2] .. string.sub(current, sep), 'KEEPTTL')  -- creation time survives the move
  redis.call('ZREM', KEYS[2], ARGV[3])
  redis.call('ZADD', KEYS[3], now + ttl, ARGV[3])
  redis.call('PUBLISH', ARGV[4], ARGV[5])
end
return { 1, ARGV[2] }`

// KEYS[1] binding, KEYS[2] index of ARGV[1]; ARGV: upstreamId, ttlMs, keyId → 1 when extended
const TOUCH_LUA = `${NOW_LUA}
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
if string.sub(current, 1, #ARGV[1] + 1) ~= ARGV[1] .. '|' then return 0 end  -- moved meanwhile: not ours to extend
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[3])  -- not XX: a lapsed probation entry counts again
return 1`

// KEYS[1] binding; ARGV: keyId, index key prefix (same hash tag), channel, message → 1 when deleted
const DELETE_LUA = `local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local bound = string.sub(current, 1, string.find(current, '|', 1, true) - 1)
redis.call('DEL', KEYS[1])
redis.call('ZREM', ARGV[2] .. bound, ARGV[1])                -- same slot as KEYS[1] through the hash tag
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1`

// KEYS[1] upstream state hash; ARGV: upstreamId, admin ('' = keep), down ('' | '0' | '1'), url ('' = keep),
// weight ('' = keep) → '<admin>|<down>|<changedAt>|<url>|<weight>' after the change
const SET_UPSTREAM_STATE_LUA = `${NOW_LUA}
local admin, down, at, url, weight = 'active', '0', '0', '', ''
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  admin, down, at, url, weight = string.match(current .. '||', '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)')
end
local nextAdmin = ARGV[2] ~= '' and ARGV[2] or admin
local nextDown = ARGV[3] ~= '' and ARGV[3] or down
local nextUrl = ARGV[4] ~= '' and ARGV[4] or url
local nextWeight = ARGV[5] ~= '' and ARGV[5] or weight
if current and nextAdmin == admin and nextDown == down and nextUrl == url and nextWeight == weight then
  return current                                              -- no change: keep changedAt
end
local value = nextAdmin .. '|' .. nextDown .. '|' .. string.format('%d', now) .. '|' .. nextUrl .. '|' .. nextWeight
redis.call('HSET', KEYS[1], ARGV[1], value)
return value`

// KEYS: the indexes of one shard → live members of each
const COUNT_LUA = `${NOW_LUA}
local counts = {}
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  counts[i] = redis.call('ZCARD', key)
end
return counts`

type ScriptResult = [number, string?]

interface StickyCommands {
  stickyBindIfAbsent (binding: string, index: string, upstreamId: string, ttlMs: number, keyId: string, countedMs: number): Promise<ScriptResult>
  stickyRebind (binding: string, fromIndex: string, toIndex: string, expected: string, next: string, keyId: string, channel: string, message: string): Promise<ScriptResult>
  stickyTouch (binding: string, index: string, upstreamId: string, ttlMs: number, keyId: string): Promise<number>
  stickyDelete (binding: string, keyId: string, indexPrefix: string, channel: string, message: string): Promise<number>
  stickyCount (numberOfKeys: number, ...indexes: string[]): Promise<number[]>
  stickySetUpstreamState (states: string, upstreamId: string, admin: string, down: string, url: string, weight: string): Promise<string>
}

type StickyClient = (Redis | Cluster) & StickyCommands

// Fail fast: a request must never queue behind a Redis that is not there. No auto-pipelining: ioredis sends one
// auto-pipeline at a time and starts a command's timeout only when its batch is sent, so behind a stalled batch a
// request could wait twice the command timeout.
function failFast (commandTimeoutMs: number): RedisOptions {
  return {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: commandTimeoutMs,
    retryStrategy: (attempt) => Math.min(50 * 2 ** attempt, 2000)
  }
}

function authOptions (connection: RedisAuthOptions): RedisOptions {
  return {
    ...(connection.username === undefined ? {} : { username: connection.username }),
    ...(connection.password === undefined ? {} : { password: connection.password }),
    ...(connection.tls === true ? { tls: {} } : {})
  }
}

/** Creates the client for a connection form the store owns; `undefined` for a caller's instance. */
function createClient (connection: RedisConnection, commandTimeoutMs: number): Redis | Cluster | undefined {
  if (typeof connection === 'string') return new Redis(connection, failFast(commandTimeoutMs))
  if (connection instanceof Redis || connection instanceof Cluster) return undefined
  if ('sentinels' in connection) {
    return new Redis({
      ...failFast(commandTimeoutMs),
      ...authOptions(connection),
      sentinels: connection.sentinels.map(({ host, port }) => ({ host, port })),
      name: connection.name,
      db: connection.db ?? 0,
      ...(connection.sentinelPassword === undefined ? {} : { sentinelPassword: connection.sentinelPassword }),
      ...(connection.sentinelUsername === undefined ? {} : { sentinelUsername: connection.sentinelUsername }),
      ...(connection.tls === true ? { enableTLSForSentinelMode: true, sentinelTLS: {} } : {}),
      sentinelCommandTimeout: commandTimeoutMs * 4,
      // Sentinels announce a failover at once (+switch-master): move to the new master without waiting for the old
      // connection to fail.
      failoverDetector: true
    })
  }
  const { lazyConnect, enableOfflineQueue, retryStrategy, ...nodeOptions } = failFast(commandTimeoutMs)
  const options: ClusterOptions = {
    lazyConnect,
    enableOfflineQueue,
    clusterRetryStrategy: retryStrategy,
    redisOptions: { ...nodeOptions, ...authOptions(connection) },
    // A moved slot or a failover is retried within the command timeout, not queued for long.
    retryDelayOnFailover: 50,
    retryDelayOnClusterDown: 50,
    retryDelayOnTryAgain: 50
  }
  return new Cluster(connection.cluster.map(({ host, port }) => ({ host, port })), options)
}

function defineCommands (client: Redis | Cluster): StickyClient {
  const commands = client as unknown as Record<string, unknown>
  if (typeof commands.stickyBindIfAbsent !== 'function') {
    client.defineCommand('stickyBindIfAbsent', { numberOfKeys: 2, lua: BIND_IF_ABSENT_LUA })
    client.defineCommand('stickyRebind', { numberOfKeys: 3, lua: REBIND_LUA })
    client.defineCommand('stickyTouch', { numberOfKeys: 2, lua: TOUCH_LUA })
    client.defineCommand('stickyDelete', { numberOfKeys: 1, lua: DELETE_LUA })
    client.defineCommand('stickyCount', { lua: COUNT_LUA })
    client.defineCommand('stickySetUpstreamState', { numberOfKeys: 1, lua: SET_UPSTREAM_STATE_LUA })
  }
  return client as StickyClient
}

function parseUpstreamStatus (value: string): UpstreamStatus {
  const [admin, down, changedAt, url, weight] = value.split('|')
  return {
    admin: admin === 'draining' || admin === 'removed' ? admin : 'active',
    down: down === '1',
    changedAt: Number(changedAt) || 0,
    ...(url === undefined || url === '' ? {} : { url }),
    ...(weight === undefined || weight === '' || !(Number(weight) > 0) ? {} : { weight: Number(weight) })
  }
}

function parseBinding (value: string): Binding | null {
  const sep = value.indexOf('|')
  if (sep <= 0) return null
  const createdAt = Number(value.slice(sep + 1))
  if (!Number.isFinite(createdAt)) return null
  return { upstreamId: value.slice(0, sep), createdAt }
}

/**
 * A {@link BindingStore} in Redis, Redis Cluster or Redis behind Sentinel, shared by every gateway using the same
 * prefix. It also offers what a {@link NearCacheStore} in front of it needs (reads with the remaining TTL, and the
 * state of the invalidation subscription).
 */
export class RedisBindingStore implements BindingStore, CacheableBindingStore {
  readonly #client: StickyClient
  readonly #ownsClient: boolean
  readonly #prefix: string
  readonly #shards: number
  readonly #channel: string
  readonly #listeners = new Set<(change: Invalidation) => void>()
  readonly #liveListeners = new Set<(live: boolean) => void>()
  #subscriber: InvalidationSubscriber | undefined
  #closed = false
  #salt: string | undefined
  #initialized: Promise<void> | undefined
  readonly #saltListeners = new Set<(salt: string) => void>()
  readonly #onReady = (): void => { void this.#reassertSalt() }
  readonly #onError = (): void => {}
  #saltTimer: NodeJS.Timeout | undefined

  /** @param options - see {@link RedisBindingStoreOptions} */
  constructor (options: RedisBindingStoreOptions) {
    this.#prefix = options.prefix ?? DEFAULT_REDIS_PREFIX
    this.#shards = options.shards ?? DEFAULT_REDIS_SHARDS
    this.#channel = this.#prefix + 'inv'
    const created = createClient(options.redis, options.commandTimeoutMs ?? DEFAULT_REDIS_COMMAND_TIMEOUT_MS)
    this.#client = defineCommands(created ?? options.redis as Redis | Cluster)
    this.#ownsClient = created !== undefined
    // An 'error' listener keeps ioredis from printing every reconnect failure of our own client; failed commands
    // still reject. A caller's client keeps whatever error handling its owner gave it.
    if (this.#ownsClient) this.#client.on('error', this.#onError)
    // Redis restarted empty, or flushed: put our salt back, or adopt the one another gateway wrote first.
    this.#client.on('ready', this.#onReady)
  }

  /** Connects (when the store owns the client) and loads the shared salt. */
  init (): Promise<void> {
    this.#initialized ??= this.#connect()
    return this.#initialized
  }

  async #connect (): Promise<void> {
    this.#saltTimer ??= setInterval(() => { void this.#reassertSalt() }, SALT_CHECK_INTERVAL_MS)
    this.#saltTimer.unref()
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
    this.#saltListeners.add(listener)
    return () => { this.#saltListeners.delete(listener) }
  }

  async #reassertSalt (): Promise<void> {
    const salt = this.#salt
    if (salt === undefined) return
    try {
      const current = await this.#client.set(this.#prefix + 'salt', salt, 'NX', 'GET') as string | null
      if (current !== null && current !== salt) {
        this.#salt = current
        for (const listener of this.#saltListeners) listener(current)
      }
    } catch {
      // Unreachable now; the next 'ready' or check tries again.
    }
  }

  async sharedSalt (): Promise<string> {
    if (this.#salt !== undefined) return this.#salt
    const candidate = randomBytes(24).toString('base64url')
    // SET NX GET: one round trip; the first gateway's salt wins and every later one reads it back.
    const previous = await this.#client.set(this.#prefix + 'salt', candidate, 'NX', 'GET') as string | null
    this.#salt = previous ?? candidate
    return this.#salt
  }

  async get (pool: string, keyId: string): Promise<Binding | null> {
    const value = await this.#client.get(this.bindingKey(pool, keyId))
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
    const tag = this.#tag(pool, keyId)
    const ttl = Math.max(1, Math.round(ttlMs))
    const counted = Number.isFinite(countedMs) ? Math.min(ttl, Math.max(0, Math.round(countedMs))) : ttl
    const [created, value] = await this.#client.stickyBindIfAbsent(
      tag + ':b:' + keyId, tag + ':z:' + upstreamId, upstreamId, ttl, keyId, counted)
    const binding = parseBinding(value ?? '')
    if (binding === null) throw new Error(`fastify-sticky: unreadable binding value in Redis for pool "${pool}"`)
    return { upstreamId: binding.upstreamId, createdAt: binding.createdAt, created: created === 1 }
  }

  async rebind (pool: string, keyId: string, expected: string, next: string): Promise<RebindResult> {
    const tag = this.#tag(pool, keyId)
    const [swapped, current] = await this.#client.stickyRebind(
      tag + ':b:' + keyId, tag + ':z:' + expected, tag + ':z:' + next,
      expected, next, keyId, this.#channel, pool + '\n' + keyId)
    return { upstreamId: current ?? null, swapped: swapped === 1 }
  }

  async touch (requests: readonly TouchRequest[]): Promise<void> {
    // One script per key: on a Cluster the keys live in different slots, so no multi-key batch is possible;
    // ioredis sends them back to back without waiting for each answer.
    await Promise.all(requests.map((request) => {
      const tag = this.#tag(request.pool, request.keyId)
      return this.#client.stickyTouch(tag + ':b:' + request.keyId, tag + ':z:' + request.upstreamId,
        request.upstreamId, Math.max(1, Math.round(request.ttlMs)), request.keyId)
    }))
  }

  async delete (pool: string, keyId: string): Promise<boolean> {
    const tag = this.#tag(pool, keyId)
    const deleted = await this.#client.stickyDelete(tag + ':b:' + keyId, keyId, tag + ':z:', this.#channel, pool + '\n' + keyId)
    return deleted === 1
  }

  async sessionCounts (pool: string, upstreamIds: readonly string[]): Promise<Record<string, number>> {
    const result: Record<string, number> = {}
    for (const id of upstreamIds) result[id] = 0
    if (upstreamIds.length === 0) return result
    const perShard = await Promise.all(Array.from({ length: this.#shards }, (_, shard) => {
      const tag = this.#prefix + '{' + pool + ':' + shard + '}'
      const keys = upstreamIds.map((id) => tag + ':z:' + id)
      return this.#client.stickyCount(keys.length, ...keys)
    }))
    for (const counts of perShard) {
      for (let i = 0; i < upstreamIds.length; i++) result[upstreamIds[i]] += Number(counts[i])
    }
    return result
  }

  async upstreamStates (pool: string): Promise<Record<string, UpstreamStatus>> {
    const raw = await this.#client.hgetall(this.#prefix + '{' + pool + '}:u')
    const states: Record<string, UpstreamStatus> = {}
    for (const [id, value] of Object.entries(raw)) states[id] = parseUpstreamStatus(value)
    return states
  }

  async setUpstreamState (pool: string, upstreamId: string, change: UpstreamStateChange): Promise<UpstreamStatus> {
    const down = change.down === undefined ? '' : change.down ? '1' : '0'
    const value = await this.#client.stickySetUpstreamState(this.#prefix + '{' + pool + '}:u', upstreamId, change.admin ?? '', down,
      change.url ?? '', change.weight === undefined ? '' : String(change.weight))
    return parseUpstreamStatus(value)
  }

  onInvalidate (listener: (change: Invalidation) => void): () => void {
    this.#listeners.add(listener)
    if (this.#subscriber === undefined && !this.#closed) {
      this.#subscriber = new InvalidationSubscriber(this.#client, this.#channel, {
        message: (message) => {
          const sep = message.indexOf('\n')
          if (sep < 0) return
          const change = { pool: message.slice(0, sep), keyId: message.slice(sep + 1) }
          for (const each of this.#listeners) each(change)
        },
        live: (live) => {
          for (const each of this.#liveListeners) each(live)
        }
      })
    }
    return () => { this.#listeners.delete(listener) }
  }

  /**
   * `true` while the invalidation subscription is active. While it is not (never started, connecting, dropped),
   * changes made by other gateways may go unseen.
   */
  get invalidationsLive (): boolean {
    return this.#subscriber?.live ?? false
  }

  /**
   * Listens for changes of {@link RedisBindingStore.invalidationsLive}: `false` as soon as the subscriber
   * connection drops, `true` once it is subscribed again.
   * @returns a function that unsubscribes
   */
  onInvalidationsLive (listener: (live: boolean) => void): () => void {
    this.#liveListeners.add(listener)
    return () => { this.#liveListeners.delete(listener) }
  }

  /**
   * Resolves once the invalidation subscription is active (tests, and callers that must not miss a change).
   * @param timeoutMs - how long to wait
   * @throws Error when it is not active within `timeoutMs`, or nobody subscribed yet
   */
  async invalidationsReady (timeoutMs = 5000): Promise<void> {
    if (this.#subscriber === undefined) throw new Error('fastify-sticky: no invalidation listener registered')
    if (this.invalidationsLive) return
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        stop()
        reject(new Error(`fastify-sticky: the invalidation subscription is not active after ${timeoutMs} ms`))
      }, timeoutMs)
      const stop = this.onInvalidationsLive((live) => {
        if (!live) return
        clearTimeout(timer)
        stop()
        resolve()
      })
    })
  }

  async close (): Promise<void> {
    this.#closed = true
    clearInterval(this.#saltTimer)
    this.#client.off('ready', this.#onReady)
    this.#client.off('error', this.#onError)
    this.#saltListeners.clear()
    this.#listeners.clear()
    this.#liveListeners.clear()
    const subscriber = this.#subscriber
    this.#subscriber = undefined
    subscriber?.close()
    if (this.#ownsClient) this.#client.disconnect()
  }

  /**
   * The Redis key of one binding (exposed for tests and tools that inspect the layout).
   * @returns `<prefix>{<pool>:<shard>}:b:<keyId>`
   */
  bindingKey (pool: string, keyId: string): string {
    return this.#tag(pool, keyId) + ':b:' + keyId
  }

  // Key ids are base64url digests, so their first characters are already uniformly spread.
  #tag (pool: string, keyId: string): string {
    const shard = ((keyId.charCodeAt(0) << 6) + keyId.charCodeAt(1)) % this.#shards
    return this.#prefix + '{' + pool + ':' + shard + '}'
  }
}

/** How many times a Cluster subscriber retries its node before moving to another one. */
const SUBSCRIBER_NODE_ATTEMPTS = 3

/**
 * The invalidation subscription: one connection in subscriber mode, re-subscribed after every reconnect, whose
 * state (`live`) is reported as it changes. A plain or Sentinel client gets a duplicate of itself (which follows
 * failovers like the original); a Cluster gets a plain connection to one of its nodes, moved to another node when
 * that one stays unreachable.
 */
class InvalidationSubscriber {
  #live = false
  #closed = false
  #connection: Redis | undefined
  #nodeCursor = 0
  readonly #client: Redis | Cluster
  readonly #channel: string
  readonly #on: { message: (message: string) => void, live: (live: boolean) => void }
  #waitForCluster: (() => void) | undefined

  constructor (client: Redis | Cluster, channel: string, on: { message: (message: string) => void, live: (live: boolean) => void }) {
    this.#client = client
    this.#channel = channel
    this.#on = on
    this.#open()
  }

  get live (): boolean {
    return this.#live
  }

  close (): void {
    this.#closed = true
    if (this.#waitForCluster !== undefined) this.#client.off('ready', this.#waitForCluster)
    this.#connection?.disconnect()
    this.#connection = undefined
    this.#setLive(false)
  }

  #setLive (live: boolean): void {
    if (this.#live === live) return
    this.#live = live
    this.#on.live(live)
  }

  #open (): void {
    if (this.#closed) return
    // Subscribed connections cannot run other commands, and must not give up while Redis is away: they queue their
    // SUBSCRIBE until connected and reconnect by themselves. Re-subscribing is done here, on every 'ready', so
    // `live` turns true only once Redis has confirmed the subscription.
    const overrides: RedisOptions = {
      lazyConnect: false,
      enableOfflineQueue: true,
      autoResubscribe: false,
      maxRetriesPerRequest: null,
      commandTimeout: 5000
    }
    let connection: Redis
    if (this.#client instanceof Cluster) {
      const nodes = this.#client.nodes('all')
      if (nodes.length === 0) {
        // Not connected yet: the node list comes with the cluster's first 'ready'.
        this.#waitForCluster = () => {
          this.#waitForCluster = undefined
          this.#open()
        }
        this.#client.once('ready', this.#waitForCluster)
        return
      }
      const node = nodes[this.#nodeCursor++ % nodes.length].options
      const { redisOptions } = this.#client.options
      connection = new Redis({
        ...redisOptions,
        ...overrides,
        host: node.host,
        port: node.port,
        // A node that stays away is left for another one (each node relays every classic PUBLISH).
        retryStrategy: (attempt) => attempt > SUBSCRIBER_NODE_ATTEMPTS ? null : 50 * 2 ** attempt
      })
      connection.once('end', () => {
        if (this.#connection === connection) this.#open()
      })
    } else {
      connection = this.#client.duplicate(overrides)
    }
    this.#connection = connection
    connection.on('error', () => {})
    connection.on('close', () => { if (this.#connection === connection) this.#setLive(false) })
    connection.on('ready', () => {
      connection.subscribe(this.#channel).then(() => {
        if (this.#connection === connection && connection.status === 'ready') this.#setLive(true)
      }, () => {
        // The connection dropped meanwhile (its next 'ready' subscribes again), or Redis refused: start over.
        if (this.#connection === connection && connection.status === 'ready') connection.disconnect(true)
      })
    })
    connection.on('message', (channel: string, message: string) => {
      if (channel === this.#channel) this.#on.message(message)
    })
  }
}
