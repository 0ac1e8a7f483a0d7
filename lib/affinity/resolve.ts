/**
 * The affinity core: from a route's settings and the client's routing cookie to the upstream that serves the
 * request. Framework-free (no Fastify request object), so HTTP, upgrades and other adapters share it.
 *
 * Why ~480 lines: one walk over the key sources, the store and the balancer, whose branches (hit, re-bind under
 * the cookie's id, rebound, degraded, unbound over budget) share one session-count invariant; split across files
 * it would be kept by callers again (what issue #15 found). The decision types at the top and the cookie
 * verification could move out; that is left for the hot-path work (#17), which rewrites this walk.
 */
import type { ResolvedRouteConfig, ResolvedUpstream } from '../options'
import type { UpstreamPool } from '../pool/upstream-pool'
import type { Binding, BindingStore } from '../store/binding-store'
import type { TouchScheduler } from '../store/touch-scheduler'
import type { StoreKeyIds } from './key-id'
import { extractKey, MAX_KEY_LENGTH, type KeyInput, type ResolvedKeySource } from './keys'
import { NewBindingBudget, type BudgetRefusal } from './new-binding-budget'
import type { ResolvedNewBindings } from '../options/new-bindings'
import { newBindingId, type RoutingCookieCodec, type RoutingCookieRejection, type RoutingToken } from './routing-cookie'
import { trimOws } from './cookie-text'

/**
 * How the upstream was chosen: `hit` (an existing binding), `new` (a binding was made now), `rebind` (the
 * binding was moved), `degraded` (the store failed; the cookie or the balancer decided), `unbound` (the client is
 * over its new-binding budget: its cookie or rendezvous hashing decided, and nothing was stored), `none` (no
 * affinity).
 */
export type StickyDecisionKind = 'hit' | 'new' | 'rebind' | 'degraded' | 'unbound' | 'none'

/** Why a client's routing cookie (or another key's value) was ignored. */
export type CookieRejection = RoutingCookieRejection | 'unknown-upstream' | 'junk-key'

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

