/**
 * The plugin's `admin` and `metrics` options: their types and validation (called from `resolveOptions`, and by
 * {@link adminRoutes} for direct registrations). Errors name the dotted option path.
 */
import type { onRequestAsyncHookHandler, onRequestHookHandler } from 'fastify'
import type { Registry } from 'prom-client'
import { InvalidOptionError } from '../errors'

/** Where the admin API is mounted unless told otherwise. */
export const DEFAULT_ADMIN_PREFIX = '/_sticky'

/** Shortest admin token accepted. */
export const MIN_ADMIN_TOKEN_LENGTH = 16

/** The opt-in admin API: give `token` or `authHook`. */
export interface StickyAdminOptions {
  /** Bearer token of at least 16 characters, compared in constant time. */
  token?: string
  /**
   * Path prefix of the admin routes.
   * @defaultValue `'/_sticky'`
   */
  prefix?: string
  /** Your own `onRequest` hook, run before every admin route (the status page too) instead of the token check. */
  authHook?: onRequestHookHandler | onRequestAsyncHookHandler
}

/**
 * Prometheus metrics: `true` registers them in prom-client's global registry, `{ registry }` in yours.
 * With the admin API on and metrics off, they live in a registry of their own, served only at `<prefix>/metrics`.
 */
export type StickyMetricsOption = boolean | { registry?: Registry }

/** `admin` after validation. */
export interface ResolvedAdminOptions {
  readonly prefix: string
  readonly token: string | undefined
  readonly authHook: onRequestHookHandler | onRequestAsyncHookHandler | undefined
}

/** `metrics` after validation: `false`, or where to register (`undefined`: the global registry). */
export type ResolvedMetricsOptions = false | { readonly registry: Registry | undefined }

const ADMIN_KEYS = ['token', 'prefix', 'authHook']
const PREFIX_RE = /^(\/[A-Za-z0-9._~-]+)+$/

function isRecord (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function isRegistry (value: unknown): value is Registry {
  return isRecord(value) && typeof value.metrics === 'function' && typeof value.registerMetric === 'function' && typeof value.getSingleMetric === 'function'
}

/**
 * @param input - the `admin` option
 * @param path - its dotted path, for messages
 * @returns the validated settings, or `undefined` when the admin API is off
 * @throws FST_STICKY_INVALID_OPTION naming the option (never echoing a token)
 */
export function resolveAdminOptions (input: unknown, path = 'admin'): ResolvedAdminOptions | undefined {
  if (input === undefined || input === false) return undefined
  if (!isRecord(input)) throw new InvalidOptionError(`${path} must be an object ({ token } or { authHook }), got ${typeof input}`)
  for (const key of Object.keys(input)) {
    if (!ADMIN_KEYS.includes(key)) throw new InvalidOptionError(`${path}.${key} is not a known option (known: ${ADMIN_KEYS.join(', ')})`)
  }
  const { token, prefix = DEFAULT_ADMIN_PREFIX, authHook } = input
  if (typeof prefix !== 'string' || !PREFIX_RE.test(prefix)) {
    throw new InvalidOptionError(`${path}.prefix must be a path like "/_sticky" (segments of [A-Za-z0-9._~-], no trailing slash), got ${JSON.stringify(prefix)}`)
  }
  if (token !== undefined && authHook !== undefined) throw new InvalidOptionError(`${path} takes either token or authHook, not both`)
  if (token === undefined && authHook === undefined) {
    throw new InvalidOptionError(`${path} needs a token (Authorization: Bearer) or an authHook of your own: the admin API is never open`)
  }
  if (token !== undefined && (typeof token !== 'string' || token.length < MIN_ADMIN_TOKEN_LENGTH)) {
    throw new InvalidOptionError(`${path}.token must be a string of at least ${MIN_ADMIN_TOKEN_LENGTH} characters`)
  }
  if (authHook !== undefined && typeof authHook !== 'function') throw new InvalidOptionError(`${path}.authHook must be an onRequest hook function`)
  return Object.freeze({
    prefix,
    token: token as string | undefined,
    authHook: authHook as ResolvedAdminOptions['authHook']
  })
}

/**
 * @param input - the `metrics` option
 * @returns `false`, or where to register the metrics
 * @throws FST_STICKY_INVALID_OPTION naming the option
 */
export function resolveMetricsOptions (input: unknown): ResolvedMetricsOptions {
  if (input === undefined || input === false) return false
  if (input === true) return Object.freeze({ registry: undefined })
  if (!isRecord(input)) throw new InvalidOptionError(`metrics must be a boolean or { registry }, got ${typeof input}`)
  for (const key of Object.keys(input)) {
    if (key !== 'registry') throw new InvalidOptionError(`metrics.${key} is not a known option (known: registry)`)
  }
  if (input.registry !== undefined && !isRegistry(input.registry)) throw new InvalidOptionError('metrics.registry must be a prom-client Registry')
  return Object.freeze({ registry: input.registry as Registry | undefined })
}
