/**
 * One key's walk through the store, shared by every key kind (routing cookie, address, header, …): look the binding
 * up, move it off a down upstream, or bind it anew within the new-binding budget, keeping the pool's session counts
 * through {@link UpstreamPool.reserve}. Framework-free.
 */
import type { ResolvedRouteConfig, ResolvedUpstream } from '../options'
import type { SessionReservation, UpstreamPool } from '../pool/upstream-pool'
import type { Binding, BindingStore } from '../store/binding-store'
import type { TouchScheduler } from '../store/touch-scheduler'
import type { AffinityFailure, AffinityStats } from './decision'
import type { NewBindingBudget } from './new-binding-budget'

/** How long the binding of a client that has not yet come back with its cookie lives. */
export const PROBATION_TTL_MS = 60_000

/** One key to bind, as {@link BindingWalk.bind} takes it. */
export interface BindRequest {
  readonly route: ResolvedRouteConfig
  readonly pool: UpstreamPool
  /** `undefined` while the store's salt is unknown (treated as a store failure). */
  readonly keyId: string | undefined
  /** How long a new (or revived) binding lives without use. */
  readonly ttlMs: number
  /**
   * What the `hash` strategy hashes: the raw key (never stored) or the binding id, so every gateway places a key
   * alike even before they share a salt.
   */
  readonly hashKey: string
  /** The upstream to bind a missing key to instead of the strategy's choice (the one a cookie names). */
  readonly preferred: ResolvedUpstream | undefined
  /** Whether a new binding starts on probation (a client that has not come back yet). */
  readonly onProbation: boolean
  /** The client address the new-binding budget counts, if known. */
  readonly client: string | undefined
  /** Whether to read an existing binding first (a brand-new cookie cannot have one). */
  readonly lookup: boolean
  /** Answer `strict-down` instead of binding a missing key. */
  readonly refuseMissing: boolean
}

/** What became of a {@link BindRequest}: an upstream and how it was chosen, or why there is none. */
export type BindOutcome =
  | { readonly failure: AffinityFailure, readonly upstream?: undefined, readonly decision?: undefined, readonly rebound?: undefined, readonly storeError?: undefined }
  | { readonly failure?: undefined, readonly upstream: ResolvedUpstream, readonly decision: 'hit' | 'new' | 'rebind' | 'degraded' | 'unbound', readonly rebound: boolean, readonly storeError?: unknown }

/** What {@link BindingWalk} works with. */
export interface BindingWalkDeps {
  readonly store: BindingStore
  readonly touches: TouchScheduler
}

/** Binds keys; one per resolver, sharing its counters and new-binding budget. */
export class BindingWalk {
  readonly #deps: BindingWalkDeps
  readonly #budget: NewBindingBudget
  readonly #stats: AffinityStats

  /**
   * @param budget - the new-binding budgets (per client, per gateway) and the probation hold
   * @param stats - the resolver's counters (`storeErrors`, `overBudget`)
   */
  constructor (deps: BindingWalkDeps, budget: NewBindingBudget, stats: AffinityStats) {
    this.#deps = deps
    this.#budget = budget
    this.#stats = stats
  }

  /**
   * The walk's first read, when the store can make it at once ({@link BindingStore.peek}).
   * @returns the binding, `null` when there is none, or `undefined` when the walk must ask the store (no lookup asked
   *   for, no key id yet, or only the store's `get` can say)
   */
  peek (request: BindRequest): Binding | null | undefined {
    if (!request.lookup || request.keyId === undefined) return undefined
    try {
      return this.#deps.store.peek(request.pool.name, request.keyId)
    } catch {
      // A store of the user's that fails here fails again in `bind`, which counts it and routes degraded.
      return undefined
    }
  }

