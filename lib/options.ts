/**
 * Plugin and route options: their types, defaults and validation. `resolveOptions` and `resolveRouteConfig`
 * are pure: they never mutate their input, reject unknown keys, and throw errors naming the dotted option path.
 */
import type { FastifyRequest } from 'fastify'
import { resolveKeySources, type ResolvedKeySource, type StickyKeySource } from './affinity/keys'
import {
  resolveAdminOptions, resolveMetricsOptions,
  type ResolvedAdminOptions, type ResolvedMetricsOptions, type StickyAdminOptions, type StickyMetricsOption
} from './admin/admin-options'
import { InvalidOptionError, InvalidRouteConfigError } from './errors'
import { parseDuration, type Duration } from './duration'
import type { BindingStore } from './store/binding-store'
import { DEFAULT_MEMORY_MAX_BINDINGS } from './store/memory-store'
import { DEFAULT_NEAR_CACHE_MAX_ENTRIES, DEFAULT_NEAR_CACHE_TTL_MS } from './store/near-cache'
import { DEFAULT_REDIS_PREFIX, type RedisConnection } from './store/redis-store'

export type { Duration } from './duration'
export type { StickyKeySource, IpKeyOptions } from './affinity/keys'

/** Default idle timeout of a binding (sliding). */
export const DEFAULT_IDLE_TIMEOUT_MS = 30 * 60_000
/** Default maximum lifetime of a binding, however active. */
export const DEFAULT_MAX_LIFETIME_MS = 12 * 3_600_000
/** Default routing cookie name. */
export const DEFAULT_COOKIE_NAME = 'sticky'
/** Default time to establish a connection to an upstream. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000
/** Default time to wait for an upstream's response headers. */
export const DEFAULT_HEADERS_TIMEOUT_MS = 60_000
/** Default longest pause between two chunks of an upstream's response body. */
export const DEFAULT_BODY_TIMEOUT_MS = 60_000
/** Default time a down upstream (without active probes) waits before a reachability retry. */
export const DEFAULT_COOLDOWN_MS = 10_000
/** Default interval of active health probes. */
export const DEFAULT_PROBE_INTERVAL_MS = 5_000
/** Default timeout of one active health probe. */
export const DEFAULT_PROBE_TIMEOUT_MS = 2_000
/** Default largest request body buffered so a request can be retried on another upstream, in bytes. */
export const DEFAULT_REPLAY_BODY_LIMIT = 64 * 1024
/** Default request header that tells the app its session moved to another upstream. */
export const DEFAULT_REBOUND_HEADER = 'x-sticky-rebound'
/** Shortest accepted secret, in characters. */
export const MIN_SECRET_LENGTH = 32

/** One upstream server of a pool. */
export interface StickyUpstreamOptions {
  /** Short stable id, `[A-Za-z0-9_-]{1,32}`; it is what the routing cookie carries, never the URL. */
  id: string
  /** Base URL of the upstream (`http:` or `https:`), e.g. `http://10.0.0.11:3000`. */
  url: string
  /**
   * Relative share of new sessions.
   * @defaultValue 1
   */
  weight?: number
  /** Most live sessions it takes; a full upstream gets no new sessions (see the pool's `overflow`). */
  maxSessions?: number
}

/** Active health probes of a pool's upstreams (every gateway probes; the verdict is shared through the store). */
export interface StickyHealthCheckOptions {
  /** Path requested with GET; any 2xx or 3xx answer is healthy. */
  path: string
  /** @defaultValue `'5s'` */
  interval?: Duration
  /** @defaultValue `'2s'` */
  timeout?: Duration
  /** Consecutive successes that bring a down upstream back. @defaultValue 2 */
  healthyThreshold?: number
  /** Consecutive failures that take an upstream down. @defaultValue 2 */
  unhealthyThreshold?: number
}

