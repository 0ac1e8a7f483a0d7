/**
 * Redis connection and near-cache options: a URL, Sentinel or Cluster addresses, or the caller's ioredis client.
 */
import type { ResolvedOptions } from './types'
import { DEFAULT_NEAR_CACHE_MAX_ENTRIES, DEFAULT_NEAR_CACHE_TTL_MS } from '../store/near-cache'
import type { RedisConnection } from '../store/redis-store'
import { checkKeys, duration, fail, isRecord } from './checks'

function isRedisClient (value: unknown): boolean {
  return isRecord(value) && typeof value.defineCommand === 'function' && typeof value.duplicate === 'function'
}

const REDIS_EXPECTATION = 'a redis:// or rediss:// URL, { sentinels, name }, { cluster } or an ioredis Redis/Cluster instance'
const SENTINEL_KEYS = ['sentinels', 'name', 'username', 'password', 'sentinelUsername', 'sentinelPassword', 'db', 'tls']
const CLUSTER_KEYS = ['cluster', 'username', 'password', 'tls']

function checkAddresses (path: string, value: unknown): void {
  if (!Array.isArray(value) || value.length === 0) fail(path, 'a non-empty array of { host, port }', value)
  value.forEach((address: unknown, i) => {
    if (!isRecord(address)) fail(`${path}[${i}]`, 'an object { host, port }', address)
    checkKeys(`${path}[${i}]`, address, ['host', 'port'], (p) => fail(p, 'absent (known: host, port)', address[p.slice(p.lastIndexOf('.') + 1)]))
    if (typeof address.host !== 'string' || address.host === '') fail(`${path}[${i}].host`, 'a host name or address', address.host)
    const port = address.port
    if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) fail(`${path}[${i}].port`, 'a port number (1-65535)', port)
  })
}

/**
 * Validates the `redis` option (passwords are never echoed in errors).
 * @returns the connection, or `undefined` when none is given
 */
export function resolveRedis (redis: unknown): RedisConnection | undefined {
  if (redis === undefined) return undefined
  if (typeof redis === 'string') {
    if (!/^rediss?:\/\//.test(redis)) fail('redis', REDIS_EXPECTATION, redis)
    return redis
  }
  if (isRedisClient(redis)) return redis as RedisConnection
  if (!isRecord(redis) || (!('sentinels' in redis) && !('cluster' in redis))) fail('redis', REDIS_EXPECTATION, redis)
  const sentinel = 'sentinels' in redis
  const known = sentinel ? SENTINEL_KEYS : CLUSTER_KEYS
  checkKeys('redis', redis, known, (p) => fail(p, `absent (known: ${known.join(', ')})`, redis[p.slice(6)]))
  checkAddresses(sentinel ? 'redis.sentinels' : 'redis.cluster', sentinel ? redis.sentinels : redis.cluster)
  if (sentinel && (typeof redis.name !== 'string' || redis.name === '')) fail('redis.name', 'the name of the master group the sentinels monitor', redis.name)
  for (const key of ['username', 'password', 'sentinelUsername', 'sentinelPassword']) {
    // A password is never echoed, even a malformed one.
    if (redis[key] !== undefined && typeof redis[key] !== 'string') fail(`redis.${key}`, 'a string', key.endsWith('assword') ? '(hidden)' : redis[key])
  }
  const db = redis.db
  if (db !== undefined && (typeof db !== 'number' || !Number.isInteger(db) || db < 0)) fail('redis.db', 'a database number (integer ≥ 0)', db)
  if (redis.tls !== undefined && typeof redis.tls !== 'boolean') fail('redis.tls', 'a boolean', redis.tls)
  return redis as unknown as RedisConnection
}

/** Validates `nearCache`: on by default with `redis`, refused without it. */
export function resolveNearCache (input: unknown, redis: RedisConnection | undefined): ResolvedOptions['nearCache'] {
  if (input === false) return false
  if (input !== undefined && redis === undefined) {
    fail('nearCache', 'left out without `redis` (to cache your own `store`, wrap it: new NearCacheStore(store))', input)
  }
  if (redis === undefined) return false
  const nearCache = input ?? {}
  if (!isRecord(nearCache)) fail('nearCache', 'false or an object { maxEntries, ttl }', input)
  checkKeys('nearCache', nearCache, ['maxEntries', 'ttl'], (p) => fail(p, 'absent (known: maxEntries, ttl)', nearCache[p.slice(10)]))
  const maxEntries = nearCache.maxEntries ?? DEFAULT_NEAR_CACHE_MAX_ENTRIES
  if (typeof maxEntries !== 'number' || !Number.isSafeInteger(maxEntries) || maxEntries < 1) fail('nearCache.maxEntries', 'a positive integer', maxEntries)
  return Object.freeze({ maxEntries, ttlMs: duration('nearCache.ttl', nearCache.ttl, DEFAULT_NEAR_CACHE_TTL_MS) })
}
