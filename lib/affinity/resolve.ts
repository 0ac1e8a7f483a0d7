/**
 * The affinity core: from a route's settings and the client's routing cookie to the upstream that serves the
 * request. Framework-free (no Fastify request object), so HTTP, upgrades and other adapters share it.
 */
import type { ResolvedRouteConfig, ResolvedUpstream } from '../options'
import type { UpstreamPool } from '../pool/upstream-pool'
import type { BindingStore } from '../store/binding-store'
import type { TouchScheduler } from '../store/touch-scheduler'
import type { StoreKeyIds } from './key-id'
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
  /** `true` when the client's session moved away from an upstream that is down: its session state is lost. */
  readonly rebound: boolean
}

/** The binding behind a cookie decision, kept so a failed forward can move it. */
export interface BindingContext {
  readonly keyId: string
  readonly bindingId: string
  readonly createdAt: number
}

/** Why no upstream could be given: none can take the request, or a strict route's upstream is down. */
export type AffinityFailure = 'no-upstream' | 'strict-down'

/** What {@link AffinityResolver.resolveCookie} found. */
export interface AffinityResult {
  /** The decision; `null` together with `failure`. */
  readonly sticky: StickyDecision | null
  readonly failure?: AffinityFailure
  /** A routing cookie value to send back (new or moved binding, or a signature by an older secret), if any. */
  readonly setCookie: string | undefined
  /** Why the client's cookie was ignored, if it was. */
  readonly rejected: CookieRejection | undefined
  /** The binding, for failover. */
  readonly binding?: BindingContext
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
  /** Requests answered 503 because no upstream could take them (or a strict route's upstream was down). */
  unavailable: number
  invalidCookie: Record<CookieRejection, number>
  storeErrors: number
}

/** What the resolver works with. */
export interface AffinityResolverDeps {
  readonly store: BindingStore
  readonly pools: ReadonlyMap<string, UpstreamPool>
  readonly codec: RoutingCookieCodec
  readonly keyIds: StoreKeyIds
  readonly touches: TouchScheduler
}

/** How long the binding of a client that has not yet come back with its cookie lives. */
export const PROBATION_TTL_MS = 60_000