/** A named group of interchangeable upstreams. */
export interface StickyPoolOptions {
  /** At least one upstream; ids unique within the pool. */
  upstreams: StickyUpstreamOptions[]
  /** Active probes; without them a down upstream is retried (TCP connect) after `cooldown`. */
  healthCheck?: StickyHealthCheckOptions
  /**
   * How long a down upstream rests before a reachability retry, when there are no active probes.
   * @defaultValue `'10s'`
   */
  cooldown?: Duration
  /**
   * A newly active upstream's share of new sessions ramps up linearly over this window; `0` turns it off.
   * @defaultValue 0
   */
  slowStart?: Duration | 0
  /**
   * How new sessions are spread: `least-sessions` (fewest live sessions per weight, store-wide),
   * `weighted-round-robin`, `random-two-choices` (the less loaded of two weighted random picks) or `hash`
   * (rendezvous hashing of the key with bounded loads: stateless, and the same answer on every gateway).
   * @defaultValue `'least-sessions'`
   */
  strategy?: StickyStrategy
  /**
   * With `hash`: an upstream whose sessions exceed this factor of the (weighted) mean is skipped.
   * @defaultValue 1.25
   */
  loadFactor?: number
  /**
   * When every upstream has reached its `maxSessions`: `'reject'` answers 503, `'least-loaded'` overflows to
   * the least loaded one.
   * @defaultValue `'reject'`
   */
  overflow?: 'reject' | 'least-loaded'
}

/** How a pool spreads new sessions. */
export type StickyStrategy = 'least-sessions' | 'weighted-round-robin' | 'random-two-choices' | 'hash'

/**
 * What to do when a client's upstream is down: `'rebind'` moves the session to another upstream (every gateway
 * agrees through a compare-and-set) and tells the app with the rebound header; `'strict'` answers 503 and keeps
 * the binding, for apps that must never silently move a session.
 */
export type StickyFailoverPolicy = 'rebind' | 'strict'

/**
 * Where the affinity key comes from: one {@link StickyKeySource}, an ordered list of them (the first that yields
 * a key wins; `'cookie'` can only come last), or `false` (no affinity: round robin, weights respected).
 */
export type StickyKeyOption = StickyKeySource<FastifyRequest> | ReadonlyArray<StickyKeySource<FastifyRequest>> | false

/** Per-route settings, merged over the plugin's `defaults`. */
export interface StickyRouteConfig {
  /** Pool to route to; may be omitted when the plugin has exactly one pool. */
  pool?: string
  /**
   * Affinity key.
   * @defaultValue `'cookie'`
   */
  key?: StickyKeyOption
  /**
   * A binding unused this long expires (sliding).
   * @defaultValue `'30m'`
   */
  idleTimeout?: Duration
  /**
   * A binding expires this long after it was created, however active.
   * @defaultValue `'12h'`
   */
  maxLifetime?: Duration
  /** @defaultValue `'rebind'` */
  failover?: StickyFailoverPolicy
  /**
   * This route's upstream response timeout (headers, and the longest pause between body chunks), overriding the
   * plugin's `timeouts`; `0` disables it, for long polling and Server-Sent Events without heartbeats.
   */
  timeout?: Duration | 0
}

/** Attributes of the routing cookie. */
export interface StickyCookieOptions {
  /** @defaultValue `'sticky'` */
  name?: string
  /** @defaultValue `'/'` */
  path?: string
  /** Cookie `Domain`; host-only when omitted. */
  domain?: string
  /** Cookie `Max-Age`; a session cookie when omitted. */
  maxAge?: Duration
  /** @defaultValue `'lax'` */
  sameSite?: 'lax' | 'strict' | 'none'
  /**
   * `'auto'` sets `Secure` when the request is HTTPS as seen through Fastify's `trustProxy`.
   * @defaultValue `'auto'`
   */
  secure?: 'auto' | boolean
  /**
   * Whether the routing cookie is passed on to upstreams; by default it is removed from the request first
   * (like HAProxy's `indirect`), so apps never see it.
   * @defaultValue false
   */
  forward?: boolean
}

/** Upstream timeouts; undici's 300 s defaults are never used. */
export interface StickyTimeoutOptions {
  /** @defaultValue `'5s'` */
  connect?: Duration
  /** Time to the upstream's response headers. @defaultValue `'60s'` */
  headers?: Duration
  /** Longest pause between two body chunks. @defaultValue `'60s'` */
  body?: Duration
}

/** The near cache in front of Redis (see README "Running several gateways"). */
export interface StickyNearCacheOptions {
  /** Most bindings kept per gateway; the least recently used is dropped first. @defaultValue 100000 */
  maxEntries?: number
  /**
   * Safety TTL: the longest a cached binding is used without reading Redis again. It bounds the effect of an
   * invalidation lost while the subscription stayed up; a shorter one costs one more `GET`+`PTTL` per client per TTL.
   * @defaultValue `'10s'`
   */
  ttl?: Duration
}

