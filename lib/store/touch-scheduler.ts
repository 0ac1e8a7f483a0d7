/**
 * Sliding idle expiry without a store write on every request: each key is touched at most once per
 * tenth of its idle timeout, and touches are sent to the store in batches from a timer, off the request path.
 */
import type { BindingStore, TouchRequest } from './binding-store'

/** How often pending touches are flushed to the store. */
export const TOUCH_FLUSH_INTERVAL_MS = 1000
const MAX_PENDING = 1000
// Forgetting when keys were last touched only costs an early extra touch, so the memory is bounded by keeping
// two generations: when the current one fills up it becomes the previous one, and the older one is dropped.
const GENERATION_SIZE = 50_000

/** Batches and throttles {@link BindingStore.touch} calls. */
export class TouchScheduler {
  readonly #store: BindingStore
  readonly #onError: (error: unknown) => void
  #lastTouched = new Map<string, number>()
  #previouslyTouched = new Map<string, number>()
  #pending = new Map<string, TouchRequest>()
  #timer: NodeJS.Timeout | undefined

  /**
   * @param store - the store to touch
   * @param onError - told about failed batches (they are dropped: the next request touches again)
   */
  constructor (store: BindingStore, onError: (error: unknown) => void) {
    this.#store = store
    this.#onError = onError
  }

  /**
   * Notes that a binding was used now.
   * @param idleTimeoutMs - the route's idle timeout; throttles touches to one per tenth of it
   * @param ttlMs - the TTL to set, already clamped to the binding's remaining lifetime
   */
  schedule (pool: string, keyId: string, upstreamId: string, idleTimeoutMs: number, ttlMs: number): void {
    const id = pool + '\0' + keyId
    const now = Date.now()
    const last = this.#lastTouched.get(id) ?? this.#previouslyTouched.get(id)
    if (last !== undefined && now - last < idleTimeoutMs / 10) return
    this.#remember(id, now)
    this.#pending.set(id, { pool, keyId, upstreamId, ttlMs })
    if (this.#pending.size >= MAX_PENDING) {
      void this.flush()
    } else if (this.#timer === undefined) {
      // A short idle timeout needs its touches sooner than the usual batching delay.
      this.#timer = setTimeout(() => { void this.flush() }, Math.min(TOUCH_FLUSH_INTERVAL_MS, idleTimeoutMs / 10))
      this.#timer.unref()
    }
  }

  /** Records that a binding was just created or moved, so it is not touched again right away. */
  noteFresh (pool: string, keyId: string): void {
    this.#remember(pool + '\0' + keyId, Date.now())
  }

  #remember (id: string, now: number): void {
    if (this.#lastTouched.size >= GENERATION_SIZE) {
      this.#previouslyTouched = this.#lastTouched
      this.#lastTouched = new Map()
    }
    this.#lastTouched.set(id, now)
  }

  /** Sends every pending touch now. Never rejects. */
  async flush (): Promise<void> {
    clearTimeout(this.#timer)
    this.#timer = undefined
    if (this.#pending.size === 0) return
    const batch = [...this.#pending.values()]
    this.#pending = new Map()
    try {
      await this.#store.touch(batch)
    } catch (error) {
      this.#onError(error)
    }
  }
}