  /**
   * An alive binding on an upstream that can serve is a hit: touched (sliding expiry, batched) and routed to.
   * @returns the hit, or `undefined` when the walk must go on ({@link BindingWalk.bind}: none, or one to move)
   */
  hit (request: BindRequest, current: Binding | null): BindOutcome | undefined {
    if (current === null || request.keyId === undefined) return undefined
    const { route, pool } = request
    const bound = pool.get(current.upstreamId)
    if (bound === undefined || pool.state(bound.id) === 'down') return undefined
    const remaining = Math.min(request.ttlMs, current.createdAt + route.maxLifetimeMs - Date.now())
    this.#deps.touches.schedule(pool.name, request.keyId, bound.id, route.idleTimeoutMs, remaining)
    return { upstream: bound, decision: 'hit', rebound: false }
  }

  /**
   * The store walk shared by every key kind: an alive binding on a usable upstream is a hit; one on a down (or no
   * longer configured) upstream is moved with a compare-and-set, or refused on strict routes; a missing one is
   * bound race-free to `preferred` or the strategy's choice, if the new-binding budget allows; past it, the key is
   * served by `preferred` or rendezvous hashing and nothing is written (`unbound`). A new binding made on probation
   * lives {@link PROBATION_TTL_MS} until the key returns (its first return touches it to the idle timeout), and counts
   * against its upstream (`maxSessions`, least-sessions) only for the probation hold unless it returns, so bots and
   * one-off requests neither fill the store for long nor hold upstreams' session slots.
   * @param known - the binding {@link BindingWalk.peek} already read (`null`: none), so the store is not asked twice
   */
  async bind (request: BindRequest, known?: Binding | null): Promise<BindOutcome> {
    const { route, pool, keyId, ttlMs, hashKey, preferred, onProbation, client } = request
    const { store, touches } = this.#deps
    const newBindings = this.#budget
    let reservation: SessionReservation | undefined
    try {
      if (keyId === undefined) throw new Error('fastify-sticky: the store\'s shared salt is not loaded yet')
      if (request.lookup) {
        const current = known !== undefined ? known : await store.get(pool.name, keyId)
        const hit = this.hit(request, current)
        if (hit !== undefined) return hit
        const bound = current === null ? undefined : pool.get(current.upstreamId)
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
      if (request.refuseMissing) return { failure: 'strict-down' }
      const choice = preferred ?? pool.pickForNewSession(hashKey)
      if (choice === undefined) return { failure: 'no-upstream' }
      // Taken only once the session can be placed: a full pool's 503 costs the client nothing.
      const refusal = newBindings.take(client)
      if (refusal !== undefined) {
        this.#stats.overBudget[refusal]++
        // Nothing remembers this placement, so it must be one every request and every gateway computes alike.
        const upstream = preferred ?? pool.pickUnbound(hashKey)
        return upstream === undefined ? { failure: 'no-upstream' } : { upstream, decision: 'unbound', rebound: false }
      }
      // Counted before the store answers, so new sessions arriving together see each other and spread; taken back
      // if the key turns out to be bound already.
      reservation = pool.reserve(choice.id)
      const probationTtlMs = Math.min(ttlMs, PROBATION_TTL_MS)
      const result = onProbation
        ? await store.bindIfAbsent(pool.name, keyId, choice.id, probationTtlMs, Math.min(probationTtlMs, newBindings.probationHoldMs))
        : await store.bindIfAbsent(pool.name, keyId, choice.id, ttlMs)
      if (!result.created) reservation.release()
      reservation = undefined
      // Another gateway may have won with an upstream only its configuration knows (a rolling config change).
      const upstream = pool.get(result.upstreamId) ?? choice
      if (!onProbation) touches.noteFresh(pool.name, keyId)
      return { upstream, decision: result.created || preferred !== undefined ? 'new' : 'hit', rebound: false }
    } catch (storeError) {
      this.#stats.storeErrors++
      reservation?.release()
      const upstream = preferred ?? pool.pickForNewSession(hashKey)
      if (upstream === undefined) return { failure: 'no-upstream' }
      // Counts cannot be re-read from a failing store: count this gateway's own choices, so new clients spread.
      if (preferred === undefined) pool.reserve(upstream.id)
      return { upstream, decision: 'degraded', rebound: false, storeError }
    }
  }
}