/** Options of the fastify-sticky plugin. */
export interface StickyPluginOptions {
  /** Secret(s) of the routing cookie's HMAC, each at least 32 characters; the first signs, all verify (newest first). */
  secret: string | readonly string[]
  /** Named pools of upstreams. */
  pools: Record<string, StickyPoolOptions>
  /**
   * Redis: a `redis://`/`rediss://` URL, `{ sentinels, name }` (Redis behind Sentinel) or `{ cluster: nodes }` (Redis
   * Cluster) — the plugin creates a fail-fast client for these — or an ioredis `Redis`/`Cluster` instance (which you
   * own and close). Omitted (and no `store`) → in-memory store for one process.
   */
  redis?: RedisConnection
  /**
   * A local cache of bindings in front of Redis, invalidated on every gateway through Redis pub/sub; `false` turns it
   * off (every request then reads Redis). Only with `redis`.
   * @defaultValue `{ maxEntries: 100000, ttl: '10s' }`
   */
  nearCache?: false | StickyNearCacheOptions
  /** A ready {@link BindingStore} (instead of `redis`). The plugin does not close a store it was given. */
  store?: BindingStore
  /** Redis key prefix; gateways that must agree use the same one. @defaultValue `'sticky:'` */
  prefix?: string
  /** Route settings applied to every sticky route unless the route overrides them. */
  defaults?: StickyRouteConfig
  /** Routing cookie attributes. */
  cookie?: StickyCookieOptions
  /** Upstream timeouts (applied when fastify-sticky registers @fastify/reply-from itself). */
  timeouts?: StickyTimeoutOptions
  /** Most bindings the in-memory store keeps. @defaultValue 100000 */
  maxBindings?: number
  /** Request header set on requests whose session moved to another upstream; `false` sends none. @defaultValue `'x-sticky-rebound'` */
  reboundHeader?: string | false
  /** Largest request body (bytes) buffered so the request can be retried on another upstream; 0 turns buffering off. @defaultValue 65536 */
  replayBodyLimit?: number
  /** Add `X-Forwarded-For` (appending the client address), `X-Forwarded-Proto` and `X-Forwarded-Host` to forwarded requests. @defaultValue true */
  xForwarded?: boolean
  /** The admin API and status page under `prefix` (default `/_sticky`), behind `token` or your own `authHook`. Off by default. */
  admin?: StickyAdminOptions
  /** Prometheus metrics: `true` (prom-client's global registry) or `{ registry }`. @defaultValue false */
  metrics?: StickyMetricsOption
  /**
   * WebSocket (upgrade) proxying on routes that call `reply.forward()`; `false` leaves upgrades alone (for
   * example to @fastify/websocket).
   * @defaultValue `{ handshakeTimeout: '10s', idleTimeout: '15m' }`
   */
  websocket?: false | { handshakeTimeout?: Duration, idleTimeout?: Duration | 0 }
}

/** A pool after validation. */
export interface ResolvedPool {
  readonly upstreams: readonly ResolvedUpstream[]
  readonly healthCheck: {
    readonly path: string
    readonly intervalMs: number
    readonly timeoutMs: number
    readonly healthyThreshold: number
    readonly unhealthyThreshold: number
  } | undefined
  readonly cooldownMs: number
  readonly slowStartMs: number
  readonly strategy: StickyStrategy
  readonly loadFactor: number
  readonly overflow: 'reject' | 'least-loaded'
  /** The routing cookie of this pool: `cookie.name` for the default pool, `<cookie.name>-<pool>` for the others. */
  readonly cookieName: string
}

/** An upstream after validation. */
export interface ResolvedUpstream {
  /** Configured id (what the routing cookie carries). */
  readonly id: string
  /** Origin URL. */
  readonly url: string
  /** Relative share of new sessions. */
  readonly weight: number
  /** Most live sessions, or `Infinity`. */
  readonly maxSessions: number
}

/** A route's settings after merging and validation. */
export interface ResolvedRouteConfig {
  readonly pool: string
  /** Key sources in order, or `false` for no affinity. */
  readonly key: false | readonly ResolvedKeySource[]
  readonly idleTimeoutMs: number
  readonly maxLifetimeMs: number
  readonly failover: StickyFailoverPolicy
  /** This route's own upstream response timeout in ms (0: none), or `undefined` for the plugin's. */
  readonly timeoutMs: number | undefined
}

