/**
 * The binding store a core runs on, from the options: the one given as `store`, the in-memory store, or Redis
 * (with the near cache in front unless `nearCache: false`), each instrumented when metrics are on.
 */
import { instrumentCacheableStore, instrumentStore } from '../admin/instrumented-store'
import type { StickyMetrics } from '../admin/metrics'
import type { ResolvedOptions } from '../options'
import type { BindingStore } from '../store/binding-store'
import { MemoryBindingStore } from '../store/memory-store'
import { NearCacheStore } from '../store/near-cache'
import { RedisBindingStore } from '../store/redis-store'

/**
 * @returns the store, and whether the core owns it (closes it with itself)
 */
// With metrics, store operations are timed; under a near cache they are timed below it (what Redis costs), and the
// near cache reports its hits and misses itself.
export function createStore (options: ResolvedOptions, metrics: StickyMetrics | undefined): { store: BindingStore, owned: boolean } {
  const measured = (store: BindingStore): BindingStore => metrics === undefined ? store : instrumentStore(store, metrics)
  if (options.store !== undefined) return { store: measured(options.store), owned: false }
  if (options.redis === undefined) return { store: measured(new MemoryBindingStore({ maxBindings: options.maxBindings })), owned: true }
  const redis = new RedisBindingStore({ redis: options.redis, prefix: options.prefix })
  if (options.nearCache === false) return { store: measured(redis), owned: true }
  // The near cache closes the Redis store with itself.
  return {
    store: new NearCacheStore(metrics === undefined ? redis : instrumentCacheableStore(redis, metrics), {
      ...options.nearCache,
      ...(metrics === undefined ? {} : { observer: metrics.nearCache() })
    }),
    owned: true
  }
}
