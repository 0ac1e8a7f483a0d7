/**
 * Plugin and route options: their types, defaults and validation. `resolveOptions` and `resolveRouteConfig`
 * are pure: they never mutate their input, reject unknown keys, and throw errors naming the dotted option path.
 */
import { resolveKeySources } from '../affinity/keys'
import { resolveAdminOptions, resolveMetricsOptions } from '../admin/admin-options'
import { SESSION_HEADER } from '../core/handoff-protocol'
import { InvalidOptionError, InvalidRouteConfigError } from '../errors'
import { parseDuration } from '../duration'
import { checkKeys, duration, fail, isRecord, show } from './checks'
import { resolveWebSocket, resolveXForwarded } from './edge'
import { resolveHandoff } from './handoff'
import { resolveNewBindings } from './new-bindings'
import { ID_RE, resolvePool } from './pool'
import { resolveNearCache, resolveRedis } from './redis'
import type { BindingStore } from '../store/binding-store'
import { DEFAULT_MEMORY_MAX_BINDINGS } from '../store/memory-store'
import { DEFAULT_REDIS_PREFIX } from '../store/redis-store'
import type { ResolvedOptions, ResolvedPool, ResolvedRouteConfig, StickyPluginOptions, StickyRouteConfig } from './types'

export type * from './types'
export type { Duration } from '../duration'
export type { StickyKeySource, IpKeyOptions } from '../affinity/keys'
export { DEFAULT_COOLDOWN_MS, DEFAULT_PROBE_INTERVAL_MS, DEFAULT_PROBE_TIMEOUT_MS, resolveUpstream } from './pool'
export type { StickyWebSocketOptions, StickyXForwardedOptions } from './edge'
export type { StickyNewBindingsOptions, StickyBindingRateOptions } from './new-bindings'
export type { StickyHandoffOptions, ResolvedHandoff } from './handoff'

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

// Headers the gateway writes on upstream requests: the rebound header may not be one of them (it is dropped from
// what the client sent and written only on a rebound, which would drop or fake the gateway's own).
const GATEWAY_WRITTEN_HEADERS = ['host', 'cookie', 'content-length', 'content-type', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', SESSION_HEADER]
const COOKIE_NAME_RE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}$/
// What the Set-Cookie serializer (cookie@2) accepts, checked here so that a bad value fails at register, naming the
// option, and not as a TypeError when the cookie text is made (or on a new session's response).
const COOKIE_DOMAIN_RE = /^\.?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i
const COOKIE_PATH_EXPECTED = 'a path starting with "/" of printable ASCII without ";", "<" or spaces'
function isCookiePath (path: unknown): path is string {
  return typeof path === 'string' && /^\/[\u0021-\u003A\u003D-\u007E]*$/.test(path)
}
const PLUGIN_KEYS = ['secret', 'pools', 'redis', 'nearCache', 'store', 'prefix', 'defaults', 'cookie', 'timeouts', 'maxBindings', 'reboundHeader', 'replayBodyLimit', 'cookiePlugin', 'xForwarded', 'websocket', 'admin', 'metrics', 'newBindings', 'handoff']
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
  if (!isCookiePath(path)) fail('cookie.path', COOKIE_PATH_EXPECTED, path)
  const domain = cookie.domain
  if (domain !== undefined && (typeof domain !== 'string' || !COOKIE_DOMAIN_RE.test(domain))) fail('cookie.domain', 'a domain name (labels of letters, digits and inner hyphens)', domain)
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

const POOL_COOKIE_KEYS = ['name', 'path', 'maxAge']

function resolvePoolCookie (path: string, input: unknown, cookie: ResolvedOptions['cookie']): { name: string | undefined, path: string, maxAgeSeconds: number | undefined } {
  if (input === undefined) return { name: undefined, path: cookie.path, maxAgeSeconds: cookie.maxAgeSeconds }
  if (!isRecord(input)) fail(path, 'an object { name?, path?, maxAge? }', input)
  checkKeys(path, input, POOL_COOKIE_KEYS, (p) => fail(p, `absent (known: ${POOL_COOKIE_KEYS.join(', ')})`, input[p.slice(path.length + 1)]))
  const name = input.name
  if (name !== undefined && (typeof name !== 'string' || !COOKIE_NAME_RE.test(name))) fail(`${path}.name`, 'a cookie name token (1-64 characters, RFC 6265)', name)
  const cookiePath = input.path ?? cookie.path
  if (!isCookiePath(cookiePath)) fail(`${path}.path`, COOKIE_PATH_EXPECTED, cookiePath)
  let maxAgeSeconds = cookie.maxAgeSeconds
  if (input.maxAge === 0) maxAgeSeconds = undefined
  else if (input.maxAge !== undefined) maxAgeSeconds = Math.max(1, Math.round(duration(`${path}.maxAge`, input.maxAge, 0) / 1000))
  return { name: name as string | undefined, path: cookiePath, maxAgeSeconds }
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
  const methods = ['init', 'sharedSalt', 'get', 'bindIfAbsent', 'rebind', 'touch', 'delete', 'sessionCounts', 'sessionsOf', 'upstreamStates', 'setUpstreamState', 'onInvalidate', 'onSaltChange', 'close']
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
  const pools: Record<string, Omit<ResolvedPool, 'cookieName' | 'cookiePath' | 'cookieMaxAgeSeconds'>> = {}
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
  if (reboundHeader !== false && GATEWAY_WRITTEN_HEADERS.includes(reboundHeader.toLowerCase())) {
    fail('reboundHeader', `a header the gateway does not write itself (not ${GATEWAY_WRITTEN_HEADERS.join(', ')})`, reboundHeader)
  }
  const cookiePlugin = input.cookiePlugin ?? true
  if (typeof cookiePlugin !== 'boolean') fail('cookiePlugin', 'a boolean', cookiePlugin)
  const replayBodyLimit = input.replayBodyLimit ?? DEFAULT_REPLAY_BODY_LIMIT
  if (!Number.isSafeInteger(replayBodyLimit) || replayBodyLimit < 0 || replayBodyLimit > 16 * 1024 * 1024) {
    fail('replayBodyLimit', 'a whole number of bytes from 0 to 16 MiB', replayBodyLimit)
  }

  const cookie = resolveCookie(input.cookie)
  // One cookie per pool, so a client of several pools keeps a binding in each; the default pool keeps the plain
  // name, so adding a pool later changes no existing client's cookie.
  const defaultPool = isRecord(input.defaults) && typeof input.defaults.pool === 'string' ? input.defaults.pool : Object.keys(pools)[0]
  const resolvedPools: Record<string, ResolvedPool> = {}
  const cookieOwners = new Map<string, string>()
  for (const [name, pool] of Object.entries(pools)) {
    const own = resolvePoolCookie(`pools.${name}.cookie`, (input.pools[name] as unknown as Record<string, unknown>).cookie, cookie)
    const cookieName = own.name ?? (name === defaultPool ? cookie.name : `${cookie.name}-${name}`)
    // Two pools reading one cookie would take each other's tokens for their own.
    const owner = cookieOwners.get(cookieName)
    if (owner !== undefined) fail(`pools.${name}.cookie.name`, `a cookie name no other pool uses (pool "${owner}" uses it)`, cookieName)
    cookieOwners.set(cookieName, name)
    resolvedPools[name] = Object.freeze({ ...pool, cookieName, cookiePath: own.path, cookieMaxAgeSeconds: own.maxAgeSeconds })
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
    cookiePlugin,
    xForwarded,
    websocket,
    newBindings: resolveNewBindings(input.newBindings),
    handoff: resolveHandoff(input.handoff),
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