/** Plugin options after validation, with every default filled in. Frozen. */
export interface ResolvedOptions {
  readonly secrets: readonly string[]
  readonly pools: Readonly<Record<string, ResolvedPool>>
  readonly redis: RedisConnection | undefined
  /** `false` without `redis`, or when turned off. */
  readonly nearCache: false | { readonly maxEntries: number, readonly ttlMs: number }
  readonly store: BindingStore | undefined
  readonly prefix: string
  readonly defaults: StickyRouteConfig
  readonly cookie: {
    readonly name: string
    readonly path: string
    readonly domain: string | undefined
    readonly maxAgeSeconds: number | undefined
    readonly sameSite: 'lax' | 'strict' | 'none'
    readonly secure: 'auto' | boolean
    readonly forward: boolean
  }
  readonly timeouts: { readonly connectMs: number, readonly headersMs: number, readonly bodyMs: number }
  readonly maxBindings: number
  readonly reboundHeader: string | false
  readonly replayBodyLimit: number
  readonly xForwarded: boolean
  /** `undefined` when the admin API is off. */
  readonly admin: ResolvedAdminOptions | undefined
  readonly metrics: ResolvedMetricsOptions
  readonly websocket: false | { readonly handshakeTimeoutMs: number, readonly idleTimeoutMs: number }
}

const ID_RE = /^[A-Za-z0-9_-]{1,32}$/
const COOKIE_NAME_RE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}$/
const PLUGIN_KEYS = ['secret', 'pools', 'redis', 'nearCache', 'store', 'prefix', 'defaults', 'cookie', 'timeouts', 'maxBindings', 'reboundHeader', 'replayBodyLimit', 'xForwarded', 'websocket', 'admin', 'metrics']
const ROUTE_KEYS = ['pool', 'key', 'idleTimeout', 'maxLifetime', 'failover', 'timeout']
const POOL_KEYS = ['upstreams', 'healthCheck', 'cooldown', 'slowStart', 'strategy', 'loadFactor', 'overflow']
const STRATEGIES = ['least-sessions', 'weighted-round-robin', 'random-two-choices', 'hash']
const HEALTH_KEYS = ['path', 'interval', 'timeout', 'healthyThreshold', 'unhealthyThreshold']
const COOKIE_KEYS = ['name', 'path', 'domain', 'maxAge', 'sameSite', 'secure', 'forward']
const TIMEOUT_KEYS = ['connect', 'headers', 'body']

function show (value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? value.slice(0, 60) + '…' : value)
  if (typeof value === 'function') return 'a function'
  if (value === null || typeof value !== 'object') return String(value)
  return Array.isArray(value) ? 'an array' : 'an object'
}

function fail (path: string, expectation: string, value: unknown): never {
  throw new InvalidOptionError(`${path} must be ${expectation}, got ${show(value)}`)
}

function isRecord (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function checkKeys (path: string, value: Record<string, unknown>, allowed: readonly string[], onError: (path: string, message: string) => never): void {
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) onError(path === '' ? key : `${path}.${key}`, `is not a known option (known: ${allowed.join(', ')})`)
  }
}

function duration (path: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback
  return parseDuration(value) ?? fail(path, "a positive duration (ms as a number, or a string like '30s', '30m', '12h')", value)
}

function resolveUpstreams (path: string, input: unknown): ResolvedUpstream[] {
  if (!isRecord(input)) fail(path, 'an object with `upstreams`', input)
  const list = input.upstreams
  if (!Array.isArray(list) || list.length === 0) fail(`${path}.upstreams`, 'a non-empty array', list)
  const seen = new Set<string>()
  return list.map((entry: unknown, i): ResolvedUpstream => {
    const at = `${path}.upstreams[${i}]`
    if (!isRecord(entry)) fail(at, 'an object { id, url, weight? }', entry)
    checkKeys(at, entry, ['id', 'url', 'weight', 'maxSessions'], (p) => fail(p, 'absent (known: id, url, weight, maxSessions)', entry[p.slice(at.length + 1)]))
    if (typeof entry.id !== 'string' || !ID_RE.test(entry.id)) fail(`${at}.id`, 'a string of 1-32 characters [A-Za-z0-9_-]', entry.id)
    if (seen.has(entry.id)) fail(`${at}.id`, 'unique within the pool', entry.id)
    seen.add(entry.id)
    let url: URL | undefined
    try { url = typeof entry.url === 'string' ? new URL(entry.url) : undefined } catch { url = undefined }
    if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.pathname !== '/' || url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '' || /[?#]$/.test(entry.url as string)) {
      fail(`${at}.url`, 'an http(s) origin URL without path, query or credentials', entry.url)
    }
    const weight = entry.weight ?? 1
    if (typeof weight !== 'number' || !Number.isFinite(weight) || weight <= 0 || weight > 1000) fail(`${at}.weight`, 'a number above 0 and at most 1000', weight)
    const maxSessions = entry.maxSessions ?? Infinity
    if (maxSessions !== Infinity && (!Number.isSafeInteger(maxSessions) || (maxSessions as number) < 1)) fail(`${at}.maxSessions`, 'a positive integer', maxSessions)
    return Object.freeze({ id: entry.id, url: url.origin, weight, maxSessions: maxSessions as number })
  })
}

