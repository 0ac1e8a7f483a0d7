/**
 * Redis (or Redis Cluster) binding store, shared by every gateway on the same Redis and prefix.
 *
 * Key layout (all key strings are built here and nowhere else):
 * - binding  `<prefix>{<pool>:<shard>}:b:<keyId>` → `<upstreamId>|<createdAtMs>`, PX = remaining TTL
 * - index    `<prefix>{<pool>:<shard>}:z:<upstreamId>` ZSET keyId → expiry ms (exact live counts, lazily trimmed)
 * - upstreams `<prefix>{<pool>}:u` HASH upstreamId → `<admin>|<down 0/1>|<changedAtMs>` (shared state)
 * - salt     `<prefix>salt` (SET NX once; every gateway derives the same key ids)
 * - channel  `<prefix>inv` invalidations, message `<pool>\n<keyId>`
 * A binding and its index entry share one hash tag, so each script touches a single Cluster slot, while
 * the shard number spreads one pool's bindings over the cluster.
 */
import { randomBytes } from 'node:crypto'
import Redis, { Cluster } from 'ioredis'
import type {
  Binding, BindResult, BindingStore, Invalidation, RebindResult, TouchRequest, UpstreamStateChange, UpstreamStatus
} from './binding-store'

/** Default key prefix. */
export const DEFAULT_REDIS_PREFIX = 'sticky:'
/** Default number of shards per pool (hash-tag groups). */
export const DEFAULT_REDIS_SHARDS = 16
/** How often the shared salt is checked (and written back if Redis lost it). */
const SALT_CHECK_INTERVAL_MS = 10_000
/** Default per-command timeout; a gateway must not wait on a slow Redis for long. */
export const DEFAULT_REDIS_COMMAND_TIMEOUT_MS = 250

