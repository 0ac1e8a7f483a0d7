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
import { checkKeys, duration, fail, isRecord, show } from './options/checks'
import { resolveWebSocket, resolveXForwarded, type ResolvedWebSocketOptions, type ResolvedXForwarded, type StickyWebSocketOptions, type StickyXForwardedOptions } from './options/edge'
import { resolveNewBindings, type ResolvedNewBindings, type StickyNewBindingsOptions } from './options/new-bindings'
import { ID_RE, resolvePool } from './options/pool'
import { resolveNearCache, resolveRedis } from './options/redis'
import type { BindingStore } from './store/binding-store'
import { DEFAULT_MEMORY_MAX_BINDINGS } from './store/memory-store'
import { DEFAULT_REDIS_PREFIX, type RedisConnection } from './store/redis-store'

export type { Duration } from './duration'
export type { StickyKeySource, IpKeyOptions } from './affinity/keys'
export { DEFAULT_COOLDOWN_MS, DEFAULT_PROBE_INTERVAL_MS, DEFAULT_PROBE_TIMEOUT_MS, resolveUpstream } from './options/pool'
export type { StickyWebSocketOptions, StickyXForwardedOptions } from './options/edge'
export type { StickyNewBindingsOptions, StickyBindingRateOptions } from './options/new-bindings'

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
  /**
   * Write `X-Forwarded-For` (the hops `trustProxy` trusts, then the peer), `X-Forwarded-Proto` and `X-Forwarded-Host`
   * on forwarded requests, replacing what the client sent (client-sent `Forwarded`, `X-Real-IP`, `X-Forwarded-Port`,
   * `X-Original-URL` and `X-Rewrite-URL` are removed); `{ allowedHosts }` passes on only those hosts.
   * `false` forwards the client's headers untouched. @defaultValue true
   */
  xForwarded?: boolean | StickyXForwardedOptions
  /** The admin API and status page under `prefix` (default `/_sticky`), behind `token` or your own `authHook`. Off by default. */
  admin?: StickyAdminOptions
  /** Prometheus metrics: `true` (prom-client's global registry) or `{ registry }`. @defaultValue false */
  metrics?: StickyMetricsOption
  /**
   * WebSocket (upgrade) proxying on routes that call `reply.forward()`; `false` leaves upgrades alone (for
   * example to @fastify/websocket).
   * @defaultValue `{ handshakeTimeout: '10s', idleTimeout: '15m', maxTunnels: 10000, maxTunnelsPerClient: 256 }`
   */
  websocket?: false | StickyWebSocketOptions
  /**
   * Budgets of new bindings per client address and per gateway (over them a request is served, its binding not
   * stored), and how long a binding on probation counts against `maxSessions`; `false` turns the budgets off.
   * @defaultValue `{ perClient: { rate: 30, per: '1m' }, perGateway: { rate: 1000, per: '1s' }, probationHold: '10s' }`
   */
  newBindings?: false | StickyNewBindingsOptions
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
  readonly xForwarded: ResolvedXForwarded
  /** `undefined` when the admin API is off. */
  readonly admin: ResolvedAdminOptions | undefined
  readonly metrics: ResolvedMetricsOptions
  readonly websocket: false | ResolvedWebSocketOptions
  readonly newBindings: ResolvedNewBindings
}

const COOKIE_NAME_RE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}$/
const PLUGIN_KEYS = ['secret', 'pools', 'redis', 'nearCache', 'store', 'prefix', 'defaults', 'cookie', 'timeouts', 'maxBindings', 'reboundHeader', 'replayBodyLimit', 'xForwarded', 'websocket', 'admin', 'metrics', 'newBindings']
const ROUTE_KEYS = ['pool', 'key', 'idleTimeout', 'maxLifetime', 'failover', 'timeout']
const COOKIE_KEYS = ['name', 'path', 'domain', 'maxAge', 'sameSite', 'secure', 'forward']
const TIMEOUT_KEYS = ['connect', 'headers', 'body']

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
  const xForwarded = resolveXForwarded(input.xForwarded)

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
    newBindings: resolveNewBindings(input.newBindings),
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
