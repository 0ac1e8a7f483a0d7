/**
 * The option types, plugin and route, as users write them and as they are after validation. A leaf: it imports
 * types only, and nothing imports back into it, so validators and every front door can depend on it.
 */
import type { FastifyRequest } from 'fastify'
import type { ResolvedKeySource, StickyKeySource } from '../affinity/keys'
import type { ResolvedAdminOptions, ResolvedMetricsOptions, StickyAdminOptions, StickyMetricsOption } from '../admin/admin-options'
import type { Duration } from '../duration'
import type { BindingStore } from '../store/binding-store'
import type { RedisConnection } from '../store/redis-store'
import type { ResolvedWebSocketOptions, ResolvedXForwarded, StickyWebSocketOptions, StickyXForwardedOptions } from './edge'
import type { ResolvedHandoff, StickyHandoffOptions } from './handoff'
import type { ResolvedNewBindings, StickyNewBindingsOptions } from './new-bindings'

/** One upstream server of a pool. */
export interface StickyUpstreamOptions {
  /** Short stable id, `[A-Za-z0-9_-]{1,32}`; it is what the routing cookie carries, never the URL. */
  id: string
  /** Base URL of the upstream (`http:` or `https:`), e.g. `http://10.0.0.11:3000`. */
  url: string
  /**
   * Relative share of new sessions.
   * @defaultValue 1
   */
  weight?: number
  /** Most live sessions it takes; a full upstream gets no new sessions (see the pool's `overflow`). */
  maxSessions?: number
}

/** Active health probes of a pool's upstreams (every gateway probes; the verdict is shared through the store). */
export interface StickyHealthCheckOptions {
  /** Path requested with GET; any 2xx or 3xx answer is healthy. */
  path: string
  /** @defaultValue `'5s'` */
  interval?: Duration
  /** @defaultValue `'2s'` */
  timeout?: Duration
  /** Consecutive successes that bring a down upstream back. @defaultValue 2 */
  healthyThreshold?: number
  /** Consecutive failures that take an upstream down. @defaultValue 2 */
  unhealthyThreshold?: number
}

/** A named group of interchangeable upstreams. */
export interface StickyPoolOptions {
  /** At least one upstream; ids unique within the pool. */
  upstreams: StickyUpstreamOptions[]
  /** Active probes; without them a down upstream is retried (TCP connect) after `cooldown`. */
  healthCheck?: StickyHealthCheckOptions
  /**
   * How long a down upstream rests before a reachability retry, when there are no active probes.
   * @defaultValue `'10s'`
   */
  cooldown?: Duration
  /**
   * A newly active upstream's share of new sessions ramps up linearly over this window; `0` turns it off.
   * @defaultValue 0
   */
  slowStart?: Duration | 0
  /**
   * How new sessions are spread: `least-sessions` (fewest live sessions per weight, store-wide),
   * `weighted-round-robin`, `random-two-choices` (the less loaded of two weighted random picks) or `hash`
   * (rendezvous hashing of the key with bounded loads: stateless, and the same answer on every gateway).
   * @defaultValue `'least-sessions'`
   */
  strategy?: StickyStrategy
  /**
   * With `hash`: an upstream whose sessions exceed this factor of the (weighted) mean is skipped.
   * @defaultValue 1.25
   */
  loadFactor?: number
  /**
   * When every upstream has reached its `maxSessions`: `'reject'` answers 503, `'least-loaded'` overflows to
   * the least loaded one.
   * @defaultValue `'reject'`
   */
  overflow?: 'reject' | 'least-loaded'
  /**
   * This pool's routing cookie, where it differs from the plugin's `cookie` (a Gateway API `sessionPersistence`
   * carried over per route sets these).
   */
  cookie?: StickyPoolCookieOptions
}

/** A pool's own routing cookie name, path and lifetime, over the plugin's `cookie`. */
export interface StickyPoolCookieOptions {
  /** @defaultValue `cookie.name` for the first (default) pool, `<cookie.name>-<pool>` for the others */
  name?: string
  /** @defaultValue `cookie.path` */
  path?: string
  /** Cookie `Max-Age`; `0` makes it a session cookie even when `cookie.maxAge` is set. @defaultValue `cookie.maxAge` */
  maxAge?: Duration | 0
}

/** How a pool spreads new sessions. */
export type StickyStrategy = 'least-sessions' | 'weighted-round-robin' | 'random-two-choices' | 'hash'

/**
 * What to do when a client's upstream is down: `'rebind'` moves the session to another upstream (every gateway
 * agrees through a compare-and-set) and tells the app with the rebound header; `'strict'` answers 503 and keeps
 * the binding, for apps that must never silently move a session.
 */
export type StickyFailoverPolicy = 'rebind' | 'strict'

/**
 * Where the affinity key comes from: one {@link StickyKeySource}, an ordered list of them (the first that yields
 * a key wins; `'cookie'` can only come last), or `false` (no affinity: round robin, weights respected).
 */
export type StickyKeyOption = StickyKeySource<FastifyRequest> | ReadonlyArray<StickyKeySource<FastifyRequest>> | false