/** Options of {@link RedisBindingStore}. */
export interface RedisBindingStoreOptions {
  /** A `redis://` URL (the store creates and owns the client) or an ioredis `Redis`/`Cluster` instance (the caller owns it). */
  redis: string | Redis | Cluster
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

// KEYS[1] binding, KEYS[2] index of ARGV[1]; ARGV: upstreamId, ttlMs, keyId
// → { created (0|1), '<upstreamId>|<createdAt>' }
const BIND_IF_ABSENT_LUA = `${NOW_LUA}
local current = redis.call('GET', KEYS[1])
if current then return { 0, current } end                    -- an earlier caller won: report its binding
local value = ARGV[1] .. '|' .. string.format('%d', now)
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[3])
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
redis.call('ZADD', KEYS[2], 'XX', now + tonumber(ARGV[2]), ARGV[3])
return 1`

// KEYS[1] binding; ARGV: keyId, index key prefix (same hash tag), channel, message → 1 when deleted
const DELETE_LUA = `local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local bound = string.sub(current, 1, string.find(current, '|', 1, true) - 1)
redis.call('DEL', KEYS[1])
redis.call('ZREM', ARGV[2] .. bound, ARGV[1])                -- same slot as KEYS[1] through the hash tag
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1`

// KEYS[1] upstream state hash; ARGV: upstreamId, admin ('' = keep), down ('' | '0' | '1')
// → '<admin>|<down>|<changedAt>' after the change
const SET_UPSTREAM_STATE_LUA = `${NOW_LUA}
local admin, down, at = 'active', '0', '0'
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  admin, down, at = string.match(current, '^([^|]*)|([^|]*)|([^|]*)$')
end
local nextAdmin = ARGV[2] ~= '' and ARGV[2] or admin
local nextDown = ARGV[3] ~= '' and ARGV[3] or down
if current and nextAdmin == admin and nextDown == down then return current end  -- no change: keep changedAt
local value = nextAdmin .. '|' .. nextDown .. '|' .. string.format('%d', now)
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
  stickyBindIfAbsent (binding: string, index: string, upstreamId: string, ttlMs: number, keyId: string): Promise<ScriptResult>
  stickyRebind (binding: string, fromIndex: string, toIndex: string, expected: string, next: string, keyId: string, channel: string, message: string): Promise<ScriptResult>
  stickyTouch (binding: string, index: string, upstreamId: string, ttlMs: number, keyId: string): Promise<number>
  stickyDelete (binding: string, keyId: string, indexPrefix: string, channel: string, message: string): Promise<number>
  stickyCount (numberOfKeys: number, ...indexes: string[]): Promise<number[]>
  stickySetUpstreamState (states: string, upstreamId: string, admin: string, down: string): Promise<string>
}

type StickyClient = (Redis | Cluster) & StickyCommands

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
  const [admin, down, changedAt] = value.split('|')
  return { admin: admin === 'draining' ? 'draining' : 'active', down: down === '1', changedAt: Number(changedAt) || 0 }
}

function parseBinding (value: string): Binding | null {
  const sep = value.indexOf('|')
  if (sep <= 0) return null
  const createdAt = Number(value.slice(sep + 1))
  if (!Number.isFinite(createdAt)) return null
  return { upstreamId: value.slice(0, sep), createdAt }
}

/** A {@link BindingStore} in Redis or Redis Cluster, shared by every gateway using the same prefix. */
export class RedisBindingStore implements BindingStore {
  readonly #client: StickyClient
  readonly #ownsClient: boolean
  readonly #prefix: string
  readonly #shards: number
  readonly #channel: string
  readonly #listeners = new Set<(change: Invalidation) => void>()
  #subscriber: Redis | Cluster | undefined
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
    if (typeof options.redis === 'string') {
      this.#client = defineCommands(new Redis(options.redis, {
        lazyConnect: true,
        // Fail fast: a request must never queue behind a Redis that is not there.
        enableOfflineQueue: false,
        maxRetriesPerRequest: 1,
        commandTimeout: options.commandTimeoutMs ?? DEFAULT_REDIS_COMMAND_TIMEOUT_MS,
        retryStrategy: (attempt) => Math.min(50 * 2 ** attempt, 2000)
      }))
      this.#ownsClient = true
    } else {
      this.#client = defineCommands(options.redis)
      this.#ownsClient = false
    }
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
    if (this.#ownsClient && this.#client.status === 'wait') await this.#client.connect()
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

  async bindIfAbsent (pool: string, keyId: string, upstreamId: string, ttlMs: number): Promise<BindResult> {
    const tag = this.#tag(pool, keyId)
    const [created, value] = await this.#client.stickyBindIfAbsent(
      tag + ':b:' + keyId, tag + ':z:' + upstreamId, upstreamId, Math.max(1, Math.round(ttlMs)), keyId)
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
    const value = await this.#client.stickySetUpstreamState(this.#prefix + '{' + pool + '}:u', upstreamId, change.admin ?? '', down)
    return parseUpstreamStatus(value)
  }

  onInvalidate (listener: (change: Invalidation) => void): () => void {
    this.#listeners.add(listener)
    if (this.#subscriber === undefined) {
      // Subscribed connections cannot run other commands: invalidations get a connection of their own.
      // The subscriber may queue its SUBSCRIBE until connected (unlike request-path commands), and
      // ioredis re-subscribes by itself after a reconnect.
      const overrides = { enableOfflineQueue: true, lazyConnect: false }
      const subscriber = this.#client instanceof Cluster
        ? this.#client.duplicate(undefined, overrides)
        : (this.#client as Redis).duplicate(overrides)
      this.#subscriber = subscriber
      subscriber.on('error', () => {})
      subscriber.on('message', (channel: string, message: string) => {
        if (channel !== this.#channel) return
        const sep = message.indexOf('\n')
        if (sep < 0) return
        const change = { pool: message.slice(0, sep), keyId: message.slice(sep + 1) }
        for (const each of this.#listeners) each(change)
      })
      subscriber.subscribe(this.#channel).catch(() => {})
    }
    return () => { this.#listeners.delete(listener) }
  }

  /**
   * Resolves once the invalidation subscription is active (tests, and callers that must not miss a change).
   */
  async invalidationsReady (): Promise<void> {
    if (this.#subscriber === undefined) return
    await this.#subscriber.subscribe(this.#channel)
  }

  async close (): Promise<void> {
    clearInterval(this.#saltTimer)
    this.#client.off('ready', this.#onReady)
    this.#client.off('error', this.#onError)
    this.#saltListeners.clear()
    this.#listeners.clear()
    const subscriber = this.#subscriber
    this.#subscriber = undefined
    subscriber?.disconnect()
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
