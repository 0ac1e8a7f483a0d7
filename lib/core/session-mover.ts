/**
 * One planned session move (`bindings.move(..., { handoff: true })`, and each move of an evacuation or a
 * rebalance: lib/core/move-jobs.ts). With handoff the session's state goes along: export at the old upstream
 * (which freezes the session), import at the new one, commit at the old one (which from then on answers the
 * session's requests with a 421 the gateways follow), then the compare-and-set rebind every gateway follows. Any
 * failure before the commit aborts at the old upstream: the session stays where it was, its held requests are
 * served there. Framework-free.
 */
import { HandoffClient } from './handoff-client'
import { HANDOFF_VERSION } from './handoff-protocol'
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
  /** The old upstream stopped holding the session (its hold ran out) before the move was done, and served it. */
  | 'hold-expired'
  /** No upstream can take the session. */
  | 'no-target'

/** What one move did. */
export type MoveOutcome =
  | { readonly moved: true, readonly to: string, readonly withState: boolean, readonly holdMs: number }
  | { readonly moved: false, readonly reason: MoveFailure }

/** What the mover reports, for metrics. */
export interface MoveObserver {
  onMove (pool: string, outcome: MoveOutcome, durationMs: number): void
}

/** Options of one move. */
export interface MoveOptions {
  /** Carry the session's state (needs the `handoff` option); `false` rebinds only. @defaultValue whether `handoff` is set */
  readonly handoff?: boolean
}

/** Moves sessions between the upstreams of a pool. */
export class SessionMover {
  readonly #store: BindingStore
  readonly #handoff: ResolvedHandoff | undefined
  readonly #client: HandoffClient | undefined
  readonly #log: CoreLogger
  readonly #observer: MoveObserver | undefined

  /** @param deps - the store (rebinds), the resolved `handoff` option (off: moves rebind only), the log, metrics */
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
      // Another move (another gateway's, an evacuation's) handed it over a moment ago: its binding is that move's to set.
      if (exported.error === 'moved') return { moved: false, reason: 'changed' }
      const reason: MoveFailure = exported.error === 'unsupported' ? 'unsupported' : exported.error === 'busy' ? 'busy' : exported.error === 'too-large' ? 'too-large' : 'export-failed'
      return { moved: false, reason }
    }
    const answer = exported.body as { v?: unknown, session?: unknown, state?: unknown } | null
    // A 2xx that is not the protocol's answer (an app's own catch-all route) exported nothing: no move, no loss.
    if (answer === null || answer.v !== HANDOFF_VERSION || answer.session !== keyId) {
      await this.#abort(from, keyId)
      return { moved: false, reason: 'unsupported' }
    }
    const state = answer.state
    const imported = await client.importSession(to, keyId, state)
    if (!imported.ok) {
      await this.#abort(from, keyId)
      return { moved: false, reason: 'import-failed' }
    }
    // Commit before the rebind: an old upstream whose hold ran out has served the held requests from its own copy
    // (409 expired), and the session must then stay there, or their changes would be lost. Between the commit and
    // the rebind, its requests get 421 and wait for the rebind (SessionMover.whereNow) on whichever gateway.
    const committed = await client.finish(from, keyId, 'commit')
    if (!committed.ok && committed.status !== 0) return { moved: false, reason: 'hold-expired' }
    // An old upstream that died after its export (status 0) has no copy left to serve: the imported state is the session.
    // After the commit the old upstream answers 421 for the session: the rebind must land, so a store hiccup is retried.
    let rebound = await this.#rebind(pool, keyId, from, to, true, Date.now() - frozenAt)
    for (let attempt = 1; attempt < 4 && !rebound.moved && rebound.reason === 'store-failed'; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 100 * attempt))
      rebound = await this.#rebind(pool, keyId, from, to, true, Date.now() - frozenAt)
    }
    if (!rebound.moved) {
      // A failover or an eviction got there first: the state went to `to`, the binding elsewhere. Nothing to undo at
      // the old upstream (it committed); said, since the session's state is now where its binding is not.
      this.#log.warn({ pool: pool.name, keyId, from: from.id, to: to.id, reason: rebound.reason }, 'fastify-sticky: a session was handed over but its binding changed meanwhile')
    }
    return rebound
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
    // The rebind comes right after the commit that sent the 421: a hold's worth and a little covers it.
    const deadline = Date.now() + (this.#handoff?.holdMs ?? 0) + 500
    for (;;) {
      const binding = await this.#store.get(pool.name, keyId).catch(() => null)
      if (binding !== null && binding.upstreamId !== staleId) return pool.get(binding.upstreamId)
      if (Date.now() >= deadline) return undefined
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  }
}
