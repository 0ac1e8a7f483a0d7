/**
 * fastify-sticky for Express (4 and 5) and plain node:http: the same sticky core as the Fastify plugin — same
 * options, same routing cookie, same Redis layout — behind a request handler and an `'upgrade'` listener, so
 * Express and Fastify gateways sharing one Redis, one secret and one prefix route every client alike. Forwards with
 * undici (one Agent, a connection pool per upstream origin), the HTTP client behind the plugin's
 * @fastify/reply-from, so failures reach the core's classifier with the same error codes. Loads nothing of
 * Fastify or Express.
 *
 * @packageDocumentation
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import { Agent } from 'undici'
import type { StickyDecision } from '../affinity/decision'
import { createStickyCore, type StickyCore } from '../core/sticky-core'
import { InvalidRouteConfigError } from '../errors'
import type { StickyRouteConfig } from '../options'
import type { StickyApi } from '../core/sticky-api'
import { createForwardHandler, type ForwardedRequest, type NextFunction } from './forward'
import { resolveExpressOptions, type StickyExpressOptions, type StickyExpressRouteConfig } from './options'
import { createUpgradeListener, type UpgradeListener } from './upgrade'

export type { StickyDecision, StickyDecisionKind } from '../affinity/decision'
export type { CoreLogger as StickyLogger } from '../core/logger'
export type { StickyApi, StickyPool, StickyPoolHandle } from '../core/sticky-api'
export type { StickyBindings, StickyBindingKey, StickyBindingKind, StickyBindingLookup, StickyBindingView } from '../core/bindings-api'
export type {
  Duration, StickyPoolOptions, StickyUpstreamOptions, StickyCookieOptions, StickyTimeoutOptions, StickyHealthCheckOptions,
  StickyFailoverPolicy, StickyStrategy, IpKeyOptions, ResolvedUpstream, StickyNearCacheOptions
} from '../options'
export type {
  StickyExpressOptions, StickyExpressRouteConfig, StickyExpressKeyOption, StickyExpressKeySource, StickyTrustProxy
} from './options'
export { silentLogger } from './options'
export { BodyAlreadyReadError, type ForwardedRequest, type NextFunction } from './forward'
export type { UpgradeListener } from './upgrade'

/**
 * A proxy to one route's upstreams: an Express (or node:http) request handler that answers every request itself
 * (it never calls `next()` but with an error), with the route's `'upgrade'` listener beside it.
 */
export interface StickyProxyHandler {
  /**
   * Forwards the request to its upstream (every method; bodies streamed both ways). The URL forwarded is the
   * request's whole URL (Express's `req.originalUrl`, mount path included), as the Fastify door forwards it.
   * @param next - receives an error the gateway could not answer itself (a body already read by a body parser)
   */
  (request: IncomingMessage, res: ServerResponse, next?: NextFunction): void
  /** The same route for WebSocket handshakes: `server.on('upgrade', handler.upgrade)`. */
  readonly upgrade: UpgradeListener
}

/** A running sticky gateway for Express or node:http (see {@link createStickyMiddleware}). */
export interface StickyMiddleware {
  /**
   * A proxy with its own route settings, resolved once, here.
   * @param config - `true` or absent: the `defaults`; an object merged over them; `false`: no affinity, round
   *   robin over the default pool (as `reply.forward()` outside sticky routes)
   * @throws FST_STICKY_INVALID_ROUTE_CONFIG naming the call and the option
   */
  proxy (config?: boolean | StickyExpressRouteConfig): StickyProxyHandler
  /**
   * The upgrade listener of `proxy()` (the defaults), for a gateway with one route:
   * `server.on('upgrade', sticky.upgrade)`. Read once, it is the same listener every time.
   * @throws FST_STICKY_INVALID_ROUTE_CONFIG when the defaults name no pool and there are several
   */
  readonly upgrade: UpgradeListener
  /** The programmatic API: pools, drain/undrain, session counts, runtime membership (the plugin's `app.sticky`). */
  readonly api: StickyApi
  /** @returns where a request proxied here went and why (as the plugin's `request.sticky`), once decided */
  decisionOf (request: IncomingMessage): StickyDecision | undefined
  /**
   * Ends open WebSocket tunnels, lets in-flight forwards finish, then stops the core (timers, pending touches, the
   * Redis connection it opened). Call it when the server stops: `server.close(); await sticky.close()`. Idempotent.
   */
  close (): Promise<void>
}

