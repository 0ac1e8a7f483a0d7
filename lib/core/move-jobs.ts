/**
 * Evacuations and rebalances: many planned session moves, a few at a time, in the background, with progress a
 * status page and the admin API show and a cancel. Each move is {@link SessionMover.move}. Framework-free.
 */
import type { CoreLogger } from './logger'
import type { ResolvedUpstream } from '../options'
import type { UpstreamPool } from '../pool/upstream-pool'
import type { BindingStore } from '../store/binding-store'
import type { MoveOptions, MoveOutcome, SessionMover } from './session-mover'

/** Progress of one evacuation or rebalance, as `app.sticky` and the admin API show it. */
export interface SessionMoveJob {
  readonly id: string
  readonly kind: 'evacuate' | 'rebalance'
  readonly pool: string
  /** The upstream evacuated; `undefined` for a rebalance. */
  readonly upstream: string | undefined
  readonly state: 'running' | 'done' | 'cancelled'
  readonly moved: number
  /** Sessions that stayed where they were, by reason. */
  readonly failed: Readonly<Record<string, number>>
  readonly startedAt: string
  readonly endedAt: string | null
}

/** Options of an evacuation or a rebalance. */
export interface MoveJobOptions extends MoveOptions {
  /**
   * Sessions whose app has no handoff endpoints are left where they are (the drain waits for them to end) unless
   * this is `true`: then they are rebound without their state (the app is told on their next request).
   * @defaultValue false
   */
  readonly withoutState?: boolean
}

interface RunningJob {
  view: { -readonly [K in keyof SessionMoveJob]: SessionMoveJob[K] } & { failed: Record<string, number> }
  cancelled: boolean
  done: Promise<void>
}

const BATCH = 256
const MAX_JOBS_KEPT = 20
const MAX_ATTEMPTS = 3
const RETRY_PAUSE_MS = 100
const TRANSIENT: ReadonlySet<string> = new Set(['busy', 'hold-expired', 'store-failed'])

/** The evacuations and rebalances of one gateway. */
export class MoveJobs {
  readonly #store: BindingStore
  readonly #mover: SessionMover
  readonly #log: CoreLogger
  readonly #concurrency: number
  readonly #jobs = new Map<string, RunningJob>()
  #nextJob = 1

  /** @param deps - the store (sessions to move, counts), the mover, the log, how many moves at once */
  constructor (deps: { store: BindingStore, mover: SessionMover, log: CoreLogger, concurrency: number }) {
    this.#store = deps.store
    this.#mover = deps.mover
    this.#log = deps.log
    this.#concurrency = deps.concurrency
  }

