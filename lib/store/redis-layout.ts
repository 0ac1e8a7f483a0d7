/**
 * The Redis store's layout: the name of every key and channel, the values stored under them, and the Lua scripts
 * that read and write them (registered once per client as `sticky*` commands).
 *
 * Key layout (all key strings are built here and nowhere else; docs/redis-layout.md is the operators' copy):
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
 * Why the key names and the scripts share one file: the scripts depend on the layout (they parse the binding and
 * upstream values, `stickyDelete` builds an index key from a prefix, they publish invalidation messages), so both
 * must change together; a key string built in two places is how a layout drifts apart.
 */
import type Redis from 'ioredis'
import type { Cluster } from 'ioredis'
import type { Binding, Invalidation, UpstreamStatus } from './binding-store'

/** Names the keys and the channel of one prefix, and picks the shard (hash tag) of each binding. */
export class RedisKeyLayout {
  /** The invalidation channel, `<prefix>inv`. */
  readonly channel: string
  /** The shared salt's key, `<prefix>salt`. */
  readonly saltKey: string
  /** Hash-tag groups per pool. */
  readonly shards: number
  readonly #prefix: string

  /**
   * @param prefix - prefix of every key and of the channel
   * @param shards - hash-tag groups per pool; every gateway on one prefix must use the same number
   */
  constructor (prefix: string, shards: number) {
    this.#prefix = prefix
    this.shards = shards
    this.channel = prefix + 'inv'
    this.saltKey = prefix + 'salt'
  }

  /**
   * The hash tag of one shard of a pool: every key under it lives in one Cluster slot.
   * @returns `<prefix>{<pool>:<shard>}`
   */
  shardTag (pool: string, shard: number): string {
    return this.#prefix + '{' + pool + ':' + shard + '}'
  }

  /**
   * The hash tag of the shard that holds a key id's binding (and its index entry).
   * @returns `<prefix>{<pool>:<shard>}`
   */
  bindingTag (pool: string, keyId: string): string {
    // Key ids are base64url digests, so their first characters are already uniformly spread.
    const shard = ((keyId.charCodeAt(0) << 6) + keyId.charCodeAt(1)) % this.shards
    return this.shardTag(pool, shard)
  }

  /**
   * The key of one binding.
   * @param tag - its {@link RedisKeyLayout.bindingTag}
   * @returns `<tag>:b:<keyId>`
   */
  bindingKey (tag: string, keyId: string): string {
    return tag + ':b:' + keyId
  }

  /**
   * The start of every index key under one hash tag (`stickyDelete` appends the upstream id in Lua).
   * @returns `<tag>:z:`
   */
  indexKeyPrefix (tag: string): string {
    return tag + ':z:'
  }

  /**
   * The index of one upstream's bindings under one hash tag.
   * @returns `<tag>:z:<upstreamId>`
   */
  indexKey (tag: string, upstreamId: string): string {
    return tag + ':z:' + upstreamId
  }

  /**
   * The hash of a pool's shared upstream states.
   * @returns `<prefix>{<pool>}:u`
   */
  upstreamStatesKey (pool: string): string {
    return this.#prefix + '{' + pool + '}:u'
  }
}

/**
 * The invalidation message of one binding, as published on {@link RedisKeyLayout.channel}.
 * @returns `<pool>\n<keyId>`
 */
export function invalidationMessage (pool: string, keyId: string): string {
  return pool + '\n' + keyId
}

/**
 * Reads an invalidation message.
 * @returns the binding it names, or `null` when the message is not one
 */
export function parseInvalidationMessage (message: string): Invalidation | null {
  const sep = message.indexOf('\n')
  if (sep < 0) return null
  return { pool: message.slice(0, sep), keyId: message.slice(sep + 1) }
}

/**
 * Reads a binding's value, `<upstreamId>|<createdAtMs>`.
 * @returns the binding, or `null` when the value is unreadable
 */
export function parseBinding (value: string): Binding | null {
  const sep = value.indexOf('|')
  if (sep <= 0) return null
  const createdAt = Number(value.slice(sep + 1))
  if (!Number.isFinite(createdAt)) return null
  return { upstreamId: value.slice(0, sep), createdAt }
}

/**
 * Reads an upstream's shared state, `<admin>|<down 0/1>|<changedAtMs>|<url>|<weight>` (unknown parts read as the
 * defaults: active, up, changed at 0, no url or weight).
 * @returns the state
 */
