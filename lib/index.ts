/**
 * fastify-sticky: per-route sticky sessions (session affinity) for Fastify gateways, with bindings shared by
 * every gateway through Redis (or kept in memory for one process), forwarding with @fastify/reply-from.
 *
 * @packageDocumentation
 */
import fastifyCookie from '@fastify/cookie'
import fastifyReplyFrom from '@fastify/reply-from'
import type { FastifyInstance, FastifyReply, FastifyRequest, onRequestAsyncHookHandler, RouteOptions } from 'fastify'
import fp from 'fastify-plugin'
import type { Duplex } from 'node:stream'
import { Registry } from 'prom-client'
import { instrumentCacheableStore, instrumentStore } from './admin/instrumented-store'
import { StickyMetrics } from './admin/metrics'
import { serveAdmin } from './admin/admin-listener'
import { trimOws } from './affinity/cookie-text'
import { StoreKeyIds } from './affinity/key-id'
import type { ResolvedKeySource } from './affinity/keys'
import { AffinityResolver, type StickyDecision } from './affinity/resolve'
import { createRoutingCookieCodec } from './affinity/routing-cookie'
import { ReplyFromBaseError } from './errors'
import {
  resolveOptions, resolveRouteConfig,
  type ResolvedOptions, type ResolvedRouteConfig, type StickyPluginOptions, type StickyRouteConfig
} from './options'
import { UpstreamPool } from './pool/upstream-pool'
import { createStickyApi, type StickyApi } from './sticky-api'
import { findReplyFromBase } from './proxy/reply-from-base'
import { bufferReplayableBody, createForwarder, setForwardState } from './proxy/forward'
import { HealthMonitor } from './pool/health'
import { TunnelLimits } from './proxy/tunnel-limits'
import { installUpgradeRouting, isUpgrade } from './proxy/websocket'
import type { BindingStore } from './store/binding-store'
import { MemoryBindingStore } from './store/memory-store'
import { NearCacheStore } from './store/near-cache'
import { RedisBindingStore } from './store/redis-store'
import { TouchScheduler } from './store/touch-scheduler'

export type { StickyDecision, StickyDecisionKind, AffinityStats, CookieRejection } from './affinity/resolve'
export type {
  Duration, StickyPluginOptions, StickyRouteConfig, StickyPoolOptions, StickyUpstreamOptions, StickyKeyOption,
  StickyCookieOptions, StickyTimeoutOptions, StickyHealthCheckOptions, StickyFailoverPolicy, StickyStrategy,
  StickyKeySource, IpKeyOptions, ResolvedUpstream, StickyNearCacheOptions
} from './options'
export type {
  BindingStore, Binding, BindResult, RebindResult, TouchRequest, Invalidation, UpstreamStatus, UpstreamStateChange,
  UpstreamAdminState
} from './store/binding-store'
export type { UpstreamState } from './pool/upstream-pool'
export type { StickyApi, StickyPoolHandle } from './sticky-api'
export { MemoryBindingStore, type MemoryBindingStoreOptions } from './store/memory-store'
export {
  RedisBindingStore, type RedisBindingStoreOptions, type RedisConnection, type RedisSentinelConnection,
  type RedisClusterConnection, type RedisAddress
} from './store/redis-store'
export {
  NearCacheStore, type NearCacheOptions, type NearCacheStats, type NearCacheObserver, type CacheableBindingStore,
  type ExpiringBinding
} from './store/near-cache'
export { UpstreamPool } from './pool/upstream-pool'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** `true` (plugin defaults), `false` (opt out) or settings merged over the plugin's `defaults`. */
    sticky?: boolean | StickyRouteConfig
  }
  interface FastifyInstance {
    /** fastify-sticky's programmatic API. */
    sticky: StickyApi
  }
  interface FastifyRequest {
    /** The routing decision on sticky routes (and after `reply.forward()` elsewhere); `null` before. */
    sticky: StickyDecision | null
  }
  interface FastifyReply {
    /**
     * Forwards the request to the upstream chosen for it (the bound one on sticky routes; round robin over the
     * default pool elsewhere), through @fastify/reply-from.
     * @param source - path (and query) to request upstream; the request's own URL when omitted
     * @example
     * app.all('/shop/*', { config: { sticky: { pool: 'shop' } } }, (request, reply) => reply.forward())
     */
    forward (source?: string): FastifyReply
  }
}

const STORE_WARN_INTERVAL_MS = 10_000
const kUpgradeCookie = Symbol('fastify-sticky.upgradeCookie')

