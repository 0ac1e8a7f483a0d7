/**
 * A named pool of upstreams and how new sessions are spread over it.
 */
import type { ResolvedUpstream } from '../options'
import type { BindingStore } from '../store/binding-store'

/** How often the store-wide session counts are re-read while new sessions arrive. */
export const SESSION_COUNT_REFRESH_MS = 1000

/** The upstreams of one pool, with least-sessions and weighted round-robin selection. */
export class UpstreamPool {
  /** The pool's name. */
  readonly name: string
  /** Its upstreams, in configured order. */
  readonly upstreams: readonly ResolvedUpstream[]
  readonly #byId: ReadonlyMap<string, ResolvedUpstream>
  readonly #store: BindingStore
  readonly #counts = new Map<string, number>()
  readonly #currentWeight = new Map<string, number>()
  readonly #totalWeight: number
  #countsReadAt = 0
  #refreshing: Promise<void> | undefined
  #tieBreak = 0

  /**
   * @param name - pool name
   * @param upstreams - validated upstreams (at least one)
   * @param store - where store-wide session counts come from
   */
  constructor (name: string, upstreams: readonly ResolvedUpstream[], store: BindingStore) {
    this.name = name
    this.upstreams = upstreams
    this.#byId = new Map(upstreams.map((u) => [u.id, u]))
    this.#store = store
    this.#totalWeight = upstreams.reduce((sum, u) => sum + u.weight, 0)
    for (const u of upstreams) {
      this.#counts.set(u.id, 0)
      this.#currentWeight.set(u.id, 0)
    }
  }

  /** @returns the upstream with this id, or `undefined` when the pool has none */
  get (id: string): ResolvedUpstream | undefined {
    return this.#byId.get(id)
  }

  /**
   * Chooses the upstream for a new session: fewest live sessions relative to its weight, store-wide.
   * Counts are re-read from the store at most once a second, in the background; bindings this gateway makes
   * in between are added locally, so a burst is spread rather than all sent to the same upstream.
   */
  pickForNewSession (): ResolvedUpstream {
    if (Date.now() - this.#countsReadAt > SESSION_COUNT_REFRESH_MS) void this.refreshCounts()
    const list = this.upstreams
    // Ties (an empty pool, equal loads) rotate, so equal upstreams take turns.
    const start = this.#tieBreak++ % list.length
    let best = list[start]
    let bestLoad = ((this.#counts.get(best.id) ?? 0) + 1) / best.weight
    for (let i = 1; i < list.length; i++) {
      const candidate = list[(start + i) % list.length]
      const load = ((this.#counts.get(candidate.id) ?? 0) + 1) / candidate.weight
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
   * Smooth weighted round robin (as nginx does it): over any window of `sum(weights)` picks, each upstream
   * is chosen in proportion to its weight, interleaved rather than in runs.
   */
  nextRoundRobin (): ResolvedUpstream {
    let best: ResolvedUpstream | undefined
    let bestWeight = -Infinity
    for (const u of this.upstreams) {
      const current = (this.#currentWeight.get(u.id) ?? 0) + u.weight
      this.#currentWeight.set(u.id, current)
      if (current > bestWeight) {
        best = u
        bestWeight = current
      }
    }
    const chosen = best ?? this.upstreams[0]
    this.#currentWeight.set(chosen.id, bestWeight - this.#totalWeight)
    return chosen
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

  /** @returns the last known store-wide session count of each upstream */
  knownCounts (): Record<string, number> {
    return Object.fromEntries(this.#counts)
  }
}