/** Per-route settings, merged over the plugin's `defaults`. */
export interface StickyRouteConfig {
  /** Pool to route to; may be omitted when the plugin has exactly one pool. */
  pool?: string
  /**
   * Affinity key.
   * @defaultValue `'cookie'`
   */
  key?: StickyKeyOption
  /**
   * A binding unused this long expires (sliding).
   * @defaultValue `'30m'`
   */
  idleTimeout?: Duration
  /**
   * A binding expires this long after it was created, however active.
   * @defaultValue `'12h'`
   */
  maxLifetime?: Duration
  /** @defaultValue `'rebind'` */
  failover?: StickyFailoverPolicy
  /**
   * This route's upstream response timeout (headers, and the longest pause between body chunks), overriding the
   * plugin's `timeouts`; `0` disables it, for long polling and Server-Sent Events without heartbeats.
   */
  timeout?: Duration | 0
}

/** Attributes of the routing cookie. */
export interface StickyCookieOptions {
  /** @defaultValue `'sticky'` */
  name?: string
  /** @defaultValue `'/'` */
  path?: string
  /** Cookie `Domain`; host-only when omitted. */
  domain?: string
  /** Cookie `Max-Age`; a session cookie when omitted. */
  maxAge?: Duration
  /** @defaultValue `'lax'` */
  sameSite?: 'lax' | 'strict' | 'none'
  /**
   * `'auto'` sets `Secure` when the request is HTTPS as seen through Fastify's `trustProxy`.
   * @defaultValue `'auto'`
   */
  secure?: 'auto' | boolean
  /**
   * Whether the routing cookie is passed on to upstreams; by default it is removed from the request first
   * (like HAProxy's `indirect`), so apps never see it.
   * @defaultValue false
   */
  forward?: boolean
}

/** Upstream timeouts; undici's 300 s defaults are never used. */
export interface StickyTimeoutOptions {
  /** @defaultValue `'5s'` */
  connect?: Duration
  /** Time to the upstream's response headers. @defaultValue `'60s'` */
  headers?: Duration
  /** Longest pause between two body chunks. @defaultValue `'60s'` */
  body?: Duration
}

/** The near cache in front of Redis (see docs/operating.md "The near cache"). */
export interface StickyNearCacheOptions {
  /** Most bindings kept per gateway; the least recently used is dropped first. @defaultValue 100000 */
  maxEntries?: number
  /**
   * Safety TTL: the longest a cached binding is used without reading Redis again. It bounds the effect of an
   * invalidation lost while the subscription stayed up; a shorter one costs one more `GET`+`PTTL` per client per TTL.
   * @defaultValue `'10s'`
   */
  ttl?: Duration
}

/** Options of the fastify-sticky plugin. */
export interface StickyPluginOptions {
  /** Secret(s) of the routing cookie's HMAC, each at least 32 characters; the first signs, all verify (newest first). */
  secret: string | readonly string[]
  /** Named pools of upstreams. */
  pools: Record<string, StickyPoolOptions>
  /**
   * Redis: a `redis://`/`rediss://` URL, `{ sentinels, name }` (Redis behind Sentinel) or `{ cluster: nodes }` (Redis
   * Cluster) — the plugin creates a fail-fast client for these — or an ioredis `Redis`/`Cluster` instance (which you
   * own and close). Omitted (and no `store`) → in-memory store for one process.
   */
  redis?: RedisConnection
  /**
   * A local cache of bindings in front of Redis, invalidated on every gateway through Redis pub/sub; `false` turns it
   * off (every request then reads Redis). Only with `redis`.
   * @defaultValue `{ maxEntries: 100000, ttl: '10s' }`
   */
  nearCache?: false | StickyNearCacheOptions
  /** A ready {@link BindingStore} (instead of `redis`). The plugin does not close a store it was given. */
  store?: BindingStore
  /** Redis key prefix; gateways that must agree use the same one. @defaultValue `'sticky:'` */
  prefix?: string
  /** Route settings applied to every sticky route unless the route overrides them. */
  defaults?: StickyRouteConfig
  /** Routing cookie attributes. */
  cookie?: StickyCookieOptions
  /** Upstream timeouts (applied when fastify-sticky registers @fastify/reply-from itself). */
  timeouts?: StickyTimeoutOptions
  /** Most bindings the in-memory store keeps. @defaultValue 100000 */
  maxBindings?: number
  /** Request header set on requests whose session moved to another upstream; `false` sends none. @defaultValue `'x-sticky-rebound'` */
  reboundHeader?: string | false
  /** Largest request body (bytes) buffered so the request can be retried on another upstream; 0 turns buffering off. @defaultValue 65536 */
  replayBodyLimit?: number
  /**
   * Register @fastify/cookie when the app has not registered it, so your routes (and an admin `authHook` on the
   * app's prefix) have `request.cookies` and `reply.setCookie`. fastify-sticky reads and writes its own cookie
   * without it; `false` spares every request its two hooks (a Cookie parse and an onSend pass), as the
   * `fastify-sticky` command does. Fastify plugin only.
   * @defaultValue true
   */
  cookiePlugin?: boolean
  /**
   * Write `X-Forwarded-For` (the hops `trustProxy` trusts, then the peer), `X-Forwarded-Proto` and `X-Forwarded-Host`
   * on forwarded requests, replacing what the client sent (client-sent `Forwarded`, `X-Real-IP`, `X-Forwarded-Port`,
   * `X-Original-URL` and `X-Rewrite-URL` are removed); `{ allowedHosts }` passes on only those hosts.
   * `false` forwards the client's headers untouched. @defaultValue true
   */
  xForwarded?: boolean | StickyXForwardedOptions
  /** The admin API and status page under `prefix` (default `/_sticky`), behind `token` or your own `authHook`. Off by default. */
  admin?: StickyAdminOptions
  /** Prometheus metrics: `true` (prom-client's global registry) or `{ registry }`. @defaultValue false */
  metrics?: StickyMetricsOption
  /**
   * WebSocket (upgrade) proxying on routes that call `reply.forward()`; `false` leaves upgrades alone (for
   * example to @fastify/websocket).
   * @defaultValue `{ handshakeTimeout: '10s', idleTimeout: '15m', maxTunnels: 10000, maxTunnelsPerClient: 256 }`
   */
  websocket?: false | StickyWebSocketOptions
  /**
   * Budgets of new bindings per client address and per gateway (over them a request is served, its binding not
   * stored), and how long a binding on probation counts against `maxSessions`; `false` turns the budgets off.
   * @defaultValue `{ perClient: { rate: 30, per: '1m' }, perGateway: { rate: 1000, per: '1s' }, probationHold: '10s' }`
   */
  newBindings?: false | StickyNewBindingsOptions
  /**
   * Planned session moves carry the session's state: the app's `exportSession` on the old upstream, its
   * `importSession` on the new one (`fastify-sticky/upstream`). Off by default; then a move rebinds only.
   */
  handoff?: StickyHandoffOptions
}