// With metrics, store operations are timed; under a near cache they are timed below it (what Redis costs), and the
// near cache reports its hits and misses itself.
function createStore (options: ResolvedOptions, metrics: StickyMetrics | undefined): { store: BindingStore, owned: boolean } {
  const measured = (store: BindingStore): BindingStore => metrics === undefined ? store : instrumentStore(store, metrics)
  if (options.store !== undefined) return { store: measured(options.store), owned: false }
  if (options.redis === undefined) return { store: measured(new MemoryBindingStore({ maxBindings: options.maxBindings })), owned: true }
  const redis = new RedisBindingStore({ redis: options.redis, prefix: options.prefix })
  if (options.nearCache === false) return { store: measured(redis), owned: true }
  // The near cache closes the Redis store with itself.
  return {
    store: new NearCacheStore(metrics === undefined ? redis : instrumentCacheableStore(redis, metrics), {
      ...options.nearCache,
      ...(metrics === undefined ? {} : { observer: metrics.nearCache() })
    }),
    owned: true
  }
}

async function registerReplyFrom (fastify: FastifyInstance, options: ResolvedOptions): Promise<void> {
  if (fastify.hasReplyDecorator('from')) {
    // Someone registered reply-from already: usable only without `base`, which would pin every request.
    if (findReplyFromBase(fastify) !== undefined) throw new ReplyFromBaseError()
    return
  }
  await fastify.register(fastifyReplyFrom, {
    disableRequestLogging: true,
    undici: ({
      connect: { timeout: options.timeouts.connectMs },
      headersTimeout: options.timeouts.headersMs,
      bodyTimeout: options.timeouts.bodyMs,
      // reply-from turns TLS verification off unless told otherwise; an upstream's certificate must be checked.
      tls: { rejectUnauthorized: true }
    }) as Record<string, unknown>
  })
}

