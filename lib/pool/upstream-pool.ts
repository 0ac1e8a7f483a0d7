/**
 * A named pool of upstreams: their shared state (active, draining, down) and how new sessions and stateless
 * requests are spread over them.
 *
 * Why ~320 lines: upstream states, session counts and selection share the pool's private counts and weights; the
 * strategies themselves are pure functions in ./strategies.ts.
 */
import type { ResolvedPool, ResolvedUpstream } from '../options'
import { resolveUpstream } from '../options/pool'
import type { BindingStore, UpstreamStateChange, UpstreamStatus } from '../store/binding-store'
import { boundedRendezvous, loadOf, rendezvousScore, smoothRoundRobin, twoChoices } from './strategies'

/** How often the store-wide session counts are re-read while new sessions arrive. */
export const SESSION_COUNT_REFRESH_MS = 1000
// A ramping upstream still gets a trickle, so slow start never starves it completely.
const SLOW_START_FLOOR = 0.05

/** An upstream's state as routing sees it: `removed` wins over `down`, which wins over `draining`. */
export type UpstreamState = 'active' | 'draining' | 'down' | 'removed'

const ACTIVE_UP: UpstreamStatus = Object.freeze({ admin: 'active', down: false, changedAt: 0 })

/** One session counted on an upstream by {@link UpstreamPool.reserve}. */
export class SessionReservation {
  #pool: UpstreamPool | undefined

  /** @internal Made by {@link UpstreamPool.reserve}. */
  constructor (pool: UpstreamPool, readonly upstreamId: string) {
    this.#pool = pool
  }

  /** Takes the session back: no binding was made after all. Idempotent. */
  release (): void {
    this.#pool?.releaseReservation(this.upstreamId)
    this.#pool = undefined
  }
}

/** The upstreams of one pool, with least-sessions and weighted round-robin selection. */
export class UpstreamPool {
  /** The pool's name. */
  readonly name: string
  /** Its validated settings (health checks, cool-down, slow start, configured upstreams). */
  readonly config: ResolvedPool
  #members: readonly ResolvedUpstream[]
  #byId: ReadonlyMap<string, ResolvedUpstream>
  readonly #store: BindingStore
  readonly #counts = new Map<string, number>()
  readonly #currentWeight = new Map<string, number>()
  readonly #newSessionWeights = new Map<string, number>()
  readonly #boundDuringRefresh = new Map<string, number>()
  #statuses = new Map<string, UpstreamStatus>()
  #countsReadAt = 0
  #refreshing: Promise<void> | undefined
  #tieBreak = 0

  /**
   * @param name - pool name
   * @param config - validated pool settings (at least one upstream)
   * @param store - where store-wide session counts and shared states come from
   */
  constructor (name: string, config: ResolvedPool, store: BindingStore) {
    this.name = name
    this.config = config
    this.#members = config.upstreams
    this.#byId = new Map(config.upstreams.map((u) => [u.id, u]))
    this.#store = store
    for (const u of config.upstreams) {
      this.#counts.set(u.id, 0)
      this.#currentWeight.set(u.id, 0)
    }
  }

  /** Its current members: the configured upstreams that were not removed, then those added at run time. */
  get upstreams (): readonly ResolvedUpstream[] {
    return this.#members
  }

  /** @returns the upstream with this id, or `undefined` when the pool has none */
  get (id: string): ResolvedUpstream | undefined {
    return this.#byId.get(id)
  }

  /** @returns the shared status of an upstream (active and up when nothing was ever recorded) */
  status (id: string): UpstreamStatus {
    return this.#statuses.get(id) ?? ACTIVE_UP
  }

  /** @returns `removed`, `down`, `draining` or `active` */
  state (id: string): UpstreamState {
    const status = this.status(id)
    return status.admin === 'removed' ? 'removed' : status.down ? 'down' : status.admin
  }

  /** Replaces the known shared states with what the store holds (called about once a second). */
  applyStates (statuses: Record<string, UpstreamStatus>): void {
    this.#statuses = new Map(Object.entries(statuses))
    this.#rebuildMembers()
  }

  /** Applies a change locally at once, ahead of the next read from the store. */
  applyLocalChange (id: string, change: UpstreamStateChange, now = Date.now()): void {
    const current = this.status(id)
    const next: UpstreamStatus = {
      admin: change.admin ?? current.admin,
      down: change.down ?? current.down,
      changedAt: now,
      ...(change.url ?? current.url) === undefined ? {} : { url: change.url ?? current.url },
      ...(change.weight ?? current.weight) === undefined ? {} : { weight: change.weight ?? current.weight }
    }
    if (next.admin === current.admin && next.down === current.down && next.url === current.url && next.weight === current.weight) return
    this.#statuses.set(id, next)
    this.#rebuildMembers()
  }

