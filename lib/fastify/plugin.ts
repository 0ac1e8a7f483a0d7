/**
 * The Fastify front door: registers the core, @fastify/cookie and @fastify/reply-from (when missing), the affinity
 * hook on sticky routes (resolved once, in `onRoute`), `reply.forward()`, upgrade routing, and the admin API.
 */
import fastifyCookie from '@fastify/cookie'
import fastifyReplyFrom, { type FastifyReplyFromOptions } from '@fastify/reply-from'
import type { FastifyInstance, onRequestHookHandler, onResponseHookHandler, preHandlerHookHandler, RouteOptions } from 'fastify'
import type { Duplex } from 'node:stream'
import { Registry } from 'prom-client'
import { serveAdmin } from '../admin/admin-listener'
import { StickyMetrics } from '../admin/metrics'
import { createStickyCore } from '../core/sticky-core'
import { ReplyFromBaseError } from '../errors'
import { resolveOptions, type ResolvedOptions, type ResolvedRouteConfig, type StickyPluginOptions, type StickyRouteConfig } from '../options'
import { affinityHook } from './affinity-hook'
import { bufferReplayableBody, createForwarder, hasReplayableBody } from './forward'
import { findReplyFromBase } from './reply-from-base'
import { createRoutingCookieWriter } from './routing-cookie-writer'
import { installUpgradeRouting } from './websocket'

// The settings of every reply-from instance a sticky request goes through (ours, or @fastify/http-proxy's own).
function replyFromOptions (options: ResolvedOptions): FastifyReplyFromOptions {
  return {
    disableRequestLogging: true,
    undici: ({
      connect: { timeout: options.timeouts.connectMs },
      headersTimeout: options.timeouts.headersMs,
      bodyTimeout: options.timeouts.bodyMs,
      // reply-from turns TLS verification off unless told otherwise; an upstream's certificate must be checked.
      tls: { rejectUnauthorized: true }
    }) as Record<string, unknown>
  }
}

async function registerReplyFrom (fastify: FastifyInstance, options: FastifyReplyFromOptions): Promise<void> {
  if (fastify.hasReplyDecorator('from')) {
    // Someone registered reply-from already: usable only without `base`, which would pin every request.
    if (findReplyFromBase(fastify) !== undefined) throw new ReplyFromBaseError()
    return
  }
  await fastify.register(fastifyReplyFrom, options)
}

function appendHook<T> (existing: T | T[] | undefined, hook: T): T[] {
  return existing === undefined ? [hook] : [...(Array.isArray(existing) ? existing : [existing]), hook]
}

