/**
 * Building the store's own Redis client from a connection form: a URL, Sentinel addresses or Cluster nodes, each
 * with fail-fast options (no offline queue, one retry, a short command timeout, reconnect with backoff). A caller's
 * ioredis instance is used as it is: its owner chose its options.
 */
import Redis, { Cluster, type ClusterOptions, type RedisOptions } from 'ioredis'

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

/**
 * Creates the client for a connection form the store owns.
 * @param connection - where Redis is
 * @param commandTimeoutMs - per-command timeout of the client
 * @returns a client, not yet connected (lazy connect); `undefined` for a caller's instance
 */
export function createRedisClient (connection: RedisConnection, commandTimeoutMs: number): Redis | Cluster | undefined {
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
