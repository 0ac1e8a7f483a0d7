/**
 * Prometheus metrics of one plugin registration, with prom-client. The request path pays one `Map` lookup and one
 * integer increment per response; labelled series are written when the registry is scraped (`collect()`), and
 * store-wide figures (live sessions) are read then too, at most once a second.
 *
 * Why ~350 lines: every series of a registration (requests, store operations, near cache, forward errors, upstream
 * states, sessions) is declared here with its help text and its scrape-time `collect()`, so the exposition that
 * docs/operating.md lists is read in one place; split by series, each file would repeat the registry plumbing.
 */
import type { MoveOutcome } from '../core/session-mover'
import { Counter, Gauge, Histogram, register as globalRegistry, type Registry } from 'prom-client'
import type { CookieRejection, StickyDecision, StickyDecisionKind } from '../affinity/decision'
import { InvalidOptionError } from '../errors'
import type { UpstreamState } from '../pool/upstream-pool'

/** What a response hook reads of a request: its routing decision (Fastify's `request.sticky`). */
export interface ObservedRequest {
  readonly sticky: StickyDecision | null
}

/** What a response hook reads of a reply. */
export interface ObservedReply {
  readonly statusCode: number
}

/** A response hook in Fastify's `onResponse` shape, typed by what it reads (this module loads nothing of Fastify). */
export type ResponseHook = (request: ObservedRequest, reply: ObservedReply, done: () => void) => void

/** What metrics read at scrape time: a subset of `app.sticky`. */
export interface MetricsSource {
  readonly pools: ReadonlyMap<string, { readonly name: string, readonly upstreams: ReadonlyArray<{ readonly id: string }> }>
  readonly stats: {
    /** Ignored routing cookies, by reason. */
    readonly invalidCookie: Readonly<Partial<Record<CookieRejection, number>>>
    /** Requests whose other affinity keys were all refused, when the plugin counts them. */
    readonly invalidKey?: number
  }
  sessionCounts (pool: string): Promise<Record<string, number>>
  state (pool: string, upstreamId: string): UpstreamState
}

/** The `decision` label of `sticky_requests_total`: a routing decision, or `unavailable` (answered 503). */
export type RequestDecisionLabel = StickyDecisionKind | 'unavailable'

/** Status of an answer the gateway made itself because forwarding failed. */
export type ForwardErrorStatus = 502 | 503 | 504

/** Store methods that are timed. */
export type StoreOperation =
  | 'sharedSalt' | 'get' | 'bindIfAbsent' | 'rebind' | 'touch' | 'delete' | 'sessionCounts' | 'upstreamStates' | 'setUpstreamState'

/** Every {@link StoreOperation}, in a stable order. */
export const STORE_OPERATIONS: readonly StoreOperation[] = Object.freeze([
  'sharedSalt', 'get', 'bindIfAbsent', 'rebind', 'touch', 'delete', 'sessionCounts', 'upstreamStates', 'setUpstreamState'
])

/** Live session counts are re-read from the store at most this often, whatever the scrape rate. */
export const SESSION_COUNTS_MAX_AGE_MS = 1000

/** Buckets of `sticky_store_operation_duration_seconds`: 100 µs (memory, near Redis) to 1 s (a struggling Redis). */
export const STORE_DURATION_BUCKETS: readonly number[] = Object.freeze([0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1])

const STATES: readonly UpstreamState[] = ['active', 'draining', 'down']

/** Options of {@link StickyMetrics}. */
export interface StickyMetricsOptions {
  /**
   * Where the metrics are registered.
   * @defaultValue prom-client's global registry
   */
  readonly registry?: Registry
}

/** Timing and failure counting of one store operation (see {@link instrumentStore}). */
export interface StoreOperationMetrics {
  /** Records one call that took `seconds`. */
  observe (seconds: number): void
  /** Counts one failed call. */
  failed (): void
}

/** What a near-cache reports (lookups answered locally or passed on to the store). */
export interface NearCacheMetrics {
  hit (pool: string): void
  miss (pool: string): void
}

interface Slot {
  readonly labels: Record<string, string>
  count: number
}

