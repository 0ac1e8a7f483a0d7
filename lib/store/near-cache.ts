/**
 * A bounded local cache of bindings in front of a shared store (Redis), so that a client's steady stream of
 * requests costs no store round trip. Only bindings that exist are cached, never "absent": a first binding made
 * by any gateway then needs no invalidation. Every change of an existing binding (rebind, delete) reaches every
 * gateway's cache through the store's invalidation feed (Redis pub/sub); while that feed is down the cache is
 * empty and bypassed, so a change can only be missed if the feed loses a message while connected, and even then
 * only for the safety TTL. An entry never outlives the binding it copies (its remaining TTL is read with it).
 *
 * Why ~320 lines: the cache, its in-flight reads and its invalidation handling are one consistency argument (an
 * invalidation or a feed outage must win over a read that started before it); apart, no part is safe on its own.
 */
import { LruMap } from '../lru-map'
import type { Binding, BindResult, BindingStore, Invalidation, RebindResult, TouchRequest, UpstreamStateChange, UpstreamStatus } from './binding-store'

/** A binding with its remaining time-to-live, as {@link CacheableBindingStore.getWithTtl} reads it. */
export interface ExpiringBinding extends Binding {
  /** Remaining time-to-live when the store read it, in ms (`Infinity` when it has none). */
  readonly ttlMs: number
}

/** What a store must offer to sit behind a {@link NearCacheStore} (the Redis store does). */
export interface CacheableBindingStore extends BindingStore {
  /**
   * Reads a binding together with its remaining TTL, in one round trip.
   * @returns the binding, or `null` when none exists or it has expired
   */
  getWithTtl (pool: string, keyId: string): Promise<ExpiringBinding | null>
  /** `true` while {@link BindingStore.onInvalidate} listeners are sure to hear of every change. */
  readonly invalidationsLive: boolean
  /**
   * Listens for changes of {@link CacheableBindingStore.invalidationsLive}.
   * @returns a function that unsubscribes
   */
  onInvalidationsLive (listener: (live: boolean) => void): () => void
}

/** Default cap on cached bindings. */
export const DEFAULT_NEAR_CACHE_MAX_ENTRIES = 100_000
/** Default safety TTL of a cached binding, in ms. */
export const DEFAULT_NEAR_CACHE_TTL_MS = 10_000

/** Told of every `get`: answered by the cache (`hit`) or passed on to the store (`miss`, bypasses included). */
export interface NearCacheObserver {
  hit (pool: string): void
  miss (pool: string): void
}

/** Options of {@link NearCacheStore}. */
export interface NearCacheOptions {
  /**
   * Most bindings kept; past it the least recently used is dropped.
   * @defaultValue 100000
   */
  maxEntries?: number
  /**
   * Safety TTL in ms: the longest a cached binding is used without asking the store again. It bounds how long a
   * gateway could keep routing a moved or deleted binding should an invalidation ever be lost while the
   * subscription stayed up. Shorter costs more store reads: about one `GET`+`PTTL` per client per TTL.
   * @defaultValue 10000
   */
  ttlMs?: number
  /** Told of every lookup, e.g. the admin metrics' `nearCache()` counters. */
  observer?: NearCacheObserver
}

/** Counters of a {@link NearCacheStore}, since it was created. */
export interface NearCacheStats {
  /** `get` answered from the cache. */
  hits: number
  /** `get` that asked the store while the cache was in use (absent or expired entry). */
  misses: number
  /** `get` that asked the store because the invalidation feed was down. */
  bypassed: number
  /** Cache entries dropped by an invalidation (this gateway's own changes included). */
  invalidations: number
  /** Times the whole cache was dropped (feed down or back, salt changed). */
  flushes: number
}

interface Entry {
  readonly upstreamId: string
  readonly createdAt: number
  /** ms since the epoch, this process's clock: the safety TTL or the binding's own expiry, whichever is first. */
  expiresAt: number
}

interface Read {
  count: number
  /** An invalidation of the key arrived while a read was in flight: its answer may predate the change. */
  dirty: boolean
}

/** One read in flight: the key's shared record and the cache epoch it started in. */
interface ReadTicket {
  readonly read: Read
  readonly epoch: number
}

function positiveInteger (name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new TypeError(`NearCacheStore options.${name} must be a positive integer, got ${String(value)}`)
  return value
}