function positiveInteger (path: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback
  if (!Number.isSafeInteger(value) || (value as number) < 1) fail(path, 'a positive integer', value)
  return value as number
}

function resolvePool (path: string, input: unknown): Omit<ResolvedPool, 'cookieName'> {
  if (!isRecord(input)) fail(path, 'an object with `upstreams`', input)
  checkKeys(path, input, POOL_KEYS, (p) => fail(p, `absent (known: ${POOL_KEYS.join(', ')})`, input[p.slice(path.length + 1)]))
  const upstreams = Object.freeze(resolveUpstreams(path, input))
  let healthCheck: ResolvedPool['healthCheck']
  const probe = input.healthCheck
  if (probe !== undefined) {
    const at = `${path}.healthCheck`
    if (!isRecord(probe)) fail(at, 'an object { path, interval?, timeout?, healthyThreshold?, unhealthyThreshold? }', probe)
    checkKeys(at, probe, HEALTH_KEYS, (p) => fail(p, `absent (known: ${HEALTH_KEYS.join(', ')})`, probe[p.slice(at.length + 1)]))
    if (typeof probe.path !== 'string' || !probe.path.startsWith('/') || /\s/.test(probe.path)) fail(`${at}.path`, 'a path starting with "/"', probe.path)
    healthCheck = Object.freeze({
      path: probe.path,
      intervalMs: duration(`${at}.interval`, probe.interval, DEFAULT_PROBE_INTERVAL_MS),
      timeoutMs: duration(`${at}.timeout`, probe.timeout, DEFAULT_PROBE_TIMEOUT_MS),
      healthyThreshold: positiveInteger(`${at}.healthyThreshold`, probe.healthyThreshold, 2),
      unhealthyThreshold: positiveInteger(`${at}.unhealthyThreshold`, probe.unhealthyThreshold, 2)
    })
  }
  const strategy = input.strategy ?? 'least-sessions'
  if (!STRATEGIES.includes(strategy as string)) fail(`${path}.strategy`, STRATEGIES.map((n) => `'${n}'`).join(', '), strategy)
  const loadFactor = input.loadFactor ?? 1.25
  if (typeof loadFactor !== 'number' || !(loadFactor >= 1) || loadFactor > 100) fail(`${path}.loadFactor`, 'a number from 1 to 100', loadFactor)
  const overflow = input.overflow ?? 'reject'
  if (overflow !== 'reject' && overflow !== 'least-loaded') fail(`${path}.overflow`, "'reject' or 'least-loaded'", overflow)
  return {
    strategy: strategy as StickyStrategy,
    loadFactor,
    overflow,
    upstreams,
    healthCheck,
    cooldownMs: duration(`${path}.cooldown`, input.cooldown, DEFAULT_COOLDOWN_MS),
    slowStartMs: input.slowStart === 0 ? 0 : duration(`${path}.slowStart`, input.slowStart, 0)
  }
}

/**
 * Validates one upstream given at run time (`app.sticky.pool(name).add()`), by the same rules as the options.
 * @throws FST_STICKY_INVALID_OPTION naming `path`
 */
export function resolveUpstream (path: string, input: unknown): ResolvedUpstream {
  return resolveUpstreams(path, { upstreams: [input] })[0]
}