function decided (pool: UpstreamPool, upstream: ResolvedUpstream, decision: StickyDecisionKind, rebound: boolean): StickyDecision {
  return { pool: pool.name, upstream, decision, rebound }
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
    unavailable: 0,
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

  /** @returns the first of several routing cookie values that verifies, if any */
  firstValidCookie (values: readonly string[]): string | undefined {
    return values.find((value) => this.#deps.codec.verify(value).ok)
  }

  /**
   * A request without affinity: weighted round robin over active, up upstreams; no store access.
   * @returns the decision, or `null` when no upstream can take it
   */
  resolveWithoutAffinity (route: ResolvedRouteConfig): StickyDecision | null {
    const pool = this.pool(route)
    const upstream = pool.nextRoundRobin()
    if (upstream === undefined) {
      this.stats.unavailable++
      return null
    }
    this.stats.none++
    return decided(pool, upstream, 'none', false)
  }

  /**
   * Cookie affinity. A verified cookie whose binding is alive routes to its upstream (moved first if that one is
   * down, unless the route is strict); one whose binding expired or was lost is bound again under the same
   * binding id, preferring the upstream it names (as a load balancer's inserted cookie would), until
   * `maxLifetime` after it was first made; anything else is a new session. Store failures never fail the request:
   * the cookie, or the balancer, decides (`degraded`).
   * @param cookieValue - the raw routing cookie value, if the client sent one
   */
  async resolveCookie (route: ResolvedRouteConfig, cookieValue: string | undefined): Promise<AffinityResult> {
    const { store, codec, keyIds, touches } = this.#deps
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
    const keyId = keyIds.derive(bindingId)
    const binding: BindingContext | undefined = keyId === undefined ? undefined : { bindingId, keyId, createdAt }
    const ttlMs = Math.min(route.idleTimeoutMs, createdAt + route.maxLifetimeMs - now)
    const answer = (upstream: ResolvedUpstream, decision: StickyDecisionKind, rebound: boolean, storeError?: unknown): AffinityResult => {
      this.stats[decision === 'none' ? 'none' : decision]++
      const setCookie = token === undefined || renew || token.upstreamId !== upstream.id
        ? codec.sign({ bindingId, upstreamId: upstream.id, createdAt })
        : undefined
      return { sticky: decided(pool, upstream, decision, rebound), setCookie, rejected, binding, storeError }
    }
    const unavailable = (failure: AffinityFailure): AffinityResult => {
      this.stats.unavailable++
      return { sticky: null, failure, setCookie: undefined, rejected, binding }
    }
    // The upstream the cookie names, when it can still serve (draining upstreams keep their sessions).
    const named = token === undefined ? undefined : pool.get(token.upstreamId)
    const namedUsable = named !== undefined && pool.state(named.id) !== 'down'

    try {
      if (keyId === undefined) throw new Error('fastify-sticky: the store\'s shared salt is not loaded yet')
      if (token !== undefined) {
        const current = await store.get(pool.name, keyId)
        const bound = current === null ? undefined : pool.get(current.upstreamId)
        if (bound !== undefined && pool.state(bound.id) !== 'down') {
          touches.schedule(pool.name, keyId, bound.id, route.idleTimeoutMs, ttlMs)
          return answer(bound, 'hit', false)
        }
        if (bound !== undefined && route.failover === 'strict') return unavailable('strict-down')
        if (current !== null) {
          // Bound to an upstream that is down, or that this gateway's configuration no longer has: move it,
          // agreeing with every other gateway through the compare-and-set.
          const next = pool.pickForNewSession()
          if (next === undefined) return unavailable('no-upstream')
          const moved = await store.rebind(pool.name, keyId, current.upstreamId, next.id)
          const upstream = moved.upstreamId === null ? undefined : pool.get(moved.upstreamId)
          if (upstream !== undefined) {
            touches.noteFresh(pool.name, keyId)
            return answer(upstream, 'rebind', bound !== undefined)
          }
        }
      }
      if (named !== undefined && !namedUsable && route.failover === 'strict') return unavailable('strict-down')
      const preferred = namedUsable ? named : pool.pickForNewSession()
      if (preferred === undefined) return unavailable('no-upstream')
      // A client without a cookie is on probation: its binding lives briefly until it comes back with the cookie
      // (its first return touches it to the full idle timeout), so bots and one-off requests do not fill the store
      // or skew the session counts. Should it return later, its cookie still leads it back to the same upstream.
      const onProbation = token === undefined
      const result = await store.bindIfAbsent(pool.name, keyId, preferred.id, onProbation ? Math.min(ttlMs, PROBATION_TTL_MS) : ttlMs)
      // Another gateway may have won with an upstream only its configuration knows (a rolling config change).
      const upstream = pool.get(result.upstreamId) ?? preferred
      if (result.created) pool.noteBound(upstream.id)
      if (!onProbation) touches.noteFresh(pool.name, keyId)
      return answer(upstream, 'new', named !== undefined && !namedUsable)
    } catch (storeError) {
      this.stats.storeErrors++
      if (named !== undefined && !namedUsable && route.failover === 'strict') return unavailable('strict-down')
      const upstream = namedUsable ? named : pool.pickForNewSession()
      if (upstream === undefined) return unavailable('no-upstream')
      // Counts cannot be re-read from a failing store: count this gateway's own choices, so new clients spread.
      if (!namedUsable) pool.noteBound(upstream.id)
      return answer(upstream, 'degraded', named !== undefined && !namedUsable, storeError)
    }
  }

  /**
   * Moves a session off an upstream that just failed (already marked down): one compare-and-set, so every gateway
   * ends on the same new upstream; a stateless request simply goes to the next upstream.
   * @param failed - the upstream that failed
   * @param binding - the binding of a cookie decision, or `undefined` for a request without affinity
   */
  async failover (route: ResolvedRouteConfig, failed: ResolvedUpstream, binding: BindingContext | undefined): Promise<AffinityResult> {
    const pool = this.pool(route)
    if (binding === undefined) {
      const sticky = this.resolveWithoutAffinity(route)
      return sticky === null ? { sticky, failure: 'no-upstream', setCookie: undefined, rejected: undefined } : { sticky, setCookie: undefined, rejected: undefined }
    }
    const next = pool.pickForNewSession()
    if (next === undefined) {
      this.stats.unavailable++
      return { sticky: null, failure: 'no-upstream', setCookie: undefined, rejected: undefined, binding }
    }
    let upstream = next
    let decision: StickyDecisionKind = 'rebind'
    let storeError: unknown
    try {
      const moved = await this.#deps.store.rebind(pool.name, binding.keyId, failed.id, next.id)
      if (moved.upstreamId === null) {
        const ttlMs = Math.min(route.idleTimeoutMs, binding.createdAt + route.maxLifetimeMs - Date.now())
        upstream = pool.get((await this.#deps.store.bindIfAbsent(pool.name, binding.keyId, next.id, ttlMs)).upstreamId) ?? next
      } else {
        upstream = pool.get(moved.upstreamId) ?? next
      }
      this.#deps.touches.noteFresh(pool.name, binding.keyId)
    } catch (error) {
      this.stats.storeErrors++
      decision = 'degraded'
      storeError = error
    }
    this.stats[decision]++
    const setCookie = this.#deps.codec.sign({ bindingId: binding.bindingId, upstreamId: upstream.id, createdAt: binding.createdAt })
    return { sticky: decided(pool, upstream, decision, true), setCookie, rejected: undefined, binding, storeError }
  }
}
