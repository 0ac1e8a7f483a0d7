/**
 * Sliding idle expiry without a store write on every request: each key is touched at most once per
 * tenth of its idle timeout, and touches are sent to the store in batches from a timer, off the request path.
 */
import type { BindingStore, TouchRequest } from './binding-store'
import { poolMap, type ByPool } from './pool-maps'

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
  #lastTouched: ByPool<number> = new Map()
  #lastTouchedSize = 0
  #previouslyTouched: ByPool<number> = new Map()
  #pending: ByPool<TouchRequest> = new Map()
  #pendingSize = 0
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
    const now = Date.now()
    const last = this.#lastTouched.get(pool)?.get(keyId) ?? this.#previouslyTouched.get(pool)?.get(keyId)
    if (last !== undefined && now - last < idleTimeoutMs / 10) return
    this.#remember(pool, keyId, now)
    const pending = poolMap(this.#pending, pool)
    if (!pending.has(keyId)) this.#pendingSize++
    pending.set(keyId, { pool, keyId, upstreamId, ttlMs })
    if (this.#pendingSize >= MAX_PENDING) {
      void this.flush()
    } else if (this.#timer === undefined) {
      // A short idle timeout needs its touches sooner than the usual batching delay.
      this.#timer = setTimeout(() => { void this.flush() }, Math.min(TOUCH_FLUSH_INTERVAL_MS, idleTimeoutMs / 10))
      this.#timer.unref()
    }
  }

  /** Records that a binding was just created or moved, so it is not touched again right away. */
  noteFresh (pool: string, keyId: string): void {
    this.#remember(pool, keyId, Date.now())
  }

  #remember (pool: string, keyId: string, now: number): void {
    if (this.#lastTouchedSize >= GENERATION_SIZE) {
      this.#previouslyTouched = this.#lastTouched
      this.#lastTouched = new Map()
      this.#lastTouchedSize = 0
    }
    const touched = poolMap(this.#lastTouched, pool)
    if (!touched.has(keyId)) this.#lastTouchedSize++
    touched.set(keyId, now)
  }

  /** Sends every pending touch now. Never rejects. */
  async flush (): Promise<void> {
    clearTimeout(this.#timer)
    this.#timer = undefined
    if (this.#pendingSize === 0) return
    const batch: TouchRequest[] = []
    for (const pending of this.#pending.values()) for (const request of pending.values()) batch.push(request)
    this.#pending = new Map()
    this.#pendingSize = 0
    try {
      await this.#store.touch(batch)
    } catch (error) {
      this.#onError(error)
    }
  }
}
