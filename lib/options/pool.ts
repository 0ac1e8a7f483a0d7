/**
 * Pool options: upstreams (ids, origins, weights, session caps), health checks, strategy and overflow.
 */
import type { ResolvedPool, ResolvedUpstream, StickyStrategy } from './types'
import { checkKeys, duration, fail, isRecord, positiveInteger } from './checks'

/** Default time an upstream marked down waits before a connection is tried again. */
export const DEFAULT_COOLDOWN_MS = 10_000
/** Default interval of active health probes. */
export const DEFAULT_PROBE_INTERVAL_MS = 5_000
/** Default timeout of one health probe. */
export const DEFAULT_PROBE_TIMEOUT_MS = 2_000

/** Upstream ids and pool names: what a routing cookie and a Redis key may carry. */
export const ID_RE = /^[A-Za-z0-9_-]{1,32}$/
const POOL_KEYS = ['upstreams', 'healthCheck', 'cooldown', 'slowStart', 'strategy', 'loadFactor', 'overflow', 'cookie']
const STRATEGIES = ['least-sessions', 'weighted-round-robin', 'random-two-choices', 'hash']
const HEALTH_KEYS = ['path', 'interval', 'timeout', 'healthyThreshold', 'unhealthyThreshold']

/**
 * Marks a pool whose members all come at run time (the gateway's DNS discovery): it may start with no upstream.
 * A symbol, not an option: a user's pool with an empty list is a mistake, caught at register.
 */
export const kMembersAtRunTime = Symbol.for('fastify-sticky.members-at-run-time')

function resolveUpstreams (path: string, input: unknown): ResolvedUpstream[] {
  if (!isRecord(input)) fail(path, 'an object with `upstreams`', input)
  const list = input.upstreams
  const mayBeEmpty = (input as Record<symbol, unknown>)[kMembersAtRunTime] === true
  if (!Array.isArray(list) || (list.length === 0 && !mayBeEmpty)) fail(`${path}.upstreams`, 'a non-empty array', list)
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

/**
 * Validates one pool's options and fills their defaults (the cookie name is the plugin's to set).
 * @throws FST_STICKY_INVALID_OPTION naming `path` or an option under it
 */
export function resolvePool (path: string, input: unknown): Omit<ResolvedPool, 'cookieName' | 'cookiePath' | 'cookieMaxAgeSeconds'> {
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