/**
 * A {@link BindingStore} that caches bindings read from another store, invalidated through that store's feed.
 * Closing it closes the store it wraps.
 * @example
 * const store = new NearCacheStore(new RedisBindingStore({ redis: process.env.REDIS_URL! }), { ttlMs: 10_000 })
 * await app.register(sticky, { secret, pools, store })
 */
export class NearCacheStore implements BindingStore {
  /** Hit, miss, bypass, invalidation and flush counters. */
  readonly stats: NearCacheStats = { hits: 0, misses: 0, bypassed: 0, invalidations: 0, flushes: 0 }
  readonly #inner: CacheableBindingStore
  readonly #ttlMs: number
  readonly #observer: NearCacheObserver | undefined
  // Not a Map in insertion order re-inserted on every hit: see lib/lru-map.ts for why that decays.
  readonly #entries: LruMap<string, Entry>
  readonly #reads = new Map<string, Read>()
  // Bumped on every flush: a read that started before it never fills the cache after it.
  #epoch = 0
  #live = false
  #subscriptions: Array<() => void> | undefined

  /**
   * @param inner - the shared store (closed with this one)
   * @param options - see {@link NearCacheOptions}
   * @throws TypeError when an option is not a positive integer
   */
  constructor (inner: CacheableBindingStore, options: NearCacheOptions = {}) {
    this.#inner = inner
    this.#entries = new LruMap(positiveInteger('maxEntries', options.maxEntries ?? DEFAULT_NEAR_CACHE_MAX_ENTRIES))
    this.#ttlMs = positiveInteger('ttlMs', options.ttlMs ?? DEFAULT_NEAR_CACHE_TTL_MS)
    this.#observer = options.observer
  }