async function stickyPlugin (fastify: FastifyInstance, input: StickyPluginOptions): Promise<void> {
  const options = resolveOptions(input)
  // Metrics when asked for, and always behind the admin API (then in a registry of their own unless one was named).
  const metrics = options.metrics !== false || options.admin !== undefined
    ? new StickyMetrics({ registry: options.metrics === false ? new Registry() : options.metrics.registry })
    : undefined
  const { store, owned } = createStore(options, metrics)
  const keyIds = new StoreKeyIds(() => store.sharedSalt())
  const stopSaltWatch = store.onSaltChange((salt) => {
    keyIds.useSalt(salt)
    fastify.log.warn('fastify-sticky: the store lost its shared salt; using the one now in it')
  })
  try {
    await store.init()
    await keyIds.load()
  } catch (error) {
    // A Redis we created keeps reconnecting by itself: start degraded rather than not at all, so a gateway
    // restarted during a Redis outage still routes (cookie clients by their cookie, new ones by the balancer).
    if (!owned || options.redis === undefined) {
      throw new Error(`fastify-sticky: the binding store is not reachable at start (${(error as Error).message})`, { cause: error })
    }
    fastify.log.warn({ err: error }, 'fastify-sticky: Redis is not reachable at start; routing degraded until it is')
  }
  const pools = new Map(Object.entries(options.pools).map(([name, pool]) => [name, new UpstreamPool(name, pool, store)]))
  let lastStoreWarning = 0
  const touches = new TouchScheduler(store, (error) => { fastify.log.debug({ err: error }, 'fastify-sticky: touching bindings failed') })
  const codec = createRoutingCookieCodec(options.secrets)
  const resolver = new AffinityResolver({
    store,
    pools,
    codec,
    keyIds,
    touches,
    newBindings: options.newBindings
  })
  const health = new HealthMonitor(store, pools, fastify.log, options.timeouts.connectMs)
  await Promise.all([...pools.values()].map((pool) => pool.refreshCounts()))
  await health.start()

  if (!fastify.hasPlugin('@fastify/cookie')) await fastify.register(fastifyCookie)
  await registerReplyFrom(fastify, options)

  const api = createStickyApi({ store, pools, stats: resolver.stats, log: fastify.log })
  fastify.decorate('sticky', api)
  fastify.decorateRequest('sticky', null)
  metrics?.attach(api)
  if (options.admin !== undefined) {
    // On the app under its prefix, or (admin.listen) only on a listener of its own, started in onReady, closed in onClose.
    await serveAdmin(fastify, options.admin, {
      api,
      verifyRoutingCookie: (value) => {
        const check = codec.verify(value)
        return check.ok ? check.token : null
      },
      keyIdOf: (rawKey) => keyIds.derive(rawKey),
      registry: metrics?.registry
    })
  }

  const cookie = options.cookie
  const setRoutingCookie = (request: FastifyRequest, reply: FastifyReply, pool: string, value: string): void => {
    const attributes = {
      path: cookie.path,
      domain: cookie.domain,
      maxAge: cookie.maxAgeSeconds,
      sameSite: cookie.sameSite,
      httpOnly: true,
      secure: cookie.secure === 'auto' ? request.protocol === 'https' : cookie.secure
    } as const
    if (isUpgrade(request)) {
      // An upgrade's answer is the upstream's 101, written by the tunnel, not by Fastify: keep the cookie for it
      // (the last one wins, as a failover may replace it).
      (request as unknown as Record<symbol, string>)[kUpgradeCookie] = fastify.serializeCookie(options.pools[pool].cookieName, value, attributes)
      return
    }
    reply.setCookie(options.pools[pool].cookieName, value, attributes)
  }
  const upgradeCookies = (request: FastifyRequest): readonly string[] => {
    const value = (request as unknown as Record<symbol, string | undefined>)[kUpgradeCookie]
    return value === undefined ? [] : [value]
  }

  // reply.forward() outside sticky routes balances over the default pool, when one can be named.
  let defaultRoute: ResolvedRouteConfig | null
  try {
    defaultRoute = resolveRouteConfig('(default)', { key: false }, options)
  } catch {
    defaultRoute = null
  }
  const tunnelSockets = new Set<Duplex>()
  const forwarder = createForwarder({
    resolver,
    health,
    reboundHeader: options.reboundHeader,
    defaultRoute,
    setRoutingCookie,
    stripCookies: cookie.forward ? [] : Object.values(options.pools).map((pool) => pool.cookieName),
    xForwarded: options.xForwarded,
    tunnels: {
      options: {
        connectTimeoutMs: options.timeouts.connectMs,
        handshakeTimeoutMs: options.websocket === false ? 0 : options.websocket.handshakeTimeoutMs,
        idleTimeoutMs: options.websocket === false ? 0 : options.websocket.idleTimeoutMs
      },
      sockets: tunnelSockets,
      limits: options.websocket === false ? new TunnelLimits(0, 0) : new TunnelLimits(options.websocket.maxTunnels, options.websocket.maxTunnelsPerClient),
      setCookies: upgradeCookies
    },
    onForwardError: metrics?.onForwardError
  })
  if (options.websocket !== false) installUpgradeRouting(fastify, tunnelSockets)
  fastify.decorateReply('forward', forwarder.forward)

  const makeHook = (route: ResolvedRouteConfig): onRequestAsyncHookHandler => {
    if (route.key === false) {
      return async function stickyBalance (request: FastifyRequest, reply: FastifyReply) {
        const sticky = resolver.resolveWithoutAffinity(route)
        if (sticky === null) return forwarder.sendUnavailable(reply, route.pool, 'no-upstream')
        request.sticky = sticky
        setForwardState(request, { route, binding: undefined, retried: false, unreached: 0, source: undefined, setsCookie: false, learn: undefined })
      }
    }
    const sources = route.key
    const cookieName = options.pools[route.pool].cookieName
    const cookieOnly = sources.length === 1 && sources[0].kind === 'cookie'
    const usesCookie = sources[sources.length - 1].kind === 'cookie'
    const learn = sources.find((source): source is Extract<ResolvedKeySource, { kind: 'learn' }> => source.kind === 'learn')
    return async function stickyAffinity (request: FastifyRequest, reply: FastifyReply) {
      const cookies = request.cookies ?? fastify.parseCookie(request.headers.cookie ?? '')
      let value = usesCookie ? cookies[cookieName] : undefined
      const header = request.headers.cookie
      // Several cookies of one name (a stale one set for another path, say): use the first that verifies. Searched
      // without '=': the parser trims names, so `sticky =x` is a routing cookie too.
      if (value !== undefined && header !== undefined && header.indexOf(cookieName) !== header.lastIndexOf(cookieName)) {
        value = resolver.firstValidCookie(cookieValues(header, cookieName, MAX_ROUTING_COOKIE_CANDIDATES)) ?? value
      }
      const result = cookieOnly
        ? await resolver.resolveCookie(route, value, request.ip)
        : await resolver.resolve(route, sources, { ip: request.ip, headers: request.headers, query: request.query, cookies, request }, value)
      if (result.rejected !== undefined) request.log.debug({ reason: result.rejected }, 'fastify-sticky: affinity key ignored')
      if (result.storeError !== undefined) {
        const now = Date.now()
        if (now - lastStoreWarning > STORE_WARN_INTERVAL_MS) {
          lastStoreWarning = now
          request.log.warn({ err: result.storeError }, 'fastify-sticky: binding store failed; routing from cookies and the balancer')
        }
      }
      if (result.sticky === null) return forwarder.sendUnavailable(reply, route.pool, result.failure ?? 'no-upstream')
      request.sticky = result.sticky
      request.log.debug({ pool: route.pool, upstream: result.sticky.upstream.id, decision: result.sticky.decision }, 'fastify-sticky: routed')
      setForwardState(request, {
        route,
        binding: result.binding,
        retried: false,
        unreached: 0,
        source: undefined,
        setsCookie: result.setCookie !== undefined,
        learn: learn === undefined ? undefined : { source: learn, requestValue: cookies[learn.cookie] }
      })
      if (result.setCookie !== undefined) setRoutingCookie(request, reply, route.pool, result.setCookie)
    }
  }
  const replayBodyLimit = options.replayBodyLimit
  const bufferBody = async (request: FastifyRequest): Promise<void> => bufferReplayableBody(request, replayBodyLimit)

  fastify.addHook('onRoute', (routeOptions: RouteOptions) => {
    const methods = Array.isArray(routeOptions.method) ? routeOptions.method.join(',') : routeOptions.method
    const route = resolveRouteConfig(`${methods} ${routeOptions.url}`, routeOptions.config?.sticky, options)
    if (route === null) return
    routeOptions.onRequest = appendHook(routeOptions.onRequest, makeHook(route))
    if (metrics !== undefined) routeOptions.onResponse = appendHook(routeOptions.onResponse, metrics.responseHook(routeOptions.url, route.pool))
    if (replayBodyLimit > 0) routeOptions.preHandler = appendHook(routeOptions.preHandler, bufferBody)
  })

  // Open tunnels would keep server.close() waiting: end them as the gateway closes.
  fastify.addHook('preClose', async () => {
    for (const socket of tunnelSockets) socket.destroy()
    tunnelSockets.clear()
  })

  fastify.addHook('onClose', async () => {
    stopSaltWatch()
    health.stop()
    await touches.flush()
    if (owned) await store.close()
    metrics?.unregister()
  })
}

