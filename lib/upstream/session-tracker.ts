/**
 * Per-session bookkeeping of an upstream taking part in handoffs: how many of a session's requests the app is
 * serving, which sessions are frozen (their new requests held), and which moved away lately. Framework-free: it
 * sees a request only through its response's `'close'` event, which Node emits exactly once, whether the response
 * finished or the connection was lost, so every count taken is given back exactly once.
 */

/** What becomes of a request of a tracked session. */
export type Admission =
  /** The app serves it (it counts as in flight until its response closes). */
  | 'proceed'
  /** The session moved to another upstream: answer 421 with `x-sticky-moved`. */
  | 'moved'
  /** The client went away while the request was held: end it without the app. */
  | 'closed'

/** The part of a `ServerResponse` the tracker needs. */
export interface TrackedResponse {
  /** `true` once the response has emitted `'close'`. */
  readonly closed: boolean
  once (event: 'close', listener: () => void): unknown
  off (event: 'close', listener: () => void): unknown
}

/** How long after a commit a request of the session is still answered 421 (a gateway's cache may lag that long). */
export const MOVED_ANSWER_MS = 60_000

interface Waiter {
  readonly response: TrackedResponse
  readonly resolve: (admission: Admission) => void
  readonly onClose: () => void
}

/** A frozen session: between an export's start and its commit, abort or expiry. */
export interface Freeze {
  readonly session: string
  /** `draining` until the export has answered; `exported` while the gateway moves the session. */
  phase: 'draining' | 'exported'
  readonly waiters: Set<Waiter>
  expiry: NodeJS.Timeout | undefined
  drained: (() => void) | undefined
}

/** Counts, freezes and moved markers of the sessions one upstream serves. */
export class SessionTracker {
  readonly #inFlight = new Map<string, number>()
  readonly #frozen = new Map<string, Freeze>()
  // Insertion order is expiry order (every marker lives MOVED_ANSWER_MS), so a sweep stops at the first live one.
  readonly #moved = new Map<string, number>()
  readonly #now: () => number

  /** @param now - the clock of the moved markers, ms */
  constructor (now: () => number = Date.now) {
    this.#now = now
  }

  /**
   * @param session - a session handle
   * @returns how many of the session's requests the app is serving now
   */
  inFlight (session: string): number {
    return this.#inFlight.get(session) ?? 0
  }

  /**
   * @param session - a session handle
   * @returns the session's freeze, when it is frozen
   */
  frozen (session: string): Freeze | undefined {
    return this.#frozen.get(session)
  }

  /**
   * Decides a request of `session`: served now (counted until `response` closes), held until the session's freeze
   * ends, or answered "moved".
   * @param session - the request's session handle
   * @param response - its response
   * @returns the admission, synchronously unless the request is held
   */
  admit (session: string, response: TrackedResponse): Admission | Promise<Admission> {
    if (this.isMoved(session)) return 'moved'
    const freeze = this.#frozen.get(session)
    if (freeze === undefined) {
      this.#enter(session, response)
      return 'proceed'
    }
    return new Promise<Admission>((resolve) => {
      const waiter: Waiter = {
        response,
        resolve,
        onClose: () => {
          freeze.waiters.delete(waiter)
          resolve('closed')
        }
      }
      freeze.waiters.add(waiter)
      response.once('close', waiter.onClose)
    })
  }