  /**
   * Subscribes to the store's invalidations, then initialises it. The cache is used only once the subscription is
   * active; until then (Redis unreachable at start, say) every read goes to the store.
   */
  async init (): Promise<void> {
    this.#subscriptions ??= [
      this.#inner.onInvalidationsLive((live) => {
        this.#live = live
        this.#flush()
      }),
      this.#inner.onInvalidate((change) => this.#invalidated(change)),
      // New key ids after a salt change: entries under the old ones would only take room.
      this.#inner.onSaltChange(() => this.#flush())
    ]
    this.#live = this.#inner.invalidationsLive
    await this.#inner.init()
  }

  /** `true` while the cache is in use (the invalidation feed is live). */
  get live (): boolean {
    return this.#live
  }

  /** Number of cached bindings, expired ones not yet dropped included. */
  get size (): number {
    return this.#entries.size
  }

  sharedSalt (): Promise<string> {
    return this.#inner.sharedSalt()
  }

  onSaltChange (listener: (salt: string) => void): () => void {
    return this.#inner.onSaltChange(listener)
  }

  /** A cached binding when there is a live one, else the store's answer (cached when it is a binding). */
  async get (pool: string, keyId: string): Promise<Binding | null> {
    const id = pool + '\0' + keyId
    if (this.#live) {
      const cached = this.#cached(pool, id)
      if (cached !== undefined) return cached
      this.stats.misses++
    } else {
      this.stats.bypassed++
    }
    this.#observer?.miss(pool)
    const started = Date.now()
    const read = this.#beginRead(id)
    try {
      const found = await this.#inner.getWithTtl(pool, keyId)
      if (found === null) return null
      // The TTL was measured by the store after `started`: counting it from `started` ends the entry no later.
      if (this.#mayFill(read)) this.#fill(id, found.upstreamId, found.createdAt, started + found.ttlMs)
      return { upstreamId: found.upstreamId, createdAt: found.createdAt }
    } finally {
      this.#endRead(id, read)
    }
  }

  /** A live cached binding (a hit, counted as `get` counts it); `undefined` when only the store can say. */
  peek (pool: string, keyId: string): Binding | undefined {
    return this.#live ? this.#cached(pool, pool + '\0' + keyId) : undefined
  }

  // The cached binding while it is within its TTL (then counted as a hit); an expired one is dropped.
  #cached (pool: string, id: string): Binding | undefined {
    const entry = this.#entries.get(id)
    if (entry === undefined) return undefined
    if (entry.expiresAt <= Date.now()) {
      this.#entries.delete(id)
      return undefined
    }
    this.stats.hits++
    this.#observer?.hit(pool)
    return { upstreamId: entry.upstreamId, createdAt: entry.createdAt }
  }

  /** As the store's; a binding this call created is cached (its TTL is known: the one given). */
  async bindIfAbsent (pool: string, keyId: string, upstreamId: string, ttlMs: number, countedMs?: number): Promise<BindResult> {
    const id = pool + '\0' + keyId
    const started = Date.now()
    const read = this.#beginRead(id)
    try {
      const result = await this.#inner.bindIfAbsent(pool, keyId, upstreamId, ttlMs, countedMs)
      // An earlier winner's binding has an unknown remaining TTL: the next get reads it with its TTL.
      if (result.created && this.#mayFill(read)) this.#fill(id, result.upstreamId, result.createdAt, started + ttlMs)
      return result
    } finally {
      this.#endRead(id, read)
    }
  }

  /**
   * As the store's. The local entry is dropped before and after: the store tells every gateway (this one too, a
   * moment later), and a read of this gateway racing with the move must not cache the old upstream meanwhile.
   */
  async rebind (pool: string, keyId: string, expected: string, next: string): Promise<RebindResult> {
    const id = pool + '\0' + keyId
    this.#drop(id)
    try {
      return await this.#inner.rebind(pool, keyId, expected, next)
    } finally {
      this.#drop(id)
    }
  }

  /** As the store's; a cached entry never outlives the TTL a touch sets (a shorter idle timeout may shorten it). */
  async touch (requests: readonly TouchRequest[]): Promise<void> {
    const now = Date.now()
    for (const request of requests) {
      const entry = this.#entries.peek(request.pool + '\0' + request.keyId)
      if (entry !== undefined && entry.upstreamId === request.upstreamId) entry.expiresAt = Math.min(entry.expiresAt, now + request.ttlMs)
    }
    await this.#inner.touch(requests)
  }

  /** As the store's; the local entry is dropped before and after (see {@link NearCacheStore.rebind}). */
  async delete (pool: string, keyId: string): Promise<boolean> {
    const id = pool + '\0' + keyId
    this.#drop(id)
    try {
      return await this.#inner.delete(pool, keyId)
    } finally {
      this.#drop(id)
    }
  }

  sessionCounts (pool: string, upstreamIds: readonly string[]): Promise<Record<string, number>> {
    return this.#inner.sessionCounts(pool, upstreamIds)
  }

  sessionsOf (pool: string, upstreamId: string, limit: number): Promise<string[]> {
    return this.#inner.sessionsOf(pool, upstreamId, limit)
  }

  upstreamStates (pool: string): Promise<Record<string, UpstreamStatus>> {
    return this.#inner.upstreamStates(pool)
  }

  setUpstreamState (pool: string, upstreamId: string, change: UpstreamStateChange): Promise<UpstreamStatus> {
    return this.#inner.setUpstreamState(pool, upstreamId, change)
  }

  onInvalidate (listener: (change: Invalidation) => void): () => void {
    return this.#inner.onInvalidate(listener)
  }

  /** Drops the cache and closes the store it wraps. Idempotent. */
  async close (): Promise<void> {
    for (const unsubscribe of this.#subscriptions ?? []) unsubscribe()
    this.#subscriptions = []
    this.#live = false
    this.#flush()
    await this.#inner.close()
  }

  #invalidated (change: Invalidation): void {
    this.#drop(change.pool + '\0' + change.keyId)
  }

  #drop (id: string): void {
    if (this.#entries.delete(id)) this.stats.invalidations++
    const read = this.#reads.get(id)
    if (read !== undefined) read.dirty = true
  }

  #flush (): void {
    this.#epoch++
    this.#entries.clear()
    this.stats.flushes++
  }

  #beginRead (id: string): ReadTicket {
    let read = this.#reads.get(id)
    if (read === undefined) {
      read = { count: 0, dirty: false }
      this.#reads.set(id, read)
    }
    read.count++
    return { read, epoch: this.#epoch }
  }

  #endRead (id: string, ticket: ReadTicket): void {
    if (--ticket.read.count === 0) this.#reads.delete(id)
  }

  #mayFill (ticket: ReadTicket): boolean {
    return this.#live && !ticket.read.dirty && ticket.epoch === this.#epoch
  }

  #fill (id: string, upstreamId: string, createdAt: number, bindingExpiresAt: number): void {
    const now = Date.now()
    const expiresAt = Math.min(now + this.#ttlMs, bindingExpiresAt)
    if (expiresAt <= now) return
    // Full: the least recently used entry goes.
    this.#entries.set(id, { upstreamId, createdAt, expiresAt })
  }
}
