/**
 * A bounded map that forgets its least recently used entry when full: a Map's insertion order doubles as recency
 * order (a hit is moved to the end), so it costs two Map operations a hit and no per-entry bookkeeping.
 */
export class LruMap<K, V> {
  readonly #entries = new Map<K, V>()
  readonly #capacity: number

  /** @param capacity - entries kept at most (0: none) */
  constructor (capacity: number) {
    this.#capacity = capacity
  }

  /** @returns the value, now the most recently used, or `undefined` */
  get (key: K): V | undefined {
    const value = this.#entries.get(key)
    if (value !== undefined) {
      this.#entries.delete(key)
      this.#entries.set(key, value)
    }
    return value
  }

  /** Remembers a value, forgetting the least recently used entry when full. */
  set (key: K, value: V): void {
    if (this.#capacity <= 0) return
    if (this.#entries.size >= this.#capacity && !this.#entries.has(key)) this.#entries.delete(this.#entries.keys().next().value as K)
    this.#entries.set(key, value)
  }

  /** Forgets everything. */
  clear (): void {
    this.#entries.clear()
  }

  /** Entries held. */
  get size (): number {
    return this.#entries.size
  }
}