export function parseUpstreamStatus (value: string): UpstreamStatus {
  const [admin, down, changedAt, url, weight] = value.split('|')
  return {
    admin: admin === 'draining' || admin === 'removed' ? admin : 'active',
    down: down === '1',
    changedAt: Number(changedAt) || 0,
    ...(url === undefined || url === '' ? {} : { url }),
    ...(weight === undefined || weight === '' || !(Number(weight) > 0) ? {} : { weight: Number(weight) })
  }
}

// Redis 7 replicates scripts by effects, so TIME is allowed and gives every gateway one clock.
const NOW_LUA = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`

// A new binding is the one write every new session makes, so it runs 3 commands server-side (this script, SET,
// ZADD): no TIME (the gateway's clock stamps the value and the index score: NTP-synced gateways differ by far less
// than the probation hold), no GET (SET NX GET answers the earlier winner, Redis >= 7.0), and the index trimmed
// only when the caller asks (1 bind in TRIM_EVERY_BINDS; counts trim before they count, so they stay exact).
// KEYS[1] binding, KEYS[2] index of ARGV[1]; ARGV: upstreamId, ttlMs, keyId, countedMs (<= ttlMs), nowMs, trim (0|1)
// → { created (0|1), '<upstreamId>|<createdAt>' }
const BIND_IF_ABSENT_LUA = `local value = ARGV[1] .. '|' .. ARGV[5]
local current = redis.call('SET', KEYS[1], value, 'NX', 'PX', ARGV[2], 'GET')
if current then return { 0, current } end                    -- an earlier caller won: report its binding
local now = tonumber(ARGV[5])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[3]) -- counted for countedMs only (probation), unless touched
if ARGV[6] == '1' then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 60000)  -- drop long-expired members (a minute's margin for clocks)
end
return { 1, value }`

/** One new binding in this many also trims its upstream's index of expired members (the others leave it be). */
export const TRIM_EVERY_BINDS = 64

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
// weight ('' = keep), forgetAfterMs → '<admin>|<down>|<changedAt>|<url>|<weight>' after the change. Upstreams added at
// run time (they carry a url) and removed more than forgetAfterMs ago are dropped from the hash as it changes:
// discovery adds and removes one per address a deployment ever had, and every gateway reads the hash each second.
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
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local removedAt = string.match(all[i + 1], '^removed|[^|]*|(%d+)|[^|]+')    -- removed, and added at run time (a url)
  if removedAt and all[i] ~= ARGV[1] and tonumber(removedAt) < now - tonumber(ARGV[6]) then
    redis.call('HDEL', KEYS[1], all[i])
  end
end
return value`

// KEYS: the indexes of one shard → live members of each
const COUNT_LUA = `${NOW_LUA}
local counts = {}
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  counts[i] = redis.call('ZCARD', key)
end
return counts`

/** What the binding scripts answer: a 0/1 flag, then a value when there is one. */
export type ScriptResult = [number, string?]

/** The scripts as client commands; keys come first, in the order of each script's KEYS comment, then ARGV. */
export interface StickyCommands {
  stickyBindIfAbsent (binding: string, index: string, upstreamId: string, ttlMs: number, keyId: string, countedMs: number, nowMs: number, trim: 0 | 1): Promise<ScriptResult>
  stickyRebind (binding: string, fromIndex: string, toIndex: string, expected: string, next: string, keyId: string, channel: string, message: string): Promise<ScriptResult>
  stickyTouch (binding: string, index: string, upstreamId: string, ttlMs: number, keyId: string): Promise<number>
  stickyDelete (binding: string, keyId: string, indexPrefix: string, channel: string, message: string): Promise<number>
  stickyCount (numberOfKeys: number, ...indexes: string[]): Promise<number[]>
  stickySetUpstreamState (states: string, upstreamId: string, admin: string, down: string, url: string, weight: string, forgetAfterMs: number): Promise<string>
}

/** A client with the {@link StickyCommands} defined. */
export type StickyClient = (Redis | Cluster) & StickyCommands

/**
 * Defines the {@link StickyCommands} on a client, once (a caller's client may be shared by several stores).
 * @returns the same client, typed with the commands
 */
export function defineStickyCommands (client: Redis | Cluster): StickyClient {
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
