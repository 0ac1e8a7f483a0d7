/**
 * fastify-sticky: per-route sticky sessions (session affinity) for Fastify gateways, with bindings shared by
 * every gateway through Redis (or kept in memory for one process), forwarding with @fastify/reply-from.
 *
 * @packageDocumentation
 */
import fp from 'fastify-plugin'
import type { StickyDecision } from './affinity/decision'
import type { StickyRouteConfig } from './options'
import type { StickyApi } from './core/sticky-api'
import { stickyPlugin } from './fastify/plugin'

export type { StickyDecision, StickyDecisionKind, AffinityStats, CookieRejection } from './affinity/decision'
export type {
  Duration, StickyPluginOptions, StickyRouteConfig, StickyPoolOptions, StickyUpstreamOptions, StickyKeyOption,
  StickyCookieOptions, StickyTimeoutOptions, StickyHealthCheckOptions, StickyFailoverPolicy, StickyStrategy,
  StickyKeySource, IpKeyOptions, ResolvedUpstream, StickyNearCacheOptions, StickyPoolCookieOptions, StickyHandoffOptions
} from './options'
export type {
  BindingStore, Binding, BindResult, RebindResult, TouchRequest, Invalidation, UpstreamStatus, UpstreamStateChange,
  UpstreamAdminState
} from './store/binding-store'
export type { UpstreamState } from './pool/upstream-pool'
export type { StickyApi, StickyPool, StickyPoolHandle, StickyAdminListener } from './core/sticky-api'
export type { StickyBindings, StickyBindingKey, StickyBindingKind, StickyBindingLookup, StickyBindingMoveOptions, StickyBindingView } from './core/bindings-api'
export { MemoryBindingStore, type MemoryBindingStoreOptions } from './store/memory-store'
export {
  RedisBindingStore, type RedisBindingStoreOptions, type RedisConnection, type RedisSentinelConnection,
  type RedisClusterConnection, type RedisAddress
} from './store/redis-store'
export {
  NearCacheStore, type NearCacheOptions, type NearCacheStats, type NearCacheObserver, type CacheableBindingStore,
  type ExpiringBinding
} from './store/near-cache'
export { stickyProxy, type StickyProxyOptions } from './fastify/prefix-proxy'
export type { ProxyAffinityOptions } from './fastify/proxy-route'
export type { StickyReloadResult } from './admin/admin-options'
export type { MoveFailure } from './core/session-mover'
export type { SessionMoveJob, MoveJobOptions } from './core/move-jobs'

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

// `require('fastify-sticky')` is this module's exports object: `app.register()` takes it as it is (Fastify uses a
// registered object's function `default`), and `{ sticky }` names the plugin itself.
export default sticky
export { sticky }
