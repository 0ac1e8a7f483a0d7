/**
 * The plugin's `admin` and `metrics` options: their types and validation (called from `resolveOptions`, and by
 * {@link adminRoutes} for direct registrations). Errors name the dotted option path.
 */
import type { onRequestAsyncHookHandler, onRequestHookHandler } from 'fastify'
import net from 'node:net'
import type { Registry } from 'prom-client'
import { InvalidOptionError } from '../errors'
import { show } from '../options/checks'

/** Where the admin API is mounted unless told otherwise. */
export const DEFAULT_ADMIN_PREFIX = '/_sticky'

/** Shortest admin token accepted. */
export const MIN_ADMIN_TOKEN_LENGTH = 16

/** Where the admin listener binds unless told otherwise: loopback only. */
export const DEFAULT_ADMIN_LISTEN_HOST = '127.0.0.1'

/** A listener of the admin API's own (`admin.listen`). */
export interface StickyAdminListenOptions {
  /** Port to listen on; `0` picks a free one (read it from `app.sticky.admin.address`). */
  port: number
  /**
   * Address or host name to bind.
   * @defaultValue `'127.0.0.1'`
   */
  host?: string
}

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
  /**
   * Serve the admin API, the status page and the metrics on a listener of their own (a separate Fastify instance,
   * started when the app is ready and closed with it) and not on the app at all: proxied applications then never
   * share the admin API's origin, so their pages' scripts cannot call it or read the status page. Without it, the
   * admin routes are the app's own, under `prefix`.
   * @defaultValue off (the admin routes are served by the app itself)
   */
  listen?: StickyAdminListenOptions
  /**
   * Serves `POST <prefix>/reload` (behind the same auth, as a state-changing request): it calls this and answers its
   * result, 200 when `reloaded`, 422 with `reason` when the new configuration was refused. The `fastify-sticky`
   * command sets it to re-read its config file.
   */
  reload?: () => Promise<StickyReloadResult>
}

/** What an `admin.reload` function reports. */
export interface StickyReloadResult {
  /** `false` when the new configuration was refused and the running one kept. */
  readonly reloaded: boolean
  /** Why it was refused (safe to show an operator: no secrets). */
  readonly reason?: string
  /** What changed, one short line each. */
  readonly changes?: readonly string[]
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
  /** `undefined`: the admin routes are the app's own. */
  readonly listen: { readonly port: number, readonly host: string } | undefined
  /** `undefined`: no `POST /reload`. */
  readonly reload: (() => Promise<StickyReloadResult>) | undefined
}

/** `metrics` after validation: `false`, or where to register (`undefined`: the global registry). */
export type ResolvedMetricsOptions = false | { readonly registry: Registry | undefined }

const ADMIN_KEYS = ['token', 'prefix', 'authHook', 'listen', 'reload']
const LISTEN_KEYS = ['port', 'host']
// RFC 1123 host names; addresses are checked with net.isIP.
const HOST_NAME_RE = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/
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
  const { token, prefix = DEFAULT_ADMIN_PREFIX, authHook, listen, reload } = input
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
  if (reload !== undefined && typeof reload !== 'function') throw new InvalidOptionError(`${path}.reload must be a function returning a promise of { reloaded, reason?, changes? }`)
  return Object.freeze({
    reload: reload as ResolvedAdminOptions['reload'],
    prefix,
    token: token as string | undefined,
    authHook: authHook as ResolvedAdminOptions['authHook'],
    listen: resolveAdminListen(listen, `${path}.listen`)
  })
}

/**
 * @param input - the `admin.listen` option
 * @param path - its dotted path, for messages
 * @returns the port and host to bind, or `undefined` when the admin routes are the app's own
 * @throws FST_STICKY_INVALID_OPTION naming `admin.listen.port` or `admin.listen.host`
 */
export function resolveAdminListen (input: unknown, path = 'admin.listen'): ResolvedAdminOptions['listen'] {
  if (input === undefined) return undefined
  if (!isRecord(input)) throw new InvalidOptionError(`${path} must be an object { port, host? }, got ${show(input)}`)
  for (const key of Object.keys(input)) {
    if (!LISTEN_KEYS.includes(key)) throw new InvalidOptionError(`${path}.${key} is not a known option (known: ${LISTEN_KEYS.join(', ')})`)
  }
  const { port, host = DEFAULT_ADMIN_LISTEN_HOST } = input
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new InvalidOptionError(`${path}.port must be a port number from 0 to 65535 (0: any free port), got ${show(port)}`)
  }
  if (typeof host !== 'string' || (net.isIP(host) === 0 && !HOST_NAME_RE.test(host))) {
    throw new InvalidOptionError(`${path}.host must be an IP address or a host name, got ${show(host)}`)
  }
  return Object.freeze({ port, host })
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