function resolveSecrets (input: unknown): string[] {
  const list = typeof input === 'string' ? [input] : input
  if (!Array.isArray(list) || list.length === 0) fail('secret', 'a string or a non-empty array of strings', input)
  list.forEach((secret: unknown, i) => {
    if (typeof secret !== 'string' || secret.length < MIN_SECRET_LENGTH) {
      fail(typeof input === 'string' ? 'secret' : `secret[${i}]`, `a string of at least ${MIN_SECRET_LENGTH} characters`, typeof secret === 'string' ? `${secret.length} characters` : secret)
    }
  })
  return [...list] as string[]
}

function resolveCookie (input: unknown): ResolvedOptions['cookie'] {
  const cookie = input ?? {}
  if (!isRecord(cookie)) fail('cookie', 'an object', input)
  checkKeys('cookie', cookie, COOKIE_KEYS, (p) => fail(p, `absent (known: ${COOKIE_KEYS.join(', ')})`, cookie[p.slice(7)]))
  const name = cookie.name ?? DEFAULT_COOKIE_NAME
  if (typeof name !== 'string' || !COOKIE_NAME_RE.test(name)) fail('cookie.name', 'a cookie name token (1-64 characters, RFC 6265)', name)
  const path = cookie.path ?? '/'
  if (typeof path !== 'string' || !path.startsWith('/') || /[;\s]/.test(path)) fail('cookie.path', 'a path starting with "/" without ";" or spaces', path)
  const domain = cookie.domain
  if (domain !== undefined && (typeof domain !== 'string' || !/^\.?[A-Za-z0-9.-]+$/.test(domain))) fail('cookie.domain', 'a domain name', domain)
  const sameSite = cookie.sameSite ?? 'lax'
  if (sameSite !== 'lax' && sameSite !== 'strict' && sameSite !== 'none') fail('cookie.sameSite', "'lax', 'strict' or 'none'", sameSite)
  const secure = cookie.secure ?? 'auto'
  if (secure !== 'auto' && typeof secure !== 'boolean') fail('cookie.secure', "'auto' or a boolean", secure)
  // Browsers drop SameSite=None cookies that are not Secure.
  if (sameSite === 'none' && secure === false) fail('cookie.secure', "true or 'auto' when cookie.sameSite is 'none'", secure)
  const maxAgeMs = cookie.maxAge === undefined ? undefined : duration('cookie.maxAge', cookie.maxAge, 0)
  const forward = cookie.forward ?? false
  if (typeof forward !== 'boolean') fail('cookie.forward', 'a boolean', forward)
  return Object.freeze({
    name,
    path,
    domain,
    maxAgeSeconds: maxAgeMs === undefined ? undefined : Math.max(1, Math.round(maxAgeMs / 1000)),
    sameSite,
    secure,
    forward
  })
}

function resolveTimeouts (input: unknown): ResolvedOptions['timeouts'] {
  const timeouts = input ?? {}
  if (!isRecord(timeouts)) fail('timeouts', 'an object', input)
  checkKeys('timeouts', timeouts, TIMEOUT_KEYS, (p) => fail(p, `absent (known: ${TIMEOUT_KEYS.join(', ')})`, timeouts[p.slice(9)]))
  return Object.freeze({
    connectMs: duration('timeouts.connect', timeouts.connect, DEFAULT_CONNECT_TIMEOUT_MS),
    headersMs: duration('timeouts.headers', timeouts.headers, DEFAULT_HEADERS_TIMEOUT_MS),
    bodyMs: duration('timeouts.body', timeouts.body, DEFAULT_BODY_TIMEOUT_MS)
  })
}

/** Default longest wait for an upstream's 101 Switching Protocols. */
export const DEFAULT_WS_HANDSHAKE_TIMEOUT_MS = 10_000
/** Default idle time after which a WebSocket tunnel is closed. */
export const DEFAULT_WS_IDLE_TIMEOUT_MS = 15 * 60_000

function resolveWebSocket (input: unknown): ResolvedOptions['websocket'] {
  if (input === false) return false
  const ws = input ?? {}
  if (!isRecord(ws)) fail('websocket', 'false or an object { handshakeTimeout?, idleTimeout? }', input)
  checkKeys('websocket', ws, ['handshakeTimeout', 'idleTimeout'], (p) => fail(p, 'absent (known: handshakeTimeout, idleTimeout)', ws[p.slice(10)]))
  return Object.freeze({
    handshakeTimeoutMs: duration('websocket.handshakeTimeout', ws.handshakeTimeout, DEFAULT_WS_HANDSHAKE_TIMEOUT_MS),
    idleTimeoutMs: ws.idleTimeout === 0 ? 0 : duration('websocket.idleTimeout', ws.idleTimeout, DEFAULT_WS_IDLE_TIMEOUT_MS)
  })
}

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

