/**
 * What the two prefix proxies (`stickyProxy` and `stickyHttpProxy`) share: the route settings a `pool` / `sticky`
 * pair stands for, and the check that the plugin they build on is registered. Both are checked at register time.
 */
import type { FastifyInstance } from 'fastify'
import { InvalidOptionError } from '../errors'
import type { StickyRouteConfig } from '../options'
import { registrationOf, type StickyRegistration } from './plugin'

/** The affinity options a prefix proxy takes. */
export interface ProxyAffinityOptions {
  /** The pool to forward to (shorthand for `sticky: { pool }`); the plugin's default pool when absent. */
  pool?: string
  /** Route settings merged over the plugin's `defaults`, as `config.sticky` on a hand-written route. */
  sticky?: true | StickyRouteConfig
}

/**
 * @param label - the plugin's name in messages (`stickyProxy`)
 * @returns the `config.sticky` for the proxy's routes
 * @throws FST_STICKY_INVALID_OPTION naming the option
 */
export function proxyRouteConfig (label: string, options: ProxyAffinityOptions): true | StickyRouteConfig {
  const { pool, sticky } = options
  if (pool !== undefined && (typeof pool !== 'string' || pool === '')) {
    throw new InvalidOptionError(`${label}.pool must be a pool name (a non-empty string)`)
  }
  if (sticky !== undefined && sticky !== true && (typeof sticky !== 'object' || sticky === null)) {
    throw new InvalidOptionError(`${label}.sticky must be true or route settings (an object)`)
  }
  if (pool === undefined) return sticky ?? true
  const own = sticky === undefined || sticky === true ? {} : sticky
  if (own.pool !== undefined && own.pool !== pool) {
    throw new InvalidOptionError(`${label}.pool names "${pool}" but ${label}.sticky.pool names "${own.pool}"`)
  }
  return { ...own, pool }
}

/**
 * @returns the registration a prefix proxy builds on
 * @throws FST_STICKY_INVALID_OPTION when fastify-sticky is not registered on this instance or a parent
 */
export function requireRegistration (label: string, fastify: FastifyInstance): StickyRegistration {
  const registration = registrationOf(fastify)
  if (registration === undefined) {
    throw new InvalidOptionError(`${label} needs the fastify-sticky plugin registered first (app.register(sticky, ...))`)
  }
  return registration
}
