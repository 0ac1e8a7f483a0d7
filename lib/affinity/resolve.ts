/**
 * The affinity resolver: from a route's settings and the request's keys (the routing cookie first) to the upstream
 * that serves the request, through the store walk of ./store-walk.ts; failover moves a binding off an upstream that
 * failed; learning binds the app session cookie an upstream sets. Framework-free (no Fastify request object), so
 * HTTP, upgrades and every front door share it.
 */
import type { ResolvedRouteConfig, ResolvedUpstream } from '../options'
import type { ResolvedNewBindings } from '../options/new-bindings'
import type { UpstreamPool } from '../pool/upstream-pool'
import type { BindingStore } from '../store/binding-store'
import type { TouchScheduler } from '../store/touch-scheduler'
import {
  decided, newAffinityStats, type AffinityFailure, type AffinityResult, type AffinityStats, type BindingContext,
  type CookieRejection, type StickyDecision, type StickyDecisionKind
} from './decision'
import type { StoreKeyIds } from './key-id'
import { extractKey, MAX_KEY_LENGTH, type KeyInput, type ResolvedKeySource } from './keys'
import { NewBindingBudget } from './new-binding-budget'
import { newBindingId, type RoutingCookieCodec, type RoutingToken } from './routing-cookie'
import { parseSetCookie } from './set-cookie'
import { BindingWalk, type BindOutcome, type BindRequest } from './store-walk'

/** What the resolver works with. */
export interface AffinityResolverDeps {
  readonly store: BindingStore
  readonly pools: ReadonlyMap<string, UpstreamPool>
  readonly codec: RoutingCookieCodec
  readonly keyIds: StoreKeyIds
  readonly touches: TouchScheduler
  /** The budgets of new bindings, and how long one on probation counts against its upstream. */
  readonly newBindings: ResolvedNewBindings
}


/** A routing cookie's walk through the store: what the cookie said, and the walk asked for. */
interface CookieWalk {
  readonly request: BindRequest
  /** The verified token, unless the cookie was absent, refused, or past its lifetime. */
  readonly token: RoutingToken | undefined
  /** The cookie verified under an older secret: set it again, signed with the current one. */
  readonly renew: boolean
  readonly rejected: Exclude<CookieRejection, 'junk-key'> | undefined
  readonly bindingId: string
  readonly createdAt: number
  readonly binding: BindingContext | undefined
  /** The upstream the cookie names, if this pool has it. */
  readonly named: ResolvedUpstream | undefined
  /** The named upstream is down. */
  readonly namedDown: boolean
}

/** Resolves affinity for requests; one instance per plugin registration. */
export class AffinityResolver {
  /** Decision and rejection counters. */
  readonly stats: AffinityStats = newAffinityStats()

  readonly #deps: AffinityResolverDeps
  readonly #budget: NewBindingBudget
  readonly #walk: BindingWalk

  /** @param deps - store, pools, cookie codec, key id deriver, touch scheduler and new-binding budgets */
  constructor (deps: AffinityResolverDeps) {
    this.#deps = deps
    this.#budget = new NewBindingBudget(deps.newBindings)
    this.#walk = new BindingWalk(deps, this.#budget, this.stats)
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
    return decided(pool.name, upstream, 'none', false)
  }

  /**
   * Resolves a request on a route with affinity: the route's key sources in order, the first that yields a key
   * wins (the routing cookie always does). A request with no key is balanced as new, and nothing is bound.
   * @param input - what the key sources read (its `ip` is also the client the new-binding budget counts)
   * @param cookieValue - the routing cookie value, when the route uses the cookie
   */
  resolve (route: ResolvedRouteConfig, sources: readonly ResolvedKeySource[], input: KeyInput, cookieValue: string | undefined): AffinityResult | Promise<AffinityResult> {
    let junk = false
    for (const source of sources) {
      if (source.kind === 'cookie') return this.resolveCookie(route, cookieValue, input.ip)
      const key = extractKey(source, input)
      if (key.ok) return this.resolveKey(route, source, key.raw, input.ip)
      if (key.junk) junk = true
    }
    if (junk) this.stats.invalidKey++
    const pool = this.pool(route)
    const upstream = pool.pickForNewSession()
    if (upstream === undefined) {
      this.stats.unavailable++
      return { sticky: null, failure: 'no-upstream', setCookie: undefined, rejected: undefined }
    }
    this.stats.none++
    return { sticky: decided(pool.name, upstream, 'none', false), setCookie: undefined, rejected: junk ? 'junk-key' : undefined }
  }

