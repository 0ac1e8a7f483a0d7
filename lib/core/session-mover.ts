/**
 * Planned session moves: one session (`bindings.move(..., { handoff: true })`), every session of an upstream
 * (evacuate), or enough sessions to even a pool out (rebalance). With handoff the session's state goes along:
 * export at the old upstream (which freezes the session), import at the new one, the compare-and-set rebind every
 * gateway follows, then commit at the old upstream (which sends the session's held requests on, through a 421 the
 * gateways retry). Any failure before the rebind aborts at the old upstream: the session stays where it was, its
 * held requests are served there. Framework-free.
 */
import { HandoffClient } from './handoff-client'
import type { CoreLogger } from './logger'
import type { ResolvedHandoff, ResolvedUpstream } from '../options'
import type { UpstreamPool } from '../pool/upstream-pool'
import type { BindingStore } from '../store/binding-store'

/** Why a session was not moved. */
export type MoveFailure =
  /** The binding changed meanwhile (a failover, another move), or the session ended. */
  | 'changed'
  /** The old upstream did not answer the export: not a planned move any more; failover takes it on its next request. */
  | 'source-unreachable'
  /** The old upstream's app does not serve the handoff endpoints (no `fastify-sticky/upstream`). */
  | 'unsupported'
  /** The old upstream kept requests of the session in flight past the timeout. */
  | 'busy'
  /** The state is larger than `handoff.maxStateBytes`. */
  | 'too-large'
  /** The export failed otherwise. */
  | 'export-failed'
  /** The new upstream did not take the state. */
  | 'import-failed'
  /** The store did not take the rebind. */
  | 'store-failed'
  /** No upstream can take the session. */
  | 'no-target'

/** What one move did. */
export type MoveOutcome =
  | { readonly moved: true, readonly to: string, readonly withState: boolean, readonly holdMs: number }
  | { readonly moved: false, readonly reason: MoveFailure }

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

/** What the mover reports, for metrics. */
export interface MoveObserver {
  onMove (pool: string, outcome: MoveOutcome, durationMs: number): void
}

/** Options of one move. */
export interface MoveOptions {
  /** Carry the session's state (needs the `handoff` option); `false` rebinds only. @defaultValue whether `handoff` is set */
  readonly handoff?: boolean
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

/** Moves sessions between the upstreams of a pool. */
export class SessionMover {
  readonly #store: BindingStore
  readonly #handoff: ResolvedHandoff | undefined
  readonly #client: HandoffClient | undefined
  readonly #log: CoreLogger
  readonly #observer: MoveObserver | undefined
  readonly #jobs = new Map<string, RunningJob>()
  #nextJob = 1

  constructor (deps: { store: BindingStore, handoff: ResolvedHandoff | undefined, log: CoreLogger, observer?: MoveObserver }) {
    this.#store = deps.store
    this.#handoff = deps.handoff
    this.#client = deps.handoff === undefined ? undefined : new HandoffClient(deps.handoff)
    this.#log = deps.log
    this.#observer = deps.observer
  }

  /** Whether moves can carry state (`handoff` is set). */
  get handoffEnabled (): boolean {
    return this.#client !== undefined
  }

  /**
   * Moves one session from `from` to `to`, with its state when asked and possible.
   * @returns what happened; never throws
   */
  async move (pool: UpstreamPool, keyId: string, from: ResolvedUpstream, to: ResolvedUpstream, options: MoveOptions = {}): Promise<MoveOutcome> {
    const started = Date.now()
    const outcome = await this.#move(pool, keyId, from, to, options.handoff ?? this.handoffEnabled)
    this.#observer?.onMove(pool.name, outcome, Date.now() - started)
    if (outcome.moved) this.#log.info({ pool: pool.name, keyId, from: from.id, to: to.id, withState: outcome.withState }, 'fastify-sticky: moved a session')
    else this.#log.info({ pool: pool.name, keyId, from: from.id, to: to.id, reason: outcome.reason }, 'fastify-sticky: session not moved')
    return outcome
  }