  /**
   * Drains `upstreamId` and moves every session bound to it to the pool's other upstreams (least loaded first), a few
   * at a time (`handoff.concurrency`). Returns at once; the job runs in the background.
   */
  evacuate (pool: UpstreamPool, upstreamId: string, options: MoveJobOptions = {}): SessionMoveJob {
    // One evacuation of an upstream at a time on a gateway (a double click must not race two movers).
    for (const running of this.#jobs.values()) {
      if (running.view.state === 'running' && running.view.kind === 'evacuate' && running.view.pool === pool.name && running.view.upstream === upstreamId) {
        return { ...running.view, failed: { ...running.view.failed } }
      }
    }
    const job = this.#startJob('evacuate', pool.name, upstreamId)
    job.done = this.#runEvacuation(job, pool, upstreamId, options).catch((error: unknown) => {
      this.#log.warn({ err: error, pool: pool.name, upstream: upstreamId }, 'fastify-sticky: evacuation failed')
    }).finally(() => this.#finish(job))
    return { ...job.view }
  }

  /**
   * Moves sessions from the upstreams above the pool's mean (per weight) to those below, until every upstream is
   * within `tolerance` of it (after a scale-up, the new upstream gets its share now rather than as sessions end).
   */
  rebalance (pool: UpstreamPool, tolerance: number, options: MoveJobOptions = {}): SessionMoveJob {
    const job = this.#startJob('rebalance', pool.name, undefined)
    job.done = this.#runRebalance(job, pool, tolerance, options).catch((error: unknown) => {
      this.#log.warn({ err: error, pool: pool.name }, 'fastify-sticky: rebalance failed')
    }).finally(() => this.#finish(job))
    return { ...job.view }
  }

  /** @returns the evacuations and rebalances of this gateway, newest first (running ones, then the last few ended) */
  jobs (): SessionMoveJob[] {
    return [...this.#jobs.values()].reverse().map((job) => ({ ...job.view, failed: { ...job.view.failed } }))
  }

  /** @returns one job, or `undefined` */
  job (id: string): SessionMoveJob | undefined {
    const job = this.#jobs.get(id)
    return job === undefined ? undefined : { ...job.view, failed: { ...job.view.failed } }
  }

  /** Stops a running job after the moves in progress. @returns whether there was a running job of that id */
  cancel (id: string): boolean {
    const job = this.#jobs.get(id)
    if (job === undefined || job.view.state !== 'running') return false
    job.cancelled = true
    return true
  }

  /** Waits for a job to end (tests, shutdown). */
  async settled (id: string): Promise<void> {
    await this.#jobs.get(id)?.done
  }

  /** Cancels every running job and waits for their moves in progress. */
  async close (): Promise<void> {
    for (const job of this.#jobs.values()) job.cancelled = true
    await Promise.all([...this.#jobs.values()].map((job) => job.done))
  }

  #startJob (kind: SessionMoveJob['kind'], pool: string, upstream: string | undefined): RunningJob {
    const id = `${kind}-${this.#nextJob++}`
    const job: RunningJob = {
      view: { id, kind, pool, upstream, state: 'running', moved: 0, failed: {}, startedAt: new Date().toISOString(), endedAt: null },
      cancelled: false,
      done: Promise.resolve()
    }
    this.#jobs.set(id, job)
    // Ended jobs are kept for the status page, a few only.
    for (const [oldId, old] of this.#jobs) {
      if (this.#jobs.size <= MAX_JOBS_KEPT) break
      if (old.view.state !== 'running') this.#jobs.delete(oldId)
    }
    return job
  }

  #finish (job: RunningJob): void {
    job.view.state = job.cancelled ? 'cancelled' : 'done'
    job.view.endedAt = new Date().toISOString()
    this.#log.info({ job: job.view.id, pool: job.view.pool, upstream: job.view.upstream, moved: job.view.moved, failed: job.view.failed }, `fastify-sticky: ${job.view.kind} ended`)
  }

  #count (job: RunningJob, outcome: MoveOutcome): void {
    if (outcome.moved) job.view.moved++
    else job.view.failed[outcome.reason] = (job.view.failed[outcome.reason] ?? 0) + 1
  }

  // One session to the least loaded upstream that takes new sessions (never back to `from`).
  async #moveOne (job: RunningJob, pool: UpstreamPool, keyId: string, from: ResolvedUpstream, options: MoveJobOptions): Promise<MoveOutcome> {
    const target = pool.pickForNewSession(keyId)
    if (target === undefined || target.id === from.id) {
      const outcome: MoveOutcome = { moved: false, reason: 'no-target' }
      this.#count(job, outcome)
      return outcome
    }
    const reservation = pool.reserve(target.id)
    let outcome = await this.#mover.move(pool, keyId, from, target, options)
    // A busy session, a hold that ran out on a loaded upstream or a store hiccup may pass: a few more tries, spaced.
    for (let attempt = 1; attempt < MAX_ATTEMPTS && !outcome.moved && TRANSIENT.has(outcome.reason) && !job.cancelled; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, RETRY_PAUSE_MS * attempt))
      outcome = await this.#mover.move(pool, keyId, from, target, options)
    }
    if (!outcome.moved) outcome = await this.#withoutStateIfAsked(outcome, pool, keyId, from, target, options)
    if (!outcome.moved) reservation.release()
    this.#count(job, outcome)
    return outcome
  }

  // A session of an app without the handoff endpoints moves without its state only when the job says so.
  async #withoutStateIfAsked (failed: MoveOutcome, pool: UpstreamPool, keyId: string, from: ResolvedUpstream, to: ResolvedUpstream, options: MoveJobOptions): Promise<MoveOutcome> {
    if (failed.moved || failed.reason !== 'unsupported' || options.withoutState !== true) return failed
    return this.#mover.move(pool, keyId, from, to, { handoff: false })
  }

  async #runEvacuation (job: RunningJob, pool: UpstreamPool, upstreamId: string, options: MoveJobOptions): Promise<void> {
    const from = pool.get(upstreamId)
    if (from === undefined) return
    if (pool.state(upstreamId) === 'active') {
      pool.applyLocalChange(upstreamId, { admin: 'draining' })
      await this.#store.setUpstreamState(pool.name, upstreamId, { admin: 'draining' })
    }
    const tried = new Set<string>()
    const concurrency = this.#concurrency
    while (!job.cancelled) {
      const batch = (await this.#store.sessionsOf(pool.name, upstreamId, BATCH + tried.size)).filter((keyId) => !tried.has(keyId))
      if (batch.length === 0) break
      for (const keyId of batch) tried.add(keyId)
      await eachLimited(batch, concurrency, async (keyId) => {
        if (!job.cancelled) await this.#moveOne(job, pool, keyId, from, options)
      })
    }
  }

  async #runRebalance (job: RunningJob, pool: UpstreamPool, tolerance: number, options: MoveJobOptions): Promise<void> {
    const active = pool.upstreams.filter((u) => pool.state(u.id) === 'active')
    if (active.length < 2) return
    const counts = await this.#store.sessionCounts(pool.name, active.map((u) => u.id))
    const totalWeight = active.reduce((sum, u) => sum + u.weight, 0)
    const total = active.reduce((sum, u) => sum + counts[u.id], 0)
    const share = (u: ResolvedUpstream): number => total * u.weight / totalWeight
    const concurrency = this.#concurrency
    // Nothing to do while every upstream is within the tolerance; otherwise every one is brought to its share.
    if (active.every((u) => Math.abs(counts[u.id] - share(u)) <= share(u) * tolerance)) return
    const byLoad = [...active].sort((x, y) => counts[y.id] / share(y) - counts[x.id] / share(x))
    for (const from of byLoad) {
      const excess = counts[from.id] - Math.ceil(share(from))
      if (excess <= 0) continue
      const keyIds = await this.#store.sessionsOf(pool.name, from.id, excess)
      await eachLimited(keyIds, concurrency, async (keyId) => {
        if (job.cancelled) return
        // Only to an upstream still below its share: the least loaded by the pool's own counts.
        const target = leastLoaded(active, counts, share, from)
        if (target === undefined) return
        counts[target.id]++
        counts[from.id]--
        const outcome = await this.#mover.move(pool, keyId, from, target, options)
        const final = outcome.moved ? outcome : await this.#withoutStateIfAsked(outcome, pool, keyId, from, target, options)
        if (!final.moved) {
          counts[target.id]--
          counts[from.id]++
        }
        this.#count(job, final)
      })
      if (job.cancelled) return
    }
  }
}

function leastLoaded (active: readonly ResolvedUpstream[], counts: Record<string, number>, share: (u: ResolvedUpstream) => number, except: ResolvedUpstream): ResolvedUpstream | undefined {
  let best: ResolvedUpstream | undefined
  let bestLoad = Infinity
  for (const u of active) {
    if (u.id === except.id) continue
    const load = counts[u.id] / share(u)
    if (load < bestLoad && counts[u.id] + 1 <= Math.ceil(share(u))) {
      best = u
      bestLoad = load
    }
  }
  return best
}

async function eachLimited<T> (items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await work(items[next++])
  }))
}