/** The binding behind a decision, kept so a failed forward can move it. */
export interface BindingContext {
  readonly keyId: string
  /** What the `hash` strategy hashes for this binding. */
  readonly hashKey: string
  /** For routing-cookie bindings: what a re-issued cookie carries. */
  readonly cookie: { readonly bindingId: string, readonly createdAt: number } | undefined
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
  /** Requests served without a stored binding because a new-binding budget was spent (see `overBudget`). */
  unbound: number
  /** New bindings refused, by the budget that refused them (per client address, per gateway). */
  overBudget: Record<BudgetRefusal, number>
  none: number
  /** Requests answered 503 because no upstream could take them (or a strict route's upstream was down). */
  unavailable: number
  invalidCookie: Record<Exclude<CookieRejection, 'junk-key'>, number>
  /** Requests whose only key values were refused (too long, not an address, a key function that threw). */
  invalidKey: number
  /** App session cookies bound from upstream responses (learn keys). */
  learned: number
  /** App session cookies deleted by upstream responses, their bindings forgotten. */
  learnedForgotten: number
  storeErrors: number
}

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
    unbound: 0,
    overBudget: { client: 0, gateway: 0 },
    none: 0,
    unavailable: 0,
    invalidCookie: { oversized: 0, 'bad-signature': 0, garbled: 0, 'unknown-upstream': 0 },
    invalidKey: 0,
    learned: 0,
    learnedForgotten: 0,
    storeErrors: 0
  }

  readonly #deps: AffinityResolverDeps
  readonly #budget: NewBindingBudget

  /** @param deps - store, pools, cookie codec, key id deriver, touch scheduler and new-binding budgets */
  constructor (deps: AffinityResolverDeps) {
    this.#deps = deps
    this.#budget = new NewBindingBudget(deps.newBindings)
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
   * Resolves a request on a route with affinity: the route's key sources in order, the first that yields a key
   * wins (the routing cookie always does). A request with no key is balanced as new, and nothing is bound.
   * @param input - what the key sources read (its `ip` is also the client the new-binding budget counts)
   * @param cookieValue - the routing cookie value, when the route uses the cookie
   */
  async resolve (route: ResolvedRouteConfig, sources: readonly ResolvedKeySource[], input: KeyInput, cookieValue: string | undefined): Promise<AffinityResult> {
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
    return { sticky: decided(pool, upstream, 'none', false), setCookie: undefined, rejected: junk ? 'junk-key' : undefined }
  }

  /**
   * Affinity by a key read from the request (address, header, query parameter, app cookie, function): the key id
   * is a keyed hash of it; an unbound key is bound race-free to the strategy's choice. While the store fails, keys
   * are spread by rendezvous hashing over healthy upstreams, so every gateway still agrees; so are the keys of a
   * client over its new-binding budget.
   * @param client - the client address the new-binding budget counts (`request.ip`), if known
   */
  async resolveKey (route: ResolvedRouteConfig, source: Exclude<ResolvedKeySource, { kind: 'cookie' }>, raw: string, client?: string): Promise<AffinityResult> {
    const pool = this.pool(route)
    const namespaced = source.namespace + raw
    const keyId = this.#deps.keyIds.derive(namespaced)
    const binding: BindingContext | undefined = keyId === undefined ? undefined : { keyId, hashKey: namespaced, cookie: undefined }
    const ttlMs = Math.min(route.idleTimeoutMs, route.maxLifetimeMs)
    // A key served unbound (over budget) was placed by hashing; when it is bound later it must stay there, not move
    // to the balancer's choice and lose its session, so a client refused lately has its new keys bound where hashing
    // puts them.
    const placed = this.#budget.refusedWithin(client, route.idleTimeoutMs) ? pool.pickUnbound(namespaced) : undefined
    const outcome = await this.#bind(route, pool, keyId, ttlMs, namespaced, placed, true, client)
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
  async resolveCookie (route: ResolvedRouteConfig, cookieValue: string | undefined, client?: string): Promise<AffinityResult> {
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
    // A client without a cookie is on probation (see #bind); a returning one is not.
    const outcome = await this.#bind(route, pool, keyId, ttlMs, bindingId, namedUsable ? named : undefined, token === undefined, client, token !== undefined, strictDown)
    if (outcome.failure !== undefined) return this.#unavailable(outcome.failure, binding, rejected)
    if (outcome.decision === 'degraded') {
      if (strictDown) return this.#unavailable('strict-down', binding, rejected)
      const upstream = namedUsable ? named : outcome.upstream
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
   * The store walk shared by every key kind: an alive binding on a usable upstream is a hit; one on a down (or no
   * longer configured) upstream is moved with a compare-and-set, or refused on strict routes; a missing one is
   * bound race-free to `preferred` or the strategy's choice, if the new-binding budget allows; past it, the key is
   * served by `preferred` or rendezvous hashing and nothing is written (`unbound`). A new binding made on probation
   * lives {@link PROBATION_TTL_MS} until the key returns (its first return touches it to the idle timeout), and counts
   * against its upstream (`maxSessions`, least-sessions) only for the probation hold unless it returns, so bots and
   * one-off requests neither fill the store for long nor hold upstreams' session slots.
   * @param keyId - `undefined` while the store's salt is unknown (treated as a store failure)
   * @param hashKey - what the `hash` strategy hashes: the raw key (never stored) or the binding id, so every
   *   gateway places a key alike even before they share a salt
   * @param client - the client address the new-binding budget counts, if known
   * @param lookup - whether to read an existing binding first (a brand-new cookie cannot have one)
   * @param refuseMissing - answer `strict-down` instead of binding a missing key
   */
  async #bind (
    route: ResolvedRouteConfig, pool: UpstreamPool, keyId: string | undefined, ttlMs: number, hashKey: string,
    preferred: ResolvedUpstream | undefined, onProbation: boolean, client: string | undefined, lookup = true, refuseMissing = false
  ): Promise<BindOutcome> {
    const { store, touches } = this.#deps
    const newBindings = this.#budget
    let counted: string | undefined
    try {
      if (keyId === undefined) throw new Error('fastify-sticky: the store\'s shared salt is not loaded yet')
      if (lookup) {
        const current = await store.get(pool.name, keyId)
        const bound = current === null ? undefined : pool.get(current.upstreamId)
        if (bound !== undefined && pool.state(bound.id) !== 'down') {
          const remaining = Math.min(ttlMs, (current as Binding).createdAt + route.maxLifetimeMs - Date.now())
          touches.schedule(pool.name, keyId, bound.id, route.idleTimeoutMs, remaining)
          return { upstream: bound, decision: 'hit', rebound: false }
        }
        if (current !== null) {
          if (bound !== undefined && route.failover === 'strict') return { failure: 'strict-down' }
          // Bound to an upstream that is down, or that this gateway's configuration no longer has: move it,
          // agreeing with every other gateway through the compare-and-set.
          const next = pool.pickForNewSession(hashKey)
          if (next === undefined) return { failure: 'no-upstream' }
          const moved = await store.rebind(pool.name, keyId, current.upstreamId, next.id)
          const upstream = moved.upstreamId === null ? undefined : pool.get(moved.upstreamId)
          if (upstream !== undefined) {
            touches.noteFresh(pool.name, keyId)
            return { upstream, decision: 'rebind', rebound: true }
          }
        }
      }
      if (refuseMissing) return { failure: 'strict-down' }
      const choice = preferred ?? pool.pickForNewSession(hashKey)
      if (choice === undefined) return { failure: 'no-upstream' }
      // Taken only once the session can be placed: a full pool's 503 costs the client nothing.
      const refusal = newBindings.take(client)
      if (refusal !== undefined) {
        this.stats.overBudget[refusal]++
        // Nothing remembers this placement, so it must be one every request and every gateway computes alike.
        const upstream = preferred ?? pool.pickUnbound(hashKey)
        return upstream === undefined ? { failure: 'no-upstream' } : { upstream, decision: 'unbound', rebound: false }
      }
      // Counted before the store answers, so new sessions arriving together see each other and spread; taken back
      // if the key turns out to be bound already.
      pool.noteBound(choice.id)
      counted = choice.id
      const probationTtlMs = Math.min(ttlMs, PROBATION_TTL_MS)
      const result = onProbation
        ? await store.bindIfAbsent(pool.name, keyId, choice.id, probationTtlMs, Math.min(probationTtlMs, newBindings.probationHoldMs))
        : await store.bindIfAbsent(pool.name, keyId, choice.id, ttlMs)
      counted = undefined
      if (!result.created) pool.forgetBound(choice.id)
      // Another gateway may have won with an upstream only its configuration knows (a rolling config change).
      const upstream = pool.get(result.upstreamId) ?? choice
      if (!onProbation) touches.noteFresh(pool.name, keyId)
      return { upstream, decision: result.created || preferred !== undefined ? 'new' : 'hit', rebound: false }
    } catch (storeError) {
      this.stats.storeErrors++
      if (counted !== undefined) pool.forgetBound(counted)
      const upstream = preferred ?? pool.pickForNewSession(hashKey)
      if (upstream === undefined) return { failure: 'no-upstream' }
      // Counts cannot be re-read from a failing store: count this gateway's own choices, so new clients spread.
      if (preferred === undefined) pool.noteBound(upstream.id)
      return { upstream, decision: 'degraded', rebound: false, storeError }
    }
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
      if (result.created) pool.noteBound(upstream.id)
      touches.noteFresh(pool.name, keyId)
      this.stats.learned++
    }
  }

  #answer (
    pool: UpstreamPool, upstream: ResolvedUpstream, decision: Exclude<StickyDecisionKind, 'none'>, rebound: boolean,
    setCookie: string | undefined, binding: BindingContext | undefined, storeError?: unknown, rejected?: CookieRejection
  ): AffinityResult {
    this.stats[decision]++
    return { sticky: decided(pool, upstream, decision, rebound), setCookie, rejected, binding, storeError }
  }

  #unavailable (failure: AffinityFailure, binding: BindingContext | undefined, rejected?: CookieRejection): AffinityResult {
    this.stats.unavailable++
    return { sticky: null, failure, setCookie: undefined, rejected, binding }
  }
}