/**
 * Creates a sticky gateway for Express or node:http. Async, as the plugin's registration is: the binding store is
 * connected (or found unreachable and routing degraded), the shared salt read, the pools' counts loaded before the
 * first request can be routed; a bad option throws here, not at the first request.
 * @param options - the plugin's options (less `admin` and `metrics`), plus `logger` and `trustProxy`
 * @returns the gateway: `proxy()` handlers, `upgrade`, `api`, `close()`
 * @throws FST_STICKY_INVALID_OPTION naming the option; Error when a store you gave cannot start
 * @example
 * import express from 'express'
 * import { createStickyMiddleware } from 'fastify-sticky/express'
 * const sticky = await createStickyMiddleware({
 *   secret: [process.env.STICKY_SECRET!],
 *   redis: process.env.REDIS_URL,
 *   pools: { shop: { upstreams: [{ id: 'a', url: 'http://10.0.0.11:3000' }, { id: 'b', url: 'http://10.0.0.12:3000' }] } }
 * })
 * const app = express()
 * const shop = sticky.proxy({ pool: 'shop' })
 * app.use('/shop', shop)          // before any body parser
 * const server = app.listen(3000)
 * server.on('upgrade', shop.upgrade)
 */
export async function createStickyMiddleware (options: StickyExpressOptions): Promise<StickyMiddleware> {
  const resolved = resolveExpressOptions(options)
  const { core: coreOptions, logger: log, trust } = resolved
  const core: StickyCore = await createStickyCore(coreOptions, { log })
  const timeouts = coreOptions.timeouts
  const dispatcher = new Agent({
    connect: { timeout: timeouts.connectMs, rejectUnauthorized: true },
    headersTimeout: timeouts.headersMs,
    bodyTimeout: timeouts.bodyMs
  })
  const websocket = coreOptions.websocket
  const sockets = new Set<Duplex>()
  const decisions = new WeakMap<IncomingMessage, StickyDecision>()
  const forwardDeps = { core, log, dispatcher, trust, decisions }
  const upgradeDeps = {
    core,
    log,
    trust,
    sockets,
    decisions,
    tunnel: {
      connectTimeoutMs: timeouts.connectMs,
      handshakeTimeoutMs: websocket === false ? 0 : websocket.handshakeTimeoutMs,
      idleTimeoutMs: websocket === false ? 0 : websocket.idleTimeoutMs
    }
  }
  let calls = 0
  let defaultUpgrade: UpgradeListener | undefined
  let closing: Promise<void> | undefined

  function proxy (config: boolean | StickyExpressRouteConfig = true): StickyProxyHandler {
    const label = `sticky.proxy() #${++calls}`
    const route = config === false
      ? core.defaultRoute ?? badRoute(label, 'config.sticky false (no affinity) needs a default pool (defaults.pool, or a single pool)')
      // The option types name FastifyRequest as a function key's argument; the core passes whatever request it is given.
      : core.route(label, config as boolean | StickyRouteConfig) ?? badRoute(label, 'config.sticky resolved to no route')
    const handler = createForwardHandler(forwardDeps, route) as StickyProxyHandler & { upgrade: UpgradeListener }
    handler.upgrade = createUpgradeListener(upgradeDeps, route)
    return handler
  }

  return {
    proxy,
    get upgrade () {
      defaultUpgrade ??= proxy(true).upgrade
      return defaultUpgrade
    },
    api: core.api,
    decisionOf: (request) => decisions.get(request as ForwardedRequest),
    close () {
      closing ??= (async () => {
        // Open tunnels would keep server.close() waiting on their sockets.
        for (const socket of sockets) socket.destroy()
        sockets.clear()
        await dispatcher.close()
        await core.close()
      })()
      return closing
    }
  }
}

function badRoute (label: string, message: string): never {
  throw new InvalidRouteConfigError(label, message)
}