  /**
   * Affinity by a key read from the request (address, header, query parameter, app cookie, function): the key id
   * is a keyed hash of it; an unbound key is bound race-free to the strategy's choice. While the store fails, keys
   * are spread by rendezvous hashing over healthy upstreams, so every gateway still agrees; so are the keys of a
   * client over its new-binding budget.
   * @param client - the client address the new-binding budget counts (`request.ip`), if known
   */
  resolveKey (route: ResolvedRouteConfig, source: Exclude<ResolvedKeySource, { kind: 'cookie' }>, raw: string, client?: string): AffinityResult | Promise<AffinityResult> {
    const pool = this.pool(route)
    const namespaced = source.namespace + raw
    const keyId = this.#deps.keyIds.derive(namespaced)
    const binding: BindingContext | undefined = keyId === undefined ? undefined : { keyId, hashKey: namespaced, cookie: undefined }
    const ttlMs = Math.min(route.idleTimeoutMs, route.maxLifetimeMs)
    // A key served unbound (over budget) was placed by hashing; when it is bound later it must stay there, not move
    // to the balancer's choice and lose its session, so a client refused lately has its new keys bound where hashing
    // puts them.
    const placed = this.#budget.refusedWithin(client, route.idleTimeoutMs) ? pool.pickUnbound(namespaced) : undefined
    const request: BindRequest = {
      route, pool, keyId, ttlMs, hashKey: namespaced, preferred: placed, onProbation: true, client, lookup: true, refuseMissing: false
    }
    // As for cookies: a key whose binding the store holds at hand is decided here, without a promise.
    const known = this.#walk.peek(request)
    const hit = known === undefined ? undefined : this.#walk.hit(request, known)
    if (hit !== undefined) return this.#keyAnswer(pool, namespaced, binding, hit)
    return this.#walk.bind(request, known).then((outcome) => this.#keyAnswer(pool, namespaced, binding, outcome))
  }

