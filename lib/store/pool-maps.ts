/**
 * State kept per pool, then per key (a key id, an upstream id): a map of maps whose inner map is made on first use.
 * Keyed in two steps rather than by a `pool + key` string: the key strings are the same objects request after
 * request (cached key ids, configured upstream ids), so their hashes are computed once.
 */

/** Maps of one kind, by pool. */
export type ByPool<V> = Map<string, Map<string, V>>

/** @returns the pool's map, made (and kept) when it has none yet */
export function poolMap<V> (byPool: ByPool<V>, pool: string): Map<string, V> {
  let map = byPool.get(pool)
  if (map === undefined) {
    map = new Map()
    byPool.set(pool, map)
  }
  return map
}