/**
 * Most routing cookies of one name verified per request: browsers send a few at most (one per path or domain), and
 * each costs an HMAC, so a header stuffed with copies (about 1,400 fit in 16 KiB) must not cost one per copy.
 */
const MAX_ROUTING_COOKIE_CANDIDATES = 8

// The first `limit` values of one cookie name in a Cookie header, decoded as @fastify/cookie decodes them.
function cookieValues (header: string, name: string, limit: number): string[] {
  const values: string[] = []
  for (const pair of header.split(';')) {
    if (values.length >= limit) break
    const eq = pair.indexOf('=')
    if (eq < 0 || trimOws(pair.slice(0, eq)) !== name) continue
    const raw = trimOws(pair.slice(eq + 1))
    try {
      values.push(decodeURIComponent(raw))
    } catch {
      values.push(raw)
    }
  }
  return values
}

function appendHook<T> (existing: T | T[] | undefined, hook: T): T[] {
  return existing === undefined ? [hook] : [...(Array.isArray(existing) ? existing : [existing]), hook]
}

/**
 * The fastify-sticky plugin. Register it before the routes that use it.
 * @example
 * import Fastify from 'fastify'
 * import sticky from 'fastify-sticky'
 * const app = Fastify({ trustProxy: true })
 * await app.register(sticky, {
 *   secret: [process.env.STICKY_SECRET!],
 *   redis: process.env.REDIS_URL,
 *   pools: { shop: { upstreams: [{ id: 'a', url: 'http://10.0.0.11:3000' }, { id: 'b', url: 'http://10.0.0.12:3000' }] } }
 * })
 * app.all('/shop/*', { config: { sticky: { pool: 'shop' } } }, (request, reply) => reply.forward())
 */
const sticky = fp(stickyPlugin, { fastify: '5.x', name: 'fastify-sticky' })

export default sticky
export { sticky }

// `require('fastify-sticky')` is the plugin itself, as with other Fastify plugins; `default`, `sticky` and the
// other named exports stay reachable as its properties (Node still finds them for ES module importers).
module.exports = Object.assign(sticky, module.exports)