/**
 * Reads one Set-Cookie line for the named cookie.
 * @returns its value and whether the line deletes it (empty value, `Max-Age<=0`, or `Expires` in the past)
 */
export function parseSetCookie (line: string, name: string): { value: string, deleted: boolean } | undefined {
  const parts = line.split(';')
  const first = parts[0]
  const eq = first.indexOf('=')
  if (eq < 0 || trimOws(first.slice(0, eq)) !== name) return undefined
  let value = trimOws(first.slice(eq + 1))
  // Keyed as the client's Cookie header will be read back by @fastify/cookie (%-decoded when it decodes, quotes
  // kept), or the client would never find its binding.
  if (value.includes('%')) {
    try { value = decodeURIComponent(value) } catch {}
  }
  let maxAge: number | undefined
  let expires: number | undefined
  for (let i = 1; i < parts.length; i++) {
    const attribute = parts[i].trim()
    const sep = attribute.indexOf('=')
    const key = (sep < 0 ? attribute : attribute.slice(0, sep)).trim().toLowerCase()
    const text = sep < 0 ? '' : attribute.slice(sep + 1).trim()
    if (key === 'max-age' && /^-?\d+$/.test(text)) maxAge = Number(text)
    else if (key === 'expires' && Number.isFinite(Date.parse(text))) expires = Date.parse(text)
  }
  // Max-Age wins over Expires (RFC 6265 §5.3).
  const deleted = value === '' || value === '""' || (maxAge !== undefined ? maxAge <= 0 : expires !== undefined && expires <= Date.now())
  return { value, deleted }
}

type BindOutcome =
  | { readonly failure: AffinityFailure, readonly upstream?: undefined, readonly decision?: undefined, readonly rebound?: undefined, readonly storeError?: undefined }
  | { readonly failure?: undefined, readonly upstream: ResolvedUpstream, readonly decision: 'hit' | 'new' | 'rebind' | 'degraded' | 'unbound', readonly rebound: boolean, readonly storeError?: unknown }