/** The plugin function (wrapped with fastify-plugin in `lib/index.ts`). */
export async function stickyPlugin (fastify: FastifyInstance, input: StickyPluginOptions): Promise<void> {
  const options = resolveOptions(input)
  // Metrics when asked for, and always behind the admin API (then in a registry of their own unless one was named).
  const metrics = options.metrics !== false || options.admin !== undefined
    ? new StickyMetrics({ registry: options.metrics === false ? new Registry() : options.metrics.registry })
    : undefined
  const core = await createStickyCore(options, { log: fastify.log, metrics })

  if (options.cookiePlugin && !fastify.hasPlugin('@fastify/cookie')) await fastify.register(fastifyCookie)
  const cookies = createRoutingCookieWriter(core, fastify.hasPlugin('@fastify/cookie'))
  const fromOptions = replyFromOptions(options)
  await registerReplyFrom(fastify, fromOptions)

  fastify.decorate('sticky', core.api)
  fastify.decorateRequest('sticky', null)
  if (options.admin !== undefined) {
    // On the app under its prefix, or (admin.listen) only on a listener of its own, started in onReady, closed in onClose.
    await serveAdmin(fastify, options.admin, {
      api: core.api,
      registry: metrics?.registry
    })
  }

  const tunnelSockets = new Set<Duplex>()
  const forwarder = createForwarder(core, {
    tunnels: {
      options: {
        connectTimeoutMs: options.timeouts.connectMs,
        handshakeTimeoutMs: options.websocket === false ? 0 : options.websocket.handshakeTimeoutMs,
        idleTimeoutMs: options.websocket === false ? 0 : options.websocket.idleTimeoutMs
      },
      sockets: tunnelSockets
    },
    cookies
  })
  if (options.websocket !== false) installUpgradeRouting(fastify, tunnelSockets)
  fastify.decorateReply('forward', forwarder.forward)

  const replayBodyLimit = options.replayBodyLimit
  // A callback hook, not an async one: most requests have no body to buffer and go on at once, without a promise
  // and a microtask each.
  const bufferBody: preHandlerHookHandler = (request, _reply, done) => {
    if (!hasReplayableBody(request, replayBodyLimit)) {
      done()
      return
    }
    bufferReplayableBody(request, replayBodyLimit).then(() => { done() }, done)
  }
  // One resolution for Fastify routes (onRoute) and for a router of its own (the gateway's reloadable route table).
  const stickyRoute = (label: string, metricsLabel: string, config: boolean | StickyRouteConfig | undefined): StickyRouteHooks | null => {
    const route = core.route(label, config)
    if (route === null) return null
    return Object.freeze({
      route,
      onRequest: affinityHook(core, route, cookies),
      preHandler: replayBodyLimit > 0 ? bufferBody : undefined,
      onResponse: metrics?.responseHook(metricsLabel, route.pool)
    })
  }
  const registration: StickyRegistration = Object.freeze({
    replyFromOptions: fromOptions,
    websocket: options.websocket !== false,
    routeHooks: (label: string, config: boolean | StickyRouteConfig | undefined) => stickyRoute(label, label, config),
    openTunnels: () => tunnelSockets.size
  })
  fastify.decorate(kRegistration as unknown as string, registration)

  fastify.addHook('onRoute', (routeOptions: RouteOptions) => {
    const methods = Array.isArray(routeOptions.method) ? routeOptions.method.join(',') : routeOptions.method
    const hooks = stickyRoute(`${methods} ${routeOptions.url}`, routeOptions.url, routeOptions.config?.sticky)
    if (hooks === null) return
    routeOptions.onRequest = appendHook(routeOptions.onRequest, hooks.onRequest)
    if (hooks.onResponse !== undefined) routeOptions.onResponse = appendHook(routeOptions.onResponse, hooks.onResponse)
    if (hooks.preHandler !== undefined) routeOptions.preHandler = appendHook(routeOptions.preHandler, hooks.preHandler)
  })

  // Open tunnels would keep server.close() waiting: end them as the gateway closes.
  fastify.addHook('preClose', async () => {
    for (const socket of tunnelSockets) socket.destroy()
    tunnelSockets.clear()
  })

  fastify.addHook('onClose', async () => {
    await core.close()
    metrics?.unregister()
  })
}

/** The hooks a sticky route runs, resolved from its `config.sticky` as `onRoute` does. */
export interface StickyRouteHooks {
  readonly route: ResolvedRouteConfig
  /** Decides the upstream (and the routing cookie), or answers a problem (a callback hook). */
  readonly onRequest: onRequestHookHandler
  /** Buffers a small body so the request can be replayed on failover; `undefined` when `replayBodyLimit` is 0. */
  readonly preHandler: preHandlerHookHandler | undefined
  /** Counts the response in the metrics; `undefined` without metrics. */
  readonly onResponse: onResponseHookHandler | undefined
}

/** What the @fastify/http-proxy integration and the gateway's router need from the plugin registration they build on. */
export interface StickyRegistration {
  /** Options for any other reply-from instance a sticky request goes through (timeouts, TLS checks, logging). */
  readonly replyFromOptions: FastifyReplyFromOptions
  /** Whether upgrades are routed to sticky routes (the plugin's `websocket` is not `false`). */
  readonly websocket: boolean
  /**
   * Resolves a sticky route outside Fastify's router (for a route table that changes at run time).
   * @param label - names the route in errors and metrics
   * @param config - as a route's `config.sticky`
   * @returns its hooks, or `null` when `config` opts out
   * @throws FST_STICKY_INVALID_ROUTE_CONFIG naming `label` and the option
   */
  routeHooks (label: string, config: boolean | StickyRouteConfig | undefined): StickyRouteHooks | null
  /** @returns how many WebSocket tunnels are open now */
  openTunnels (): number
}

/** Where a registration keeps its {@link StickyRegistration} on the Fastify instance. */
export const kRegistration = Symbol.for('fastify-sticky.registration')

/** @returns the registration of fastify-sticky this instance (or a parent) has, if any */
export function registrationOf (fastify: FastifyInstance): StickyRegistration | undefined {
  return (fastify as unknown as Record<symbol, StickyRegistration | undefined>)[kRegistration]
}