/** Metric names, all under `sticky_`. */
export const METRIC_NAMES = Object.freeze({
  requests: 'sticky_requests_total',
  invalidCookies: 'sticky_invalid_cookies_total',
  invalidKeys: 'sticky_invalid_keys_total',
  sessions: 'sticky_sessions',
  upstreamState: 'sticky_upstream_state',
  forwardErrors: 'sticky_forward_errors_total',
  storeDuration: 'sticky_store_operation_duration_seconds',
  storeErrors: 'sticky_store_errors_total',
  nearCacheHits: 'sticky_near_cache_hits_total',
  nearCacheMisses: 'sticky_near_cache_misses_total',
  sessionMoves: 'sticky_session_moves_total',
  sessionMoveHold: 'sticky_session_move_hold_seconds'
})

/**
 * The metrics of one plugin registration.
 * @example
 * const metrics = new StickyMetrics({ registry })
 * const store = instrumentStore(rawStore, metrics)
 * // … once `app.sticky` exists:
 * metrics.attach(app.sticky)
 * // per sticky route, in onRoute:
 * routeOptions.onResponse = [...existing, metrics.responseHook(routeOptions.url, route.pool)]
 */
export class StickyMetrics {
  /** The registry the metrics live in. */
  readonly registry: Registry
  readonly #names: string[] = []
  readonly #requestSlots = new Map<string, Slot>()
  readonly #forwardErrors: Counter<'pool' | 'status'>
  readonly #forwardErrorChildren = new Map<string, { inc (): void }>()
  readonly #storeDuration: Histogram<'operation'>
  readonly #storeErrors: Counter<'operation'>
  readonly #moves: Counter<'pool' | 'outcome' | 'reason'>
  readonly #moveHold: Histogram<'pool'>
  #nearCache: NearCacheMetrics | undefined
  #source: MetricsSource | undefined
  #counts = new Map<string, Record<string, number>>()
  #countsReadAt = 0
  #countsReading: Promise<void> | undefined

