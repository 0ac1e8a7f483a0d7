/**
 * A {@link BindingStore} decorator that times every store operation and counts the failed ones
 * (`sticky_store_operation_duration_seconds`, `sticky_store_errors_total`). It changes nothing else: results,
 * errors and listeners pass through untouched.
 */
import { performance } from 'node:perf_hooks'
import type {
  Binding, BindingStore, BindResult, Invalidation, RebindResult, TouchRequest, UpstreamStateChange, UpstreamStatus
} from '../store/binding-store'
import type { CacheableBindingStore, ExpiringBinding } from '../store/near-cache'
import { STORE_OPERATIONS, type StickyMetrics, type StoreOperation, type StoreOperationMetrics } from './metrics'

/** A store whose operations are timed and counted. */
export class InstrumentedBindingStore implements BindingStore {
  /** The store being measured. */
  readonly inner: BindingStore
  readonly #ops: Record<StoreOperation, StoreOperationMetrics>

  /**
   * @param store - the store to measure
   * @param metrics - where timings and failures go
   */
  constructor (store: BindingStore, metrics: StickyMetrics) {
    this.inner = store
    this.#ops = Object.fromEntries(STORE_OPERATIONS.map((op) => [op, metrics.storeOperation(op)])) as Record<StoreOperation, StoreOperationMetrics>
  }

  init (): Promise<void> {
    return this.inner.init()
  }

  sharedSalt (): Promise<string> {
    return this.#run(this.#ops.sharedSalt, () => this.inner.sharedSalt())
  }

  onSaltChange (listener: (salt: string) => void): () => void {
    return this.inner.onSaltChange(listener)
  }

  get (pool: string, keyId: string): Promise<Binding | null> {
    return this.#run(this.#ops.get, () => this.inner.get(pool, keyId))
  }

  /**
   * The inner store's `peek`, timed as a `get` when it answers. A throw is not counted here: the walk then asks
   * `get`, which counts the failure once.
   */
  peek (pool: string, keyId: string): Binding | null | undefined {
    const started = performance.now()
    const found = this.inner.peek(pool, keyId)
    if (found !== undefined) this.#ops.get.observe((performance.now() - started) / 1000)
    return found
  }

  bindIfAbsent (pool: string, keyId: string, upstreamId: string, ttlMs: number, countedMs?: number): Promise<BindResult> {
    return this.#run(this.#ops.bindIfAbsent, () => this.inner.bindIfAbsent(pool, keyId, upstreamId, ttlMs, countedMs))
  }

  rebind (pool: string, keyId: string, expected: string, next: string): Promise<RebindResult> {
    return this.#run(this.#ops.rebind, () => this.inner.rebind(pool, keyId, expected, next))
  }

  touch (requests: readonly TouchRequest[]): Promise<void> {
    return this.#run(this.#ops.touch, () => this.inner.touch(requests))
  }

  delete (pool: string, keyId: string): Promise<boolean> {
    return this.#run(this.#ops.delete, () => this.inner.delete(pool, keyId))
  }

  sessionCounts (pool: string, upstreamIds: readonly string[]): Promise<Record<string, number>> {
    return this.#run(this.#ops.sessionCounts, () => this.inner.sessionCounts(pool, upstreamIds))
  }

  sessionsOf (pool: string, upstreamId: string, limit: number): Promise<string[]> {
    return this.inner.sessionsOf(pool, upstreamId, limit)
  }

  upstreamStates (pool: string): Promise<Record<string, UpstreamStatus>> {
    return this.#run(this.#ops.upstreamStates, () => this.inner.upstreamStates(pool))
  }

  setUpstreamState (pool: string, upstreamId: string, change: UpstreamStateChange): Promise<UpstreamStatus> {
    return this.#run(this.#ops.setUpstreamState, () => this.inner.setUpstreamState(pool, upstreamId, change))
  }

  onInvalidate (listener: (change: Invalidation) => void): () => void {
    return this.inner.onInvalidate(listener)
  }

  close (): Promise<void> {
    return this.inner.close()
  }

  // A synchronous throw from the inner store is counted and timed like a rejection.
  protected async run<T> (op: StoreOperation, call: () => Promise<T>): Promise<T> {
    return this.#run(this.#ops[op], call)
  }

  async #run<T> (op: StoreOperationMetrics, call: () => Promise<T>): Promise<T> {
    const started = performance.now()
    try {
      return await call()
    } catch (error) {
      op.failed()
      throw error
    } finally {
      op.observe((performance.now() - started) / 1000)
    }
  }
}

/**
 * A Redis-like store measured *under* a near-cache: `getWithTtl` (the near-cache's reads) counts as `get`, so the
 * histogram shows what the store itself costs, not the near-cache's hits.
 */
export class InstrumentedCacheableStore extends InstrumentedBindingStore implements CacheableBindingStore {
  readonly #cacheable: CacheableBindingStore

  constructor (store: CacheableBindingStore, metrics: StickyMetrics) {
    super(store, metrics)
    this.#cacheable = store
  }

  getWithTtl (pool: string, keyId: string): Promise<ExpiringBinding | null> {
    return this.run('get', () => this.#cacheable.getWithTtl(pool, keyId))
  }

  get invalidationsLive (): boolean {
    return this.#cacheable.invalidationsLive
  }

  onInvalidationsLive (listener: (live: boolean) => void): () => void {
    return this.#cacheable.onInvalidationsLive(listener)
  }
}

/**
 * Wraps a store that a near-cache will sit in front of (see {@link InstrumentedCacheableStore}).
 * @returns a cacheable store that behaves exactly as `store`
 */
export function instrumentCacheableStore (store: CacheableBindingStore, metrics: StickyMetrics): CacheableBindingStore {
  return new InstrumentedCacheableStore(store, metrics)
}

/**
 * Wraps a store so every operation is timed and failures are counted.
 * @param store - the store to measure
 * @param metrics - where timings and failures go
 * @returns a store that behaves exactly as `store`
 */
export function instrumentStore (store: BindingStore, metrics: StickyMetrics): BindingStore {
  return new InstrumentedBindingStore(store, metrics)
}
