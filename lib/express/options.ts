/**
 * The Express front door's options: the plugin's own (same names, same defaults, same validation, so an Express
 * and a Fastify gateway given the same options agree on every binding), less what needs a Fastify instance
 * (`admin`, `metrics`), plus what Express and node:http leave to the door: a logger and which proxies to trust.
 */
import type { IncomingMessage } from 'node:http'
import type { IpKeyOptions } from '../affinity/keys'
import type { CoreLogger } from '../core/logger'
import { InvalidOptionError } from '../errors'
import { resolveOptions, type ResolvedOptions, type StickyPluginOptions, type StickyRouteConfig } from '../options'
import { fail, isRecord } from '../options/checks'

/**
 * One source of affinity keys, as for the Fastify plugin; a function key is given the Express request (or, for an
 * upgrade, which no Express middleware sees, the plain `IncomingMessage`).
 */
export type StickyExpressKeySource =
  | 'cookie'
  | 'ip'
  | { ip: IpKeyOptions }
  | { header: string }
  | { query: string }
  | { learn: string }
  | ((request: IncomingMessage) => string | undefined)

/** A key source, an ordered list of them (the first that yields a key wins; `'cookie'` only last), or `false`. */
export type StickyExpressKeyOption = StickyExpressKeySource | readonly StickyExpressKeySource[] | false

/** Per-proxy settings (`sticky.proxy(config)`), merged over `defaults`; as the plugin's `config.sticky`. */
export interface StickyExpressRouteConfig extends Omit<StickyRouteConfig, 'key'> {
  /**
   * Affinity key.
   * @defaultValue `'cookie'`
   */
  key?: StickyExpressKeyOption
}

/**
 * Which proxies in front of the gateway to trust for the client's address, protocol and host (`X-Forwarded-For`,
 * `-Proto`, `-Host`): `false` none, `true` all, a number of hops, or a function of an address and its distance in
 * hops (0: the peer) — Express's compiled `app.get('trust proxy fn')` is one.
 */
export type StickyTrustProxy = boolean | number | ((address: string, hop: number) => boolean)

/** Options of {@link createStickyMiddleware}. */
export interface StickyExpressOptions extends Omit<StickyPluginOptions, 'defaults' | 'admin' | 'metrics' | 'cookiePlugin'> {
  /** Route settings applied to every `proxy()` unless it overrides them. */
  defaults?: StickyExpressRouteConfig
  /**
   * Where the gateway logs (warnings: Redis unreachable, upstream marked down; debug: ignored keys). pino fits.
   * @defaultValue warnings to `console.warn`, nothing else
   */
  logger?: CoreLogger
  /**
   * Trusted proxies. HTTP requests through Express use the app's `trust proxy` setting when this is absent; upgrades
   * never pass through Express, so give `app.get('trust proxy fn')` here when the app trusts proxies and routes by
   * `ip` or writes `Secure` cookies behind a TLS terminator.
   * @defaultValue Express's `trust proxy` for HTTP requests (when there is an Express app), else `false`
   */
  trustProxy?: StickyTrustProxy
}

/** What the Express door itself reads of its options, validated. */
export interface ResolvedExpressOptions {
  /** The core's options, resolved exactly as the plugin resolves them. */
  readonly core: ResolvedOptions
  readonly logger: CoreLogger
  /** `undefined`: Express's own `trust proxy` on HTTP requests, nothing on upgrades. */
  readonly trust: ((address: string, hop: number) => boolean) | undefined
}

const FASTIFY_ONLY = ['admin', 'metrics', 'cookiePlugin']

const consoleLogger: CoreLogger = Object.freeze({
  warn (fields: unknown, message?: string): void {
    if (message === undefined) console.warn(fields)
    else console.warn(message, fields)
  },
  info (): void {},
  debug (): void {}
})

/** A logger that says nothing (tests, and apps that log elsewhere). */
export const silentLogger: CoreLogger = Object.freeze({ warn () {}, info () {}, debug () {} })

function resolveTrust (input: unknown): ((address: string, hop: number) => boolean) | undefined {
  if (input === undefined) return undefined
  if (input === false) return () => false
  if (input === true) return () => true
  if (typeof input === 'number') {
    if (!Number.isSafeInteger(input) || input < 0) fail('trustProxy', 'a boolean, a whole number of hops or a function', input)
    return (_address, hop) => hop < input
  }
  if (typeof input === 'function') return input as (address: string, hop: number) => boolean
  return fail('trustProxy', 'a boolean, a whole number of hops or a function (address, hop) => boolean', input)
}

/**
 * Validates the Express door's options: the plugin's with the plugin's rules, then its own.
 * @returns frozen resolved options
 * @throws FST_STICKY_INVALID_OPTION naming the option (`admin` and `metrics` are the Fastify plugin's only)
 */
export function resolveExpressOptions (input: StickyExpressOptions): ResolvedExpressOptions {
  if (!isRecord(input)) fail('options', 'an object', input)
  const { logger, trustProxy, ...plugin } = input
  for (const key of FASTIFY_ONLY) {
    if (key in plugin) throw new InvalidOptionError(`${key} is served by the Fastify plugin only; the Express middleware has no ${key} option`)
  }
  if (logger !== undefined && !(isRecord(logger) && ['warn', 'info', 'debug'].every((m) => typeof (logger as unknown as Record<string, unknown>)[m] === 'function'))) {
    fail('logger', 'an object with warn, info and debug methods (pino fits)', logger)
  }
  // The one cast of the door: the plugin's option types name FastifyRequest as a function key's argument, and the
  // validator takes any function (the core passes it whatever request the door gives it).
  const core = resolveOptions(plugin as unknown as StickyPluginOptions)
  return Object.freeze({ core, logger: logger ?? consoleLogger, trust: resolveTrust(trustProxy) })
}