  // Members = configured upstreams not removed + upstreams added at run time (their URL lives in the store).
  #rebuildMembers (): void {
    const members = this.config.upstreams.filter((u) => this.#statuses.get(u.id)?.admin !== 'removed')
    const configured = new Set(this.config.upstreams.map((u) => u.id))
    for (const [id, status] of this.#statuses) {
      if (configured.has(id) || status.url === undefined || status.admin === 'removed') continue
      const known = this.#byId.get(id)
      const weight = status.weight ?? 1
      // What the store holds is checked by the rules `add()` applies: a member written there by anything else
      // (a bad migration, a hand-edited hash) with a URL that is not an http(s) origin, or a bad id or weight, is
      // left out rather than routed to. An unchanged member keeps its object, so nothing counts as changed.
      const member = validMember(id, status.url, weight)
      if (member === undefined) continue
      members.push(known !== undefined && known.url === member.url && known.weight === member.weight ? known : member)
    }
    const changed = members.length !== this.#members.length || members.some((u, i) => u !== this.#members[i])
    if (!changed) return
    this.#members = members
    this.#byId = new Map(members.map((u) => [u.id, u]))
    void this.refreshCounts() // a new member's share is judged against fresh counts
  }

  /**
   * Chooses the upstream for a new session among active, up upstreams that are not full, by the pool's strategy
   * (least-sessions by default: fewest live sessions relative to weight, store-wide). Weights are scaled down
   * during slow start. Counts are re-read from the store at most once a second, in the background; bindings this
   * gateway makes in between are added locally, so a burst is spread.
   * @param hashKey - what identifies the session (the `hash` strategy hashes it)
   * @returns the upstream, or `undefined` when none can take new sessions
   */
  pickForNewSession (hashKey?: string): ResolvedUpstream | undefined {
    const now = Date.now()
    const { candidates, weights, blockedByLimit } = this.#newSessionCandidates(now)
    if (candidates.length === 0) {
      return blockedByLimit && this.config.overflow === 'least-loaded' ? this.#leastLoaded(this.#activeUp(now), now) : undefined
    }
    switch (this.config.strategy) {
      case 'weighted-round-robin':
        return smoothRoundRobin(candidates, weights, this.#newSessionWeights)
      case 'random-two-choices':
        return twoChoices(candidates, weights, this.#counts)
      case 'hash':
        return boundedRendezvous(candidates, weights, hashKey ?? String(Math.random()), this.#counts, this.config.loadFactor)
      default:
        return this.#leastLoaded(candidates, now)
    }
  }

  /**
   * Places a session that gets no stored binding (its client is over the new-binding budget): rendezvous hashing of
   * the key over the upstreams that take new sessions (active, up, not full; slow start scales their weights), so the
   * same key lands on the same upstream on every request and every gateway while nothing is remembered. When all are
   * full, the pool's `overflow` decides, as for a bound session.
   * @param hashKey - what identifies the session (the raw key, or the routing cookie's binding id)
   * @returns the upstream, or `undefined` when none can take new sessions
   */
  pickUnbound (hashKey: string): ResolvedUpstream | undefined {
    const now = Date.now()
    const { candidates, weights, blockedByLimit } = this.#newSessionCandidates(now)
    if (candidates.length === 0) return blockedByLimit && this.config.overflow === 'least-loaded' ? this.hashPick(hashKey) : undefined
    let best: ResolvedUpstream | undefined
    let bestScore = -Infinity
    for (let i = 0; i < candidates.length; i++) {
      const score = rendezvousScore(hashKey, candidates[i], weights[i])
      if (score > bestScore) {
        best = candidates[i]
        bestScore = score
      }
    }
    return best
  }

  // Upstreams that take new sessions now (active, up, below maxSessions), with their effective weights; counts are
  // re-read from the store in the background when older than the refresh interval.
  #newSessionCandidates (now: number): { candidates: ResolvedUpstream[], weights: number[], blockedByLimit: boolean } {
    if (now - this.#countsReadAt > SESSION_COUNT_REFRESH_MS) void this.refreshCounts()
    const candidates: ResolvedUpstream[] = []
    const weights: number[] = []
    let blockedByLimit = false
    for (const u of this.upstreams) {
      const weight = this.#effectiveWeight(u, now)
      if (weight === 0) continue
      if ((this.#counts.get(u.id) ?? 0) >= u.maxSessions) {
        blockedByLimit = true
        continue
      }
      candidates.push(u)
      weights.push(weight)
    }
    return { candidates, weights, blockedByLimit }
  }

  /**
   * Rendezvous (highest random weight) hashing of a key over active, up upstreams, ignoring session counts:
   * every gateway computes the same answer without asking the store, which is what routing needs while the store
   * is unreachable.
   * @returns the upstream, or `undefined` when none is active and up
   */
  hashPick (key: string): ResolvedUpstream | undefined {
    const now = Date.now()
    const candidates = this.#activeUp(now)
    let best: ResolvedUpstream | undefined
    let bestScore = -Infinity
    for (const u of candidates) {
      const score = rendezvousScore(key, u)
      if (score > bestScore) {
        best = u
        bestScore = score
      }
    }
    return best
  }

  /**
   * Counts a session on an upstream at once, before the store has the binding, so new sessions arriving together see
   * each other and spread; until the next store-wide count replaces the figure. The pool keeps its counts right
   * only through these reservations: whoever reserves takes the slot back with `release()` when no binding was
   * made after all (the key was bound already, or the store failed).
   * @returns the reservation (releasing it twice takes back nothing more)
   */
  reserve (upstreamId: string): SessionReservation {
    this.#add(upstreamId, 1)
    return new SessionReservation(this, upstreamId)
  }

  /** @internal {@link SessionReservation.release} */
  releaseReservation (upstreamId: string): void {
    this.#add(upstreamId, -1)
  }

  #add (upstreamId: string, delta: 1 | -1): void {
    const count = (this.#counts.get(upstreamId) ?? 0) + delta
    if (count >= 0) this.#counts.set(upstreamId, count)
    // A read in flight may have been answered before this binding: it is added on top when the read lands.
    if (this.#refreshing !== undefined) {
      const during = (this.#boundDuringRefresh.get(upstreamId) ?? 0) + delta
      if (during >= 0) this.#boundDuringRefresh.set(upstreamId, during)
    }
  }

  /**
   * Smooth weighted round robin (as nginx does it) over active, up upstreams, for requests without affinity:
   * over any window of `sum(weights)` picks each is chosen in proportion to its weight, interleaved.
   * @returns the upstream, or `undefined` when none is active and up
   */
  nextRoundRobin (): ResolvedUpstream | undefined {
    const now = Date.now()
    const candidates = this.#activeUp(now)
    return smoothRoundRobin(candidates, candidates.map((u) => this.#effectiveWeight(u, now)), this.#currentWeight)
  }

  /**
   * Re-reads store-wide session counts. Concurrent calls share one read; a failing store keeps the old figures.
   */
  refreshCounts (): Promise<void> {
    this.#refreshing ??= this.#store.sessionCounts(this.name, this.upstreams.map((u) => u.id))
      .then((counts) => {
        for (const [id, count] of Object.entries(counts)) this.#counts.set(id, count + (this.#boundDuringRefresh.get(id) ?? 0))
        this.#countsReadAt = Date.now()
      }, () => {
        this.#countsReadAt = Date.now() // a failing store is not asked again on every new session
      })
      .finally(() => {
        this.#refreshing = undefined
        this.#boundDuringRefresh.clear()
      })
    return this.#refreshing
  }

  #activeUp (now: number): ResolvedUpstream[] {
    return this.upstreams.filter((u) => this.#effectiveWeight(u, now) > 0)
  }

  #leastLoaded (candidates: readonly ResolvedUpstream[], now: number): ResolvedUpstream | undefined {
    if (candidates.length === 0) return undefined
    // Ties (an empty pool, equal loads) rotate, so equal upstreams take turns.
    const start = this.#tieBreak++ % candidates.length
    let best: ResolvedUpstream | undefined
    let bestLoad = Infinity
    for (let i = 0; i < candidates.length; i++) {
      const candidate = candidates[(start + i) % candidates.length]
      const load = loadOf(candidate, this.#effectiveWeight(candidate, now), this.#counts)
      if (load < bestLoad) {
        best = candidate
        bestLoad = load
      }
    }
    return best
  }

  // 0 for upstreams that take no new sessions; a ramp while slow start lasts after one became active again.
  #effectiveWeight (upstream: ResolvedUpstream, now: number): number {
    const status = this.#statuses.get(upstream.id)
    if (status === undefined) return upstream.weight
    if (status.down || status.admin !== 'active') return 0
    const slowStart = this.config.slowStartMs
    const age = now - status.changedAt
    if (slowStart === 0 || age >= slowStart) return upstream.weight
    return upstream.weight * Math.max(SLOW_START_FLOOR, age / slowStart)
  }
}

function validMember (id: string, url: string, weight: number): ResolvedUpstream | undefined {
  try {
    return resolveUpstream('store member', { id, url, weight })
  } catch {
    return undefined
  }
}