  #keyAnswer (pool: UpstreamPool, namespaced: string, binding: BindingContext | undefined, outcome: BindOutcome): AffinityResult {
    if (outcome.failure !== undefined) return this.#unavailable(outcome.failure, binding)
    if (outcome.decision === 'degraded') {
      // Without the store, a key's upstream is a pure function of the key: every gateway computes the same.
      const hashed = pool.hashPick(namespaced) ?? outcome.upstream
      return this.#answer(pool, hashed, 'degraded', false, undefined, binding, outcome.storeError)
    }
    return this.#answer(pool, outcome.upstream, outcome.decision, outcome.rebound, undefined, binding)
  }

  /**
   * Cookie affinity. A verified cookie whose binding is alive routes to its upstream (moved first if that one is
   * down, unless the route is strict); one whose binding expired or was lost is bound again under the same
   * binding id, preferring the upstream it names (as a load balancer's inserted cookie would), until
   * `maxLifetime` after it was first made; anything else is a new session. Store failures never fail the request:
   * the cookie, or the balancer, decides (`degraded`). Binding again and binding anew both take from the new-binding
   * budget; over it, the cookie (or, for a new client, rendezvous hashing of its binding id) decides and nothing is
   * stored (`unbound`).
   * @param cookieValue - the raw routing cookie value, if the client sent one
   * @param client - the client address the new-binding budget counts (`request.ip`), if known
   */
  resolveCookie (route: ResolvedRouteConfig, cookieValue: string | undefined, client?: string): AffinityResult | Promise<AffinityResult> {
    const walk = this.#cookieWalk(route, cookieValue, client)
    // A returning client whose binding the store holds at hand is decided here, without a promise.
    const known = this.#walk.peek(walk.request)
    const hit = known === undefined ? undefined : this.#walk.hit(walk.request, known)
    if (hit !== undefined) return this.#cookieAnswer(walk, hit)
    return this.#walk.bind(walk.request, known).then((outcome) => this.#cookieAnswer(walk, outcome))
  }

  // What the cookie says, and the store walk it asks for.
  #cookieWalk (route: ResolvedRouteConfig, cookieValue: string | undefined, client: string | undefined): CookieWalk {
    const { codec, keyIds } = this.#deps
    const pool = this.pool(route)
    let token: RoutingToken | undefined
    let renew = false
    let rejected: Exclude<CookieRejection, 'junk-key'> | undefined
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
    const keyId = keyIds.derive(bindingId, token !== undefined)
    const binding: BindingContext | undefined = keyId === undefined ? undefined : { keyId, hashKey: bindingId, cookie: { bindingId, createdAt } }
    const ttlMs = Math.min(route.idleTimeoutMs, createdAt + route.maxLifetimeMs - now)
    // The upstream the cookie names, when it can still serve (draining upstreams keep their sessions).
    const named = token === undefined ? undefined : pool.get(token.upstreamId)
    const namedUsable = named !== undefined && pool.state(named.id) !== 'down'
    const namedDown = named !== undefined && !namedUsable
    // A strict route never moves a session silently: with the named upstream down and no live binding elsewhere,
    // the answer is 503 (the binding stays).
    const strictDown = namedDown && route.failover === 'strict'
    // A client without a cookie is on probation (see BindingWalk.bind); a returning one is not, and only a returning
    // one can have a binding to look up.
    const request: BindRequest = {
      route,
      pool,
      keyId,
      ttlMs,
      hashKey: bindingId,
      preferred: namedUsable ? named : undefined,
      onProbation: token === undefined,
      client,
      lookup: token !== undefined,
      refuseMissing: strictDown
    }
    return { request, token, renew, rejected, bindingId, createdAt, binding, named, namedDown }
  }

  // The walk's outcome as the cookie's answer: a routing cookie to set when the upstream changed or the cookie is new.
  #cookieAnswer (walk: CookieWalk, outcome: BindOutcome): AffinityResult {
    const { request: { pool }, token, renew, rejected, bindingId, createdAt, binding, named, namedDown } = walk
    if (outcome.failure !== undefined) return this.#unavailable(outcome.failure, binding, rejected)
    if (outcome.decision === 'degraded') {
      if (walk.request.refuseMissing) return this.#unavailable('strict-down', binding, rejected)
      const upstream = named !== undefined && !namedDown ? named : outcome.upstream
      return this.#answer(pool, upstream, 'degraded', namedDown, this.#cookieFor(token, renew, bindingId, createdAt, upstream), binding, outcome.storeError, rejected)
    }
    const rebound = outcome.rebound || ((outcome.decision === 'new' || outcome.decision === 'unbound') && namedDown)
    return this.#answer(pool, outcome.upstream, outcome.decision, rebound, this.#cookieFor(token, renew, bindingId, createdAt, outcome.upstream), binding, undefined, rejected)
  }

  // The routing cookie to set: none when the client's cookie already says all of it (a method, not a closure per
  // request, on the hot path).
  #cookieFor (token: RoutingToken | undefined, renew: boolean, bindingId: string, createdAt: number, upstream: ResolvedUpstream): string | undefined {
    return token === undefined || renew || token.upstreamId !== upstream.id
      ? this.#deps.codec.sign({ bindingId, upstreamId: upstream.id, createdAt })
      : undefined
  }

  /**
   * Moves a session off an upstream that just failed (already marked down): one compare-and-set, so every gateway
   * ends on the same new upstream; a request without a binding simply goes to the next upstream.
   * @param failed - the upstream that failed
   * @param binding - the binding of the decision, or `undefined` for a request without one
   */
  async failover (route: ResolvedRouteConfig, failed: ResolvedUpstream, binding: BindingContext | undefined): Promise<AffinityResult> {
    const pool = this.pool(route)
    if (binding === undefined) {
      const sticky = this.resolveWithoutAffinity(route)
      return sticky === null ? { sticky, failure: 'no-upstream', setCookie: undefined, rejected: undefined } : { sticky, setCookie: undefined, rejected: undefined }
    }
    const next = pool.pickForNewSession(binding.hashKey)
    if (next === undefined) return this.#unavailable('no-upstream', binding)
    let upstream = next
    let decision: StickyDecisionKind = 'rebind'
    let storeError: unknown
    try {
      const moved = await this.#deps.store.rebind(pool.name, binding.keyId, failed.id, next.id)
      if (moved.upstreamId === null) {
        const createdAt = binding.cookie?.createdAt ?? Date.now()
        const ttlMs = Math.min(route.idleTimeoutMs, createdAt + route.maxLifetimeMs - Date.now())
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
    const setCookie = binding.cookie === undefined
      ? undefined
      : this.#deps.codec.sign({ bindingId: binding.cookie.bindingId, upstreamId: upstream.id, createdAt: binding.cookie.createdAt })
    return this.#answer(pool, upstream, decision, true, setCookie, binding, storeError)
  }

  /**
   * Learns the app's session cookie from an upstream response: a cookie it sets is bound to that upstream (the
   * upstream that issued the session is the one that has it); one it deletes forgets the binding of the value the
   * client sent. Resolves once the store has it, so the response can wait for it.
   * @param requestValue - the app cookie the client sent, if any
   * @param setCookie - the upstream's Set-Cookie header(s)
   */
  async learn (
    route: ResolvedRouteConfig, source: Extract<ResolvedKeySource, { kind: 'learn' }>, requestValue: string | undefined,
    upstream: ResolvedUpstream, setCookie: string | readonly string[] | undefined
  ): Promise<void> {
    if (setCookie === undefined) return
    const { store, keyIds, touches } = this.#deps
    const pool = this.pool(route)
    for (const line of typeof setCookie === 'string' ? [setCookie] : setCookie) {
      const learned = parseSetCookie(line, source.cookie)
      if (learned === undefined) continue
      if (learned.deleted) {
        const keyId = requestValue === undefined || requestValue === '' ? undefined : keyIds.derive(source.namespace + requestValue)
        if (keyId !== undefined) await store.delete(pool.name, keyId)
        this.stats.learnedForgotten++
        continue
      }
      if (learned.value.length > MAX_KEY_LENGTH) {
        this.stats.invalidKey++
        continue
      }
      const keyId = keyIds.derive(source.namespace + learned.value)
      if (keyId === undefined) continue
      const ttlMs = Math.min(route.idleTimeoutMs, route.maxLifetimeMs)
      const result = await store.bindIfAbsent(pool.name, keyId, upstream.id, ttlMs)
      if (result.upstreamId !== upstream.id) await store.rebind(pool.name, keyId, result.upstreamId, upstream.id)
      if (result.created) pool.reserve(upstream.id)
      touches.noteFresh(pool.name, keyId)
      this.stats.learned++
    }
  }

  #answer (
    pool: UpstreamPool, upstream: ResolvedUpstream, decision: Exclude<StickyDecisionKind, 'none'>, rebound: boolean,
    setCookie: string | undefined, binding: BindingContext | undefined, storeError?: unknown, rejected?: CookieRejection
  ): AffinityResult {
    this.stats[decision]++
    return { sticky: decided(pool.name, upstream, decision, rebound), setCookie, rejected, binding, storeError }
  }

  #unavailable (failure: AffinityFailure, binding: BindingContext | undefined, rejected?: CookieRejection): AffinityResult {
    this.stats.unavailable++
    return { sticky: null, failure, setCookie: undefined, rejected, binding }
  }
}