function resolveRedis (redis: unknown): RedisConnection | undefined {
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

function resolveNearCache (input: unknown, redis: RedisConnection | undefined): ResolvedOptions['nearCache'] {
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

function isBindingStore (value: unknown): value is BindingStore {
  const methods = ['init', 'sharedSalt', 'get', 'bindIfAbsent', 'rebind', 'touch', 'delete', 'sessionCounts', 'upstreamStates', 'setUpstreamState', 'onInvalidate', 'onSaltChange', 'close']
  return isRecord(value) && methods.every((m) => typeof (value as Record<string, unknown>)[m] === 'function')
}

/**
 * Validates plugin options and fills every default.
 * @param input - the options given to `register`
 * @returns frozen resolved options
 * @throws FST_STICKY_INVALID_OPTION naming the option, the expectation and the value
 */
export function resolveOptions (input: StickyPluginOptions): ResolvedOptions {
  if (!isRecord(input)) fail('options', 'an object', input)
  checkKeys('', input, PLUGIN_KEYS, (p) => fail(p, `absent (known: ${PLUGIN_KEYS.join(', ')})`, (input as unknown as Record<string, unknown>)[p]))
  const secrets = resolveSecrets(input.secret)

  if (!isRecord(input.pools) || Object.keys(input.pools).length === 0) fail('pools', 'an object with at least one named pool', input.pools)
  const pools: Record<string, Omit<ResolvedPool, 'cookieName'>> = {}
  for (const [name, pool] of Object.entries(input.pools)) {
    if (!ID_RE.test(name)) fail(`pools.${name}`, 'named with 1-32 characters [A-Za-z0-9_-]', name)
    pools[name] = resolvePool(`pools.${name}`, pool)
  }

  const redis = resolveRedis(input.redis)
  const nearCache = resolveNearCache(input.nearCache, redis)
  const store = input.store
  if (store !== undefined && !isBindingStore(store)) fail('store', 'an object implementing BindingStore', store)
  if (store !== undefined && redis !== undefined) fail('store', 'absent when `redis` is given (give one of them)', 'both')

  const prefix = input.prefix ?? DEFAULT_REDIS_PREFIX
  if (typeof prefix !== 'string' || prefix.length === 0 || prefix.length > 64 || /[{}\s]/.test(prefix)) {
    fail('prefix', 'a string of 1-64 characters without braces or spaces', prefix)
  }
  const maxBindings = input.maxBindings ?? DEFAULT_MEMORY_MAX_BINDINGS
  if (!Number.isSafeInteger(maxBindings) || maxBindings < 1) fail('maxBindings', 'a positive integer', maxBindings)

  const reboundHeader = input.reboundHeader ?? DEFAULT_REBOUND_HEADER
  if (reboundHeader !== false && (typeof reboundHeader !== 'string' || !/^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}$/.test(reboundHeader))) {
    fail('reboundHeader', 'a header name or false', reboundHeader)
  }
  const replayBodyLimit = input.replayBodyLimit ?? DEFAULT_REPLAY_BODY_LIMIT
  if (!Number.isSafeInteger(replayBodyLimit) || replayBodyLimit < 0 || replayBodyLimit > 16 * 1024 * 1024) {
    fail('replayBodyLimit', 'a whole number of bytes from 0 to 16 MiB', replayBodyLimit)
  }

  const cookie = resolveCookie(input.cookie)
  // One cookie per pool, so a client of several pools keeps a binding in each; the default pool keeps the plain
  // name, so adding a pool later changes no existing client's cookie.
  const defaultPool = isRecord(input.defaults) && typeof input.defaults.pool === 'string' ? input.defaults.pool : Object.keys(pools)[0]
  const resolvedPools: Record<string, ResolvedPool> = {}
  for (const [name, pool] of Object.entries(pools)) {
    resolvedPools[name] = Object.freeze({ ...pool, cookieName: name === defaultPool ? cookie.name : `${cookie.name}-${name}` })
  }
  const xForwarded = input.xForwarded ?? true
  if (typeof xForwarded !== 'boolean') fail('xForwarded', 'a boolean', xForwarded)

  const websocket = resolveWebSocket(input.websocket)

  const resolved: ResolvedOptions = {
    secrets: Object.freeze(secrets),
    pools: Object.freeze(resolvedPools),
    redis,
    nearCache,
    store,
    prefix,
    defaults: {},
    cookie,
    timeouts: resolveTimeouts(input.timeouts),
    maxBindings,
    reboundHeader: reboundHeader === false ? false : reboundHeader.toLowerCase(),
    replayBodyLimit,
    xForwarded,
    websocket,
    admin: resolveAdminOptions(input.admin),
    metrics: resolveMetricsOptions(input.metrics)
  }
  const defaults = input.defaults ?? {}
  // Defaults are checked with the route rules now, so a bad default fails at register, not at the first route.
  if (!isRecord(defaults)) fail('defaults', 'an object', defaults)
  mergeRouteConfig(defaults, { ...resolved, defaults: {} }, (path, message) => {
    throw new InvalidOptionError(`defaults.${path} ${message}`)
  }, false)
  return Object.freeze({ ...resolved, defaults: Object.freeze({ ...defaults }) })
}

/**
 * Merges a route's `config.sticky` over the plugin defaults and validates it.
 * @param routeLabel - `METHOD url`, used in error messages
 * @param input - the route's `config.sticky`
 * @param options - resolved plugin options
 * @returns the resolved config, or `null` when the route opts out (`false`)
 * @throws FST_STICKY_INVALID_ROUTE_CONFIG naming the route and the option
 */
export function resolveRouteConfig (routeLabel: string, input: unknown, options: ResolvedOptions): ResolvedRouteConfig | null {
  if (input === false || input === undefined) return null
  if (input !== true && !isRecord(input)) {
    throw new InvalidRouteConfigError(routeLabel, `config.sticky must be true, false or an object, got ${show(input)}`)
  }
  return mergeRouteConfig(input === true ? {} : input, options, (path, message) => {
    throw new InvalidRouteConfigError(routeLabel, `config.sticky.${path} ${message}`)
  }, true)
}

function mergeRouteConfig (
  input: Record<string, unknown> | StickyRouteConfig,
  options: ResolvedOptions,
  onError: (path: string, message: string) => never,
  poolRequired: boolean
): ResolvedRouteConfig {
  const route = input as Record<string, unknown>
  checkKeys('', route, ROUTE_KEYS, (p) => onError(p, `is not a known option (known: ${ROUTE_KEYS.join(', ')})`))
  const merged = { ...options.defaults, ...route } as Record<string, unknown>
  const poolNames = Object.keys(options.pools)
  let pool: unknown = merged.pool ?? (poolNames.length === 1 ? poolNames[0] : undefined)
  if (pool === undefined && !poolRequired) {
    pool = '' // plugin defaults may leave the pool to each route
  } else if (typeof pool !== 'string' || !poolNames.includes(pool)) {
    onError('pool', `must name one of the pools (${poolNames.join(', ')})` +
      (pool === undefined ? ' when there is more than one' : `, got ${show(pool)}`))
  }
  const key = resolveKeySources(merged.key ?? 'cookie', (path, message) => onError(path, message))
  const idle = merged.idleTimeout === undefined ? DEFAULT_IDLE_TIMEOUT_MS : parseDuration(merged.idleTimeout)
  if (idle === undefined) onError('idleTimeout', `must be a positive duration (ms, or '30s', '30m', '12h'), got ${show(merged.idleTimeout)}`)
  const lifetime = merged.maxLifetime === undefined ? DEFAULT_MAX_LIFETIME_MS : parseDuration(merged.maxLifetime)
  if (lifetime === undefined) onError('maxLifetime', `must be a positive duration (ms, or '30s', '30m', '12h'), got ${show(merged.maxLifetime)}`)
  const failover = merged.failover ?? 'rebind'
  if (failover !== 'rebind' && failover !== 'strict') onError('failover', `must be 'rebind' or 'strict', got ${show(failover)}`)
  const timeout = merged.timeout
  const timeoutMs = timeout === undefined ? undefined : timeout === 0 ? 0 : parseDuration(timeout)
  if (timeoutMs === undefined && timeout !== undefined) onError('timeout', `must be a positive duration or 0, got ${show(timeout)}`)
  return Object.freeze({ pool: pool as string, key, idleTimeoutMs: idle, maxLifetimeMs: lifetime, failover, timeoutMs })
}
