/**
 * A named pool of upstreams: their shared state (active, draining, down) and how new sessions and stateless
 * requests are spread over them.
 */
import type { ResolvedPool, ResolvedUpstream } from '../options'
import type { BindingStore, UpstreamStateChange, UpstreamStatus } from '../store/binding-store'

/** How often the store-wide session counts are re-read while new sessions arrive. */
export const SESSION_COUNT_REFRESH_MS = 1000
// A ramping upstream still gets a trickle, so slow start never starves it completely.
const SLOW_START_FLOOR = 0.05

/** An upstream's state as routing sees it: `down` wins over `draining`. */
export type UpstreamState = 'active' | 'draining' | 'down'

const ACTIVE_UP: UpstreamStatus = Object.freeze({ admin: 'active', down: false, changedAt: 0 })

/** The upstreams of one pool, with least-sessions and weighted round-robin selection. */
export class UpstreamPool {
  /** The pool's name. */
  readonly name: string
  /** Its upstreams, in configured order. */
  readonly upstreams: readonly ResolvedUpstream[]
  /** Its validated settings (health checks, cool-down, slow start). */
  readonly config: ResolvedPool
  readonly #byId: ReadonlyMap<string, ResolvedUpstream>
  readonly #store: BindingStore
  readonly #counts = new Map<string, number>()
  readonly #currentWeight = new Map<string, number>()
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
    this.upstreams = config.upstreams
    this.#byId = new Map(config.upstreams.map((u) => [u.id, u]))
    this.#store = store
    for (const u of config.upstreams) {
      this.#counts.set(u.id, 0)
      this.#currentWeight.set(u.id, 0)
    }
  }

  /** @returns the upstream with this id, or `undefined` when the pool has none */
  get (id: string): ResolvedUpstream | undefined {
    return this.#byId.get(id)
  }

  /** @returns the shared status of an upstream (active and up when nothing was ever recorded) */
  status (id: string): UpstreamStatus {
    return this.#statuses.get(id) ?? ACTIVE_UP
  }

  /** @returns `down`, `draining` or `active` */
  state (id: string): UpstreamState {
    const status = this.status(id)
    return status.down ? 'down' : status.admin
  }

  /** Replaces the known shared states with what the store holds (called about once a second). */
  applyStates (statuses: Record<string, UpstreamStatus>): void {
    this.#statuses = new Map(Object.entries(statuses))
  }

  /** Applies a change locally at once, ahead of the next read from the store. */
  applyLocalChange (id: string, change: UpstreamStateChange, now = Date.now()): void {
    const current = this.status(id)
    const admin = change.admin ?? current.admin
    const down = change.down ?? current.down
    if (admin !== current.admin || down !== current.down) this.#statuses.set(id, { admin, down, changedAt: now })
  }

  /**
   * Chooses the upstream for a new session among active, up upstreams: fewest live sessions relative to its
   * weight (scaled down during slow start), store-wide. Counts are re-read from the store at most once a second,
   * in the background; bindings this gateway makes in between are added locally, so a burst is spread.
   * @returns the upstream, or `undefined` when none can take new sessions
   */
  pickForNewSession (): ResolvedUpstream | undefined {
    const now = Date.now()
    if (now - this.#countsReadAt > SESSION_COUNT_REFRESH_MS) void this.refreshCounts()
    const list = this.upstreams
    // Ties (an empty pool, equal loads) rotate, so equal upstreams take turns.
    const start = this.#tieBreak++ % list.length
    let best: ResolvedUpstream | undefined
    let bestLoad = Infinity
    for (let i = 0; i < list.length; i++) {
      const candidate = list[(start + i) % list.length]
      const weight = this.#effectiveWeight(candidate, now)
      if (weight === 0) continue
      const load = ((this.#counts.get(candidate.id) ?? 0) + 1) / weight
      if (load < bestLoad) {
        best = candidate
        bestLoad = load
      }
    }
    return best
  }

  /** Records a binding this gateway just made, until the next store-wide count replaces the figure. */
  noteBound (upstreamId: string): void {
    this.#counts.set(upstreamId, (this.#counts.get(upstreamId) ?? 0) + 1)
  }

  /**
   * Smooth weighted round robin (as nginx does it) over active, up upstreams: over any window of
   * `sum(weights)` picks each is chosen in proportion to its weight, interleaved rather than in runs.
   * @returns the upstream, or `undefined` when none is active and up
   */
  nextRoundRobin (): ResolvedUpstream | undefined {
    const now = Date.now()
    let best: ResolvedUpstream | undefined
    let bestWeight = -Infinity
    let total = 0
    for (const u of this.upstreams) {
      const weight = this.#effectiveWeight(u, now)
      if (weight === 0) continue
      total += weight
      const current = (this.#currentWeight.get(u.id) ?? 0) + weight
      this.#currentWeight.set(u.id, current)
      if (current > bestWeight) {
        best = u
        bestWeight = current
      }
    }
    if (best !== undefined) this.#currentWeight.set(best.id, bestWeight - total)
    return best
  }

  /**
   * Re-reads store-wide session counts. Concurrent calls share one read; a failing store keeps the old figures.
   */
  refreshCounts (): Promise<void> {
    this.#refreshing ??= this.#store.sessionCounts(this.name, this.upstreams.map((u) => u.id))
      .then((counts) => {
        for (const [id, count] of Object.entries(counts)) this.#counts.set(id, count)
        this.#countsReadAt = Date.now()
      }, () => {
        this.#countsReadAt = Date.now() // a failing store is not asked again on every new session
      })
      .finally(() => { this.#refreshing = undefined })
    return this.#refreshing
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