  /**
   * Freezes a session: its new requests are held from now on.
   * @param session - a session handle
   * @returns the freeze, or `undefined` when the session is frozen already (another export is under way)
   */
  freeze (session: string): Freeze | undefined {
    if (this.#frozen.has(session)) return undefined
    const freeze: Freeze = { session, phase: 'draining', waiters: new Set(), expiry: undefined, drained: undefined }
    this.#frozen.set(session, freeze)
    return freeze
  }

  /**
   * Waits until the frozen session has no request in flight.
   * @param freeze - the session's freeze
   * @param timeoutMs - the longest wait
   * @returns `true` when it drained in time (and is still frozen by `freeze`)
   */
  drain (freeze: Freeze, timeoutMs: number): Promise<boolean> {
    if (this.inFlight(freeze.session) === 0) return Promise.resolve(this.#frozen.get(freeze.session) === freeze)
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        freeze.drained = undefined
        resolve(false)
      }, timeoutMs)
      timer.unref()
      freeze.drained = () => {
        clearTimeout(timer)
        freeze.drained = undefined
        resolve(this.#frozen.get(freeze.session) === freeze)
      }
    })
  }

  /**
   * Marks the freeze exported and ends it by itself (as an abort) after `holdMs`, so a gateway that died mid-move
   * cannot leave the session frozen.
   * @param freeze - the session's freeze
   * @param holdMs - how long it may stay frozen now
   * @param onExpire - called when the hold ran out
   */
  hold (freeze: Freeze, holdMs: number, onExpire: () => void): void {
    freeze.phase = 'exported'
    freeze.expiry = setTimeout(() => {
      if (this.release(freeze, 'proceed')) onExpire()
    }, holdMs)
    freeze.expiry.unref()
  }

  /**
   * Ends a freeze: its held requests are served (`proceed`) or answered "moved" (`moved`, which also marks the
   * session moved for {@link MOVED_ANSWER_MS}).
   * @param freeze - the session's freeze
   * @param outcome - what the held requests get
   * @returns `false` when `freeze` had ended already
   */
  release (freeze: Freeze, outcome: 'proceed' | 'moved'): boolean {
    if (this.#frozen.get(freeze.session) !== freeze) return false
    this.#frozen.delete(freeze.session)
    clearTimeout(freeze.expiry)
    freeze.drained?.()
    if (outcome === 'moved') this.markMoved(freeze.session)
    for (const waiter of freeze.waiters) {
      waiter.response.off('close', waiter.onClose)
      // Counted here, synchronously, not when the promise settles: an export starting in between must wait for it.
      if (outcome === 'proceed') this.#enter(freeze.session, waiter.response)
      waiter.resolve(outcome)
    }
    freeze.waiters.clear()
    return true
  }

  /**
   * Answers the session's requests "moved" for {@link MOVED_ANSWER_MS} from now.
   * @param session - a session handle
   */
  markMoved (session: string): void {
    this.#sweepMoved()
    this.#moved.delete(session)
    this.#moved.set(session, this.#now() + MOVED_ANSWER_MS)
  }

  /**
   * Forgets that the session moved away (it moved back here).
   * @param session - a session handle
   */
  clearMoved (session: string): void {
    this.#moved.delete(session)
  }

  /**
   * @param session - a session handle
   * @returns whether the session moved away less than {@link MOVED_ANSWER_MS} ago
   */
  isMoved (session: string): boolean {
    const until = this.#moved.get(session)
    if (until === undefined) return false
    if (until > this.#now()) return true
    this.#moved.delete(session)
    return false
  }

  /** Ends every freeze (held requests are served) and forgets the moved markers. */
  close (): void {
    for (const freeze of [...this.#frozen.values()]) this.release(freeze, 'proceed')
    this.#moved.clear()
  }

  #enter (session: string, response: TrackedResponse): void {
    // A response that closed already never emits 'close' again: counting it would leak.
    if (response.closed) return
    this.#inFlight.set(session, this.inFlight(session) + 1)
    response.once('close', () => this.#leave(session))
  }

  #leave (session: string): void {
    const count = this.inFlight(session) - 1
    if (count > 0) {
      this.#inFlight.set(session, count)
      return
    }
    this.#inFlight.delete(session)
    this.#frozen.get(session)?.drained?.()
  }

  #sweepMoved (): void {
    const now = this.#now()
    for (const [session, until] of this.#moved) {
      if (until > now) break
      this.#moved.delete(session)
    }
  }
}