  async #move (pool: UpstreamPool, keyId: string, from: ResolvedUpstream, to: ResolvedUpstream, handoff: boolean): Promise<MoveOutcome> {
    const client = this.#client
    if (!handoff || client === undefined) return this.#rebind(pool, keyId, from, to, false, 0)
    const frozenAt = Date.now()
    const exported = await client.exportSession(from, keyId)
    if (!exported.ok) {
      if (exported.status === 0) return { moved: false, reason: 'source-unreachable' }
      // 404 unknown-session: the app keeps nothing for it; a stateless move loses nothing.
      if (exported.error === 'unknown-session') return this.#rebind(pool, keyId, from, to, false, 0)
      const reason: MoveFailure = exported.error === 'unsupported' ? 'unsupported' : exported.error === 'busy' ? 'busy' : exported.error === 'too-large' ? 'too-large' : 'export-failed'
      return { moved: false, reason }
    }
    const state = (exported.body as { state?: unknown } | null)?.state
    const imported = await client.importSession(to, keyId, state)
    if (!imported.ok) {
      await this.#abort(from, keyId)
      return { moved: false, reason: 'import-failed' }
    }
    const rebound = await this.#rebind(pool, keyId, from, to, true, 0)
    if (!rebound.moved) {
      await this.#abort(from, keyId)
      return rebound
    }
    const committed = await client.finish(from, keyId, 'commit')
    const holdMs = Date.now() - frozenAt
    if (!committed.ok && committed.status !== 0) {
      // The old upstream gave up waiting (its hold ran out) and served the held requests from its copy: their
      // changes did not come along. Rare with a hold longer than a move takes; said, so it can be seen.
      this.#log.warn({ pool: pool.name, keyId, from: from.id, to: to.id, error: committed.error }, 'fastify-sticky: session moved, but the old upstream had stopped holding it')
    }
    return { ...rebound, holdMs }
  }

  async #rebind (pool: UpstreamPool, keyId: string, from: ResolvedUpstream, to: ResolvedUpstream, withState: boolean, holdMs: number): Promise<MoveOutcome> {
    try {
      const result = await this.#store.rebind(pool.name, keyId, from.id, to.id)
      return result.swapped ? { moved: true, to: to.id, withState, holdMs } : { moved: false, reason: 'changed' }
    } catch (error) {
      this.#log.warn({ err: error, pool: pool.name }, 'fastify-sticky: the store did not take a session move')
      return { moved: false, reason: 'store-failed' }
    }
  }

  async #abort (from: ResolvedUpstream, keyId: string): Promise<void> {
    // Best effort: the old upstream releases the session by itself when its hold runs out anyway.
    await this.#client?.finish(from, keyId, 'abort')
  }

  /**
   * Where a session lives now, after its old upstream said it moved: read from the store again, a few times within
   * the hold (a near cache may learn of the move a moment after the old upstream lets go).
   * @returns the new upstream, or `undefined` when the binding still names `staleId` (or is gone)
   */
  async whereNow (pool: UpstreamPool, keyId: string, staleId: string): Promise<ResolvedUpstream | undefined> {
    const deadline = Date.now() + (this.#handoff?.holdMs ?? 0)
    for (;;) {
      const binding = await this.#store.get(pool.name, keyId).catch(() => null)
      if (binding !== null && binding.upstreamId !== staleId) return pool.get(binding.upstreamId)
      if (Date.now() >= deadline) return undefined
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  }

  /**
   * Drains `upstreamId` and moves every session bound to it to the pool's other upstreams (least loaded first), a few
   * at a time (`handoff.concurrency`). Returns at once; the job runs in the background.
   */
  evacuate (pool: UpstreamPool, upstreamId: string, options: MoveJobOptions = {}): SessionMoveJob {
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
    let outcome = await this.move(pool, keyId, from, target, options)
    if (!outcome.moved && outcome.reason === 'unsupported' && options.withoutState === true) {
      outcome = await this.move(pool, keyId, from, target, { handoff: false })
    }
    if (!outcome.moved) reservation.release()
    this.#count(job, outcome)
    return outcome
  }

  async #runEvacuation (job: RunningJob, pool: UpstreamPool, upstreamId: string, options: MoveJobOptions): Promise<void> {
    const from = pool.get(upstreamId)
    if (from === undefined) return
    if (pool.state(upstreamId) === 'active') {
      pool.applyLocalChange(upstreamId, { admin: 'draining' })
      await this.#store.setUpstreamState(pool.name, upstreamId, { admin: 'draining' })
    }
    const tried = new Set<string>()
    const concurrency = this.#handoff?.concurrency ?? 8
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
    const concurrency = this.#handoff?.concurrency ?? 8
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
        const outcome = await this.move(pool, keyId, from, target, options)
        const final = !outcome.moved && outcome.reason === 'unsupported' && options.withoutState === true
          ? await this.move(pool, keyId, from, target, { handoff: false })
          : outcome
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