  /**
   * Registers the metrics.
   * @throws FST_STICKY_INVALID_OPTION when the registry already holds fastify-sticky metrics (another registration
   * of the plugin in this process: give each its own `Registry`)
   */
  constructor (options: StickyMetricsOptions = {}) {
    const registry = options.registry ?? globalRegistry
    this.registry = registry
    if (registry.getSingleMetric(METRIC_NAMES.requests) !== undefined) {
      throw new InvalidOptionError('metrics.registry already holds sticky_* metrics (another registration of fastify-sticky?): ' +
        'give each registration its own prom-client Registry')
    }
    const slots = this.#requestSlots
    new Counter({
      name: METRIC_NAMES.requests,
      help: 'Requests on sticky routes, by pool, route and routing decision (hit, new, rebind, degraded, unbound: over a new-binding budget, none, unavailable)',
      labelNames: ['pool', 'route', 'decision'],
      registers: [registry],
      collect () {
        this.reset()
        for (const slot of slots.values()) this.inc(slot.labels, slot.count)
      }
    })
    const self = this
    new Counter({
      name: METRIC_NAMES.invalidCookies,
      help: 'Routing cookies ignored (their requests are counted as new sessions), by reason',
      labelNames: ['reason'],
      registers: [registry],
      collect () {
        const counts = self.#source?.stats.invalidCookie
        if (counts === undefined) return
        this.reset()
        for (const [reason, count] of Object.entries(counts)) this.inc({ reason }, count ?? 0)
      }
    })
    new Counter({
      name: METRIC_NAMES.invalidKeys,
      help: 'Requests whose affinity key values (address, header, query, app cookie) were all refused; balanced without a binding',
      registers: [registry],
      collect () {
        const count = self.#source?.stats.invalidKey
        if (count === undefined) return
        this.reset()
        this.inc(count)
      }
    })
    new Gauge({
      name: METRIC_NAMES.sessions,
      help: 'Live sessions bound to each upstream, store-wide (every gateway together); read at most once a second',
      labelNames: ['pool', 'upstream'],
      registers: [registry],
      async collect () {
        await self.#refreshCounts()
        this.reset()
        for (const [pool, counts] of self.#counts) {
          for (const [upstream, count] of Object.entries(counts)) this.set({ pool, upstream }, count)
        }
      }
    })
    new Gauge({
      name: METRIC_NAMES.upstreamState,
      help: 'Upstream state as this gateway sees it: 1 for the current state (active, draining, down), 0 for the others',
      labelNames: ['pool', 'upstream', 'state'],
      registers: [registry],
      collect () {
        const source = self.#source
        if (source === undefined) return
        this.reset()
        for (const pool of source.pools.values()) {
          for (const u of pool.upstreams) {
            const current = source.state(pool.name, u.id)
            for (const state of STATES) this.set({ pool: pool.name, upstream: u.id, state }, state === current ? 1 : 0)
          }
        }
      }
    })
    this.#forwardErrors = new Counter({
      name: METRIC_NAMES.forwardErrors,
      help: 'Answers the gateway made itself because a request could not be forwarded: 502 bad gateway, 503 no upstream, 504 timeout',
      labelNames: ['pool', 'status'],
      registers: [registry]
    })
    this.#storeDuration = new Histogram({
      name: METRIC_NAMES.storeDuration,
      help: 'Duration of binding store operations, in seconds',
      labelNames: ['operation'],
      buckets: [...STORE_DURATION_BUCKETS],
      registers: [registry]
    })
    this.#storeErrors = new Counter({
      name: METRIC_NAMES.storeErrors,
      help: 'Binding store operations that failed',
      labelNames: ['operation'],
      registers: [registry]
    })
    this.#moves = new Counter({
      name: METRIC_NAMES.sessionMoves,
      help: 'Planned session moves (bindings.move with handoff, evacuate, rebalance) this gateway made: outcome moved (reason: with-state, without-state) or stayed (reason: why)',
      labelNames: ['pool', 'outcome', 'reason'],
      registers: [registry]
    })
    this.#moveHold = new Histogram({
      name: METRIC_NAMES.sessionMoveHold,
      help: 'How long a moved session was frozen at its old upstream (export to commit), in seconds',
      labelNames: ['pool'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry]
    })
    this.#names.push(METRIC_NAMES.requests, METRIC_NAMES.invalidCookies, METRIC_NAMES.invalidKeys, METRIC_NAMES.sessions,
      METRIC_NAMES.upstreamState, METRIC_NAMES.forwardErrors, METRIC_NAMES.storeDuration, METRIC_NAMES.storeErrors,
      METRIC_NAMES.sessionMoves, METRIC_NAMES.sessionMoveHold)
  }

  /** Counts one planned session move (the session mover's observer). */
  onMove (pool: string, outcome: MoveOutcome): void {
    if (outcome.moved) {
      this.#moves.inc({ pool, outcome: 'moved', reason: outcome.withState ? 'with-state' : 'without-state' })
      if (outcome.withState) this.#moveHold.observe({ pool }, outcome.holdMs / 1000)
    } else {
      this.#moves.inc({ pool, outcome: 'stayed', reason: outcome.reason })
    }
  }

  /** Gives the metrics the plugin's API to read session counts, states and cookie rejections from at scrape time. */
  attach (source: MetricsSource): void {
    this.#source = source
  }

  /**
   * An `onResponse` hook for one sticky route: counts the response under its pool, route and decision. A response
   * without a decision is counted as `unavailable` when it is a 503 (no upstream could take it), and not at all
   * otherwise (another hook answered first).
   * @param route - the route label, e.g. its URL pattern `/shop/*` (keep it low-cardinality)
   * @param pool - the route's pool
   */
  responseHook (route: string, pool: string): ResponseHook {
    const byDecision = new Map<string, Slot>()
    const slotOf = (decisionPool: string, decision: RequestDecisionLabel): Slot => {
      if (decisionPool !== pool) return this.#slot(decisionPool, route, decision)
      let slot = byDecision.get(decision)
      if (slot === undefined) {
        slot = this.#slot(pool, route, decision)
        byDecision.set(decision, slot)
      }
      return slot
    }
    return function stickyMetricsOnResponse (request: ObservedRequest, reply: ObservedReply, done: () => void): void {
      const sticky = request.sticky
      if (sticky !== null) slotOf(sticky.pool, sticky.decision).count++
      else if (reply.statusCode === 503) slotOf(pool, 'unavailable').count++
      done()
    }
  }

  /**
   * Counts one response, as {@link StickyMetrics.responseHook} does, for callers that run their own hook.
   * @param route - the route label
   * @param pool - the route's pool
   */
  observeResponse (request: ObservedRequest, reply: ObservedReply, route: string, pool: string): void {
    const sticky = request.sticky
    if (sticky !== null) this.#slot(sticky.pool, route, sticky.decision).count++
    else if (reply.statusCode === 503) this.#slot(pool, route, 'unavailable').count++
  }

  /**
   * Counts an answer the gateway made itself because forwarding failed (for `ForwarderDeps.onForwardError`).
   * @param pool - the request's pool (`''` when unknown)
   */
  readonly onForwardError = (pool: string, status: ForwardErrorStatus): void => {
    const key = pool + '\0' + status
    let child = this.#forwardErrorChildren.get(key)
    if (child === undefined) {
      child = this.#forwardErrors.labels(pool, String(status))
      this.#forwardErrorChildren.set(key, child)
    }
    child.inc()
  }

  /** @returns the timing and failure counters of one store operation (cached label children) */
  storeOperation (operation: StoreOperation): StoreOperationMetrics {
    const duration = this.#storeDuration.labels(operation)
    const errors = this.#storeErrors.labels(operation)
    return {
      observe: (seconds) => { duration.observe(seconds) },
      failed: () => { errors.inc() }
    }
  }

  /**
   * Registers the near-cache counters (on first call) and returns what a near-cache reports through. The hook for
   * the near-cache module; without one, these series do not exist.
   */
  nearCache (): NearCacheMetrics {
    if (this.#nearCache !== undefined) return this.#nearCache
    const hitSlots = new Map<string, Slot>()
    const missSlots = new Map<string, Slot>()
    const counter = (name: string, help: string, slots: Map<string, Slot>): Counter<'pool'> => new Counter({
      name,
      help,
      labelNames: ['pool'],
      registers: [this.registry],
      collect () {
        this.reset()
        for (const slot of slots.values()) this.inc(slot.labels, slot.count)
      }
    })
    counter(METRIC_NAMES.nearCacheHits, 'Binding lookups answered by the near-cache', hitSlots)
    counter(METRIC_NAMES.nearCacheMisses, 'Binding lookups the near-cache passed on to the store', missSlots)
    this.#names.push(METRIC_NAMES.nearCacheHits, METRIC_NAMES.nearCacheMisses)
    const count = (slots: Map<string, Slot>, pool: string): void => {
      let slot = slots.get(pool)
      if (slot === undefined) {
        slot = { labels: { pool }, count: 0 }
        slots.set(pool, slot)
      }
      slot.count++
    }
    this.#nearCache = { hit: (pool) => { count(hitSlots, pool) }, miss: (pool) => { count(missSlots, pool) } }
    return this.#nearCache
  }

  /** Removes every metric of this instance from its registry (on close, so the plugin can be registered again). */
  unregister (): void {
    for (const name of this.#names) this.registry.removeSingleMetric(name)
    this.#names.length = 0
  }

  #slot (pool: string, route: string, decision: RequestDecisionLabel): Slot {
    const key = pool + '\0' + route + '\0' + decision
    let slot = this.#requestSlots.get(key)
    if (slot === undefined) {
      slot = { labels: { pool, route, decision }, count: 0 }
      this.#requestSlots.set(key, slot)
    }
    return slot
  }

  // Concurrent scrapes share one read; a pool whose read fails keeps its last figures.
  #refreshCounts (): Promise<void> {
    const source = this.#source
    if (source === undefined || Date.now() - this.#countsReadAt < SESSION_COUNTS_MAX_AGE_MS) return Promise.resolve()
    this.#countsReading ??= Promise.all([...source.pools.keys()].map(async (pool) => {
      try {
        this.#counts.set(pool, await source.sessionCounts(pool))
      } catch {
        // The store's own error counter already says why; a stale figure beats a missing series.
      }
    })).then(() => { this.#countsReadAt = Date.now() })
      .finally(() => { this.#countsReading = undefined })
    return this.#countsReading
  }
}
