/**
 * The affinity core: from a route's settings and the client's routing cookie to the upstream that serves the
 * request. Framework-free (no Fastify request object), so HTTP, upgrades and other adapters share it.
 */
import type { ResolvedRouteConfig, ResolvedUpstream } from '../options'
import type { UpstreamPool } from '../pool/upstream-pool'
import type { BindingStore } from '../store/binding-store'
import type { TouchScheduler } from '../store/touch-scheduler'
import type { KeyIdDeriver } from './key-id'
import { newBindingId, type RoutingCookieCodec, type RoutingCookieRejection, type RoutingToken } from './routing-cookie'

/**
 * How the upstream was chosen: `hit` (an existing binding), `new` (a binding was made now), `rebind` (the
 * binding was moved), `degraded` (the store failed; the cookie or the balancer decided), `none` (no affinity).
 */
export type StickyDecisionKind = 'hit' | 'new' | 'rebind' | 'degraded' | 'none'

/** Why a client's routing cookie was ignored. */
export type CookieRejection = RoutingCookieRejection | 'unknown-upstream'

/** The routing decision of one request, as `request.sticky` exposes it. */
export interface StickyDecision {
  /** The pool's name. */
  readonly pool: string
  /** The upstream that serves the request. */
  readonly upstream: ResolvedUpstream
  /** How it was chosen. */
  readonly decision: StickyDecisionKind
}

/** What {@link AffinityResolver.resolveCookie} found. */
export interface AffinityResult {
  readonly sticky: StickyDecision
  /** A routing cookie value to send back (new or moved binding, or a signature by an older secret), if any. */
  readonly setCookie: string | undefined
  /** Why the client's cookie was ignored, if it was. */
  readonly rejected: CookieRejection | undefined
  /** The store error behind a `degraded` decision. */
  readonly storeError?: unknown
}

/** Counters of decisions and refused input, since the plugin started. */
export interface AffinityStats {
  hit: number
  new: number
  rebind: number
  degraded: number
  none: number
  invalidCookie: Record<CookieRejection, number>
  storeErrors: number
}

/** What the resolver works with. */
export interface AffinityResolverDeps {
  readonly store: BindingStore
  readonly pools: ReadonlyMap<string, UpstreamPool>
  readonly codec: RoutingCookieCodec
  readonly deriveKeyId: KeyIdDeriver
  readonly touches: TouchScheduler
}

/** Resolves affinity for requests; one instance per plugin registration. */
export class AffinityResolver {
  /** Decision and rejection counters. */
  readonly stats: AffinityStats = {
    hit: 0,
    new: 0,
    rebind: 0,
    degraded: 0,
    none: 0,
    invalidCookie: { oversized: 0, 'bad-signature': 0, garbled: 0, 'unknown-upstream': 0 },
    storeErrors: 0
  }

  readonly #deps: AffinityResolverDeps

  /** @param deps - store, pools, cookie codec, key id deriver and touch scheduler */
  constructor (deps: AffinityResolverDeps) {
    this.#deps = deps
  }

  /** @returns the pool named by a resolved route config (validated at route registration) */
  pool (route: ResolvedRouteConfig): UpstreamPool {
    return this.#deps.pools.get(route.pool) as UpstreamPool
  }

  /** A route without affinity: weighted round robin, no store access. */
  resolveWithoutAffinity (route: ResolvedRouteConfig): StickyDecision {
    const pool = this.pool(route)
    this.stats.none++
    return { pool: pool.name, upstream: pool.nextRoundRobin(), decision: 'none' }
  }

  /**
   * Cookie affinity. A verified cookie whose binding is alive routes to its upstream; one whose binding expired
   * or was lost is bound again under the same binding id, preferring the upstream it names (as a load balancer's
   * inserted cookie would), until `maxLifetime` after it was first made; anything else is a new session. Store
   * failures never fail the request: the cookie, or the balancer, decides (`degraded`).
   * @param cookieValue - the raw routing cookie value, if the client sent one
   */
  async resolveCookie (route: ResolvedRouteConfig, cookieValue: string | undefined): Promise<AffinityResult> {
    const { store, codec, deriveKeyId, touches } = this.#deps
    const pool = this.pool(route)
    let token: RoutingToken | undefined
    let renew = false
    let rejected: CookieRejection | undefined
    if (cookieValue !== undefined && cookieValue !== '') {
      const check = codec.verify(cookieValue)
      if (!check.ok) {
        rejected = check.reason
      } else if (pool.get(check.token.upstreamId) === undefined) {
        rejected = 'unknown-upstream'
      } else {
        token = check.token
        renew = check.renew
      }
      if (rejected !== undefined) this.stats.invalidCookie[rejected]++
    }

    const now = Date.now()
    // A binding past its lifetime is not revived from the cookie: the client is balanced as new.
    if (token !== undefined && now - token.createdAt >= route.maxLifetimeMs) token = undefined
    const bindingId = token?.bindingId ?? newBindingId()
    const createdAt = token?.createdAt ?? now
    const keyId = deriveKeyId(bindingId)
    const ttlMs = Math.min(route.idleTimeoutMs, createdAt + route.maxLifetimeMs - now)
    const cookieFor = (upstream: ResolvedUpstream): string | undefined =>
      token === undefined || renew || token.upstreamId !== upstream.id
        ? codec.sign({ bindingId, upstreamId: upstream.id, createdAt })
        : undefined

    try {
      if (token !== undefined) {
        const binding = await store.get(pool.name, keyId)
        const bound = binding === null ? undefined : pool.get(binding.upstreamId)
        if (bound !== undefined) {
          touches.schedule(pool.name, keyId, bound.id, route.idleTimeoutMs, ttlMs)
          this.stats.hit++
          return { sticky: { pool: pool.name, upstream: bound, decision: 'hit' }, setCookie: cookieFor(bound), rejected }
        }
        if (binding !== null) {
          // Bound to an upstream this gateway's configuration no longer has: move it, agreeing through CAS.
          const moved = await store.rebind(pool.name, keyId, binding.upstreamId, pool.pickForNewSession().id)
          const upstream = moved.upstreamId === null ? undefined : pool.get(moved.upstreamId)
          if (upstream !== undefined) {
            touches.noteFresh(pool.name, keyId)
            this.stats.rebind++
            return { sticky: { pool: pool.name, upstream, decision: 'rebind' }, setCookie: cookieFor(upstream), rejected }
          }
        }
      }
      const preferred = token === undefined ? pool.pickForNewSession() : pool.get(token.upstreamId) as ResolvedUpstream
      const result = await store.bindIfAbsent(pool.name, keyId, preferred.id, ttlMs)
      // Another gateway may have won with an upstream only its configuration knows (a rolling config change).
      const upstream = pool.get(result.upstreamId) ?? preferred
      if (result.created) pool.noteBound(upstream.id)
      touches.noteFresh(pool.name, keyId)
      this.stats.new++
      return { sticky: { pool: pool.name, upstream, decision: 'new' }, setCookie: cookieFor(upstream), rejected }
    } catch (storeError) {
      this.stats.storeErrors++
      this.stats.degraded++
      const upstream = token === undefined ? pool.pickForNewSession() : pool.get(token.upstreamId) as ResolvedUpstream
      return { sticky: { pool: pool.name, upstream, decision: 'degraded' }, setCookie: cookieFor(upstream), rejected, storeError }
    }
  }
}