/** A pool after validation. */
export interface ResolvedPool {
  readonly upstreams: readonly ResolvedUpstream[]
  readonly healthCheck: {
    readonly path: string
    readonly intervalMs: number
    readonly timeoutMs: number
    readonly healthyThreshold: number
    readonly unhealthyThreshold: number
  } | undefined
  readonly cooldownMs: number
  readonly slowStartMs: number
  readonly strategy: StickyStrategy
  readonly loadFactor: number
  readonly overflow: 'reject' | 'least-loaded'
  /** The routing cookie of this pool: `cookie.name` for the default pool, `<cookie.name>-<pool>` for the others. */
  readonly cookieName: string
  /** Its `Path`. */
  readonly cookiePath: string
  /** Its `Max-Age` in seconds, or `undefined` for a session cookie. */
  readonly cookieMaxAgeSeconds: number | undefined
}

/** An upstream after validation. */
export interface ResolvedUpstream {
  /** Configured id (what the routing cookie carries). */
  readonly id: string
  /** Origin URL. */
  readonly url: string
  /** Relative share of new sessions. */
  readonly weight: number
  /** Most live sessions, or `Infinity`. */
  readonly maxSessions: number
}

/** A route's settings after merging and validation. */
export interface ResolvedRouteConfig {
  readonly pool: string
  /** Key sources in order, or `false` for no affinity. */
  readonly key: false | readonly ResolvedKeySource[]
  readonly idleTimeoutMs: number
  readonly maxLifetimeMs: number
  readonly failover: StickyFailoverPolicy
  /** This route's own upstream response timeout in ms (0: none), or `undefined` for the plugin's. */
  readonly timeoutMs: number | undefined
}

/** Plugin options after validation, with every default filled in. Frozen. */
export interface ResolvedOptions {
  readonly secrets: readonly string[]
  readonly pools: Readonly<Record<string, ResolvedPool>>
  readonly redis: RedisConnection | undefined
  /** `false` without `redis`, or when turned off. */
  readonly nearCache: false | { readonly maxEntries: number, readonly ttlMs: number }
  readonly store: BindingStore | undefined
  readonly prefix: string
  readonly defaults: StickyRouteConfig
  readonly cookie: {
    readonly name: string
    readonly path: string
    readonly domain: string | undefined
    readonly maxAgeSeconds: number | undefined
    readonly sameSite: 'lax' | 'strict' | 'none'
    readonly secure: 'auto' | boolean
    readonly forward: boolean
  }
  readonly timeouts: { readonly connectMs: number, readonly headersMs: number, readonly bodyMs: number }
  readonly maxBindings: number
  readonly reboundHeader: string | false
  readonly replayBodyLimit: number
  readonly cookiePlugin: boolean
  readonly xForwarded: ResolvedXForwarded
  /** `undefined` when the admin API is off. */
  readonly admin: ResolvedAdminOptions | undefined
  readonly metrics: ResolvedMetricsOptions
  readonly websocket: false | ResolvedWebSocketOptions
  readonly newBindings: ResolvedNewBindings
  /** `undefined` when handoff is off. */
  readonly handoff: ResolvedHandoff | undefined
}
