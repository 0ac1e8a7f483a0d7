/**
 * A bounded map that forgets its least recently used entry when full. Recency is a doubly linked list through the
 * entries themselves; the Map is only the index, written when a key comes or goes, never on a hit.
 *
 * Why not a Map's insertion order (delete and re-insert on every hit, evict `keys().next()`): V8 keeps a deleted
 * Map entry in its hash chain until the table is rebuilt, so a key re-inserted on every hit drags a chain of its
 * own dead copies, and each eviction walks the dead entries at the front. With a full cache that is tens of
 * thousands of steps per hit after enough churn: the decay issue #17 measured (`npm run bench:churn`).
 */

interface Node<K, V> {
  readonly key: K
  value: V
  /** Towards the most recently used. */
  newer: Node<K, V> | undefined
  /** Towards the least recently used. */
  older: Node<K, V> | undefined
}

/** A bounded least-recently-used map; every operation O(1), with no Map write on a hit. */
export class LruMap<K, V> {
  readonly #index = new Map<K, Node<K, V>>()
  readonly #capacity: number
  #newest: Node<K, V> | undefined
  #oldest: Node<K, V> | undefined

  /**
   * @param capacity - entries kept at most (0: none)
   * @throws TypeError when it is not a whole number ≥ 0 (a NaN would never evict)
   */
  constructor (capacity: number) {
    if (!Number.isSafeInteger(capacity) || capacity < 0) throw new TypeError(`LruMap capacity must be a whole number >= 0, got ${String(capacity)}`)
    this.#capacity = capacity
  }

  /** @returns the value, now the most recently used, or `undefined` */
  get (key: K): V | undefined {
    const node = this.#index.get(key)
    if (node === undefined) return undefined
    this.#touch(node)
    return node.value
  }

  /** @returns the value without making it the most recently used, or `undefined` */
  peek (key: K): V | undefined {
    return this.#index.get(key)?.value
  }

  /** Remembers a value as the most recently used, forgetting the least recently used entry when full. */
  set (key: K, value: V): void {
    if (this.#capacity <= 0) return
    const existing = this.#index.get(key)
    if (existing !== undefined) {
      existing.value = value
      this.#touch(existing)
      return
    }
    if (this.#index.size >= this.#capacity && this.#oldest !== undefined) this.#remove(this.#oldest)
    const node: Node<K, V> = { key, value, newer: undefined, older: this.#newest }
    if (this.#newest !== undefined) this.#newest.newer = node
    this.#newest = node
    this.#oldest ??= node
    this.#index.set(key, node)
  }

  /** @returns whether the key was there */
  delete (key: K): boolean {
    const node = this.#index.get(key)
    if (node === undefined) return false
    this.#remove(node)
    return true
  }

  /** Forgets everything. */
  clear (): void {
    this.#index.clear()
    this.#newest = undefined
    this.#oldest = undefined
  }

  /** Entries held. */
  get size (): number {
    return this.#index.size
  }

  #touch (node: Node<K, V>): void {
    if (node === this.#newest) return
    this.#unlink(node)
    node.newer = undefined
    node.older = this.#newest
    if (this.#newest !== undefined) this.#newest.newer = node
    this.#newest = node
    this.#oldest ??= node
  }

  #remove (node: Node<K, V>): void {
    this.#unlink(node)
    this.#index.delete(node.key)
  }

  #unlink (node: Node<K, V>): void {
    if (node.newer !== undefined) node.newer.older = node.older
    else this.#newest = node.older
    if (node.older !== undefined) node.older.newer = node.newer
    else this.#oldest = node.newer
  }
}
