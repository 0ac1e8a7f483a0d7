/**
 * In-process binding store: one gateway process, demos and tests. Bounded (least recently touched
 * bindings are evicted first) and swept in slices so expiry never blocks the event loop for long.
 */
import { randomBytes } from 'node:crypto'
import type {
  Binding, BindResult, BindingStore, Invalidation, RebindResult, TouchRequest, UpstreamStateChange, UpstreamStatus
} from './binding-store'
import { FORGET_REMOVED_AFTER_MS } from './binding-store'
import { poolMap, type ByPool } from './pool-maps'

/** Default cap on bindings held by a {@link MemoryBindingStore}. */
export const DEFAULT_MEMORY_MAX_BINDINGS = 100_000
const SWEEP_INTERVAL_MS = 1000
const SWEEP_SLICE = 50_000

/** Options of {@link MemoryBindingStore}. */
export interface MemoryBindingStoreOptions {
  /**
   * Most bindings kept; past it the least recently touched binding is dropped.
   * @defaultValue 100000
   */
  maxBindings?: number
}

interface Entry {
  readonly pool: string
  readonly keyId: string
  upstreamId: string
  readonly createdAt: number
  expiresAt: number
  /** Whether it is in the session counts (a binding on probation leaves them when its hold ends, until touched). */
  counted: boolean
}

/** A {@link BindingStore} held in this process's memory. */
export class MemoryBindingStore implements BindingStore {
  readonly #maxBindings: number
  // Looked up by pool, then by key id (see ./pool-maps.ts for why not by one `pool + keyId` string).
  readonly #byPool: ByPool<Entry> = new Map()
  // Every entry, in least recently touched order (a touch re-inserts it at the end): eviction and the sweep walk it.
  readonly #order = new Set<Entry>()
  readonly #counts: ByPool<number> = new Map()
  // Bindings counted for less than their TTL (on probation), with when they stop counting unless touched or moved.
  readonly #held = new Map<Entry, number>()
  readonly #listeners = new Set<(change: Invalidation) => void>()
  readonly #upstreams: ByPool<UpstreamStatus> = new Map()
  readonly #salt = randomBytes(24).toString('base64url')
  #sweepTimer: NodeJS.Timeout | undefined
  #sweepCursor: IterableIterator<Entry> | undefined

  /** @param options - see {@link MemoryBindingStoreOptions} */
  constructor (options: MemoryBindingStoreOptions = {}) {
    const max = options.maxBindings ?? DEFAULT_MEMORY_MAX_BINDINGS
    if (!Number.isSafeInteger(max) || max < 1) {
      throw new TypeError(`MemoryBindingStore options.maxBindings must be a positive integer, got ${String(max)}`)
    }
    this.#maxBindings = max
  }

  /** Starts the expiry sweep. */
  async init (): Promise<void> {
    if (this.#sweepTimer !== undefined) return
    this.#sweepTimer = setInterval(() => this.#sweep(), SWEEP_INTERVAL_MS)
    this.#sweepTimer.unref()
  }

  /** The salt is per process: a memory store is never shared between gateways. */
  async sharedSalt (): Promise<string> {
    return this.#salt
  }

  /** The salt of a memory store never changes. */
  onSaltChange (): () => void {
    return () => {}
  }

  async get (pool: string, keyId: string): Promise<Binding | null> {
    return this.#read(pool, keyId)
  }

  /** Every binding is in this process: always answers. */
  peek (pool: string, keyId: string): Binding | null | undefined {
    return this.#read(pool, keyId)
  }

  #read (pool: string, keyId: string): Binding | null {
    const entry = this.#live(pool, keyId, Date.now())
    return entry === undefined ? null : { upstreamId: entry.upstreamId, createdAt: entry.createdAt }
  }

  async bindIfAbsent (pool: string, keyId: string, upstreamId: string, ttlMs: number, countedMs = ttlMs): Promise<BindResult> {
    const now = Date.now()
    const existing = this.#live(pool, keyId, now)
    if (existing !== undefined) {
      return { upstreamId: existing.upstreamId, createdAt: existing.createdAt, created: false }
    }
    if (this.#order.size >= this.#maxBindings) this.#evictOldest()
    const entry: Entry = { pool, keyId, upstreamId, createdAt: now, expiresAt: now + ttlMs, counted: true }
    poolMap(this.#byPool, pool).set(keyId, entry)
    this.#order.add(entry)
    this.#count(pool, upstreamId, 1)
    if (countedMs < ttlMs) this.#held.set(entry, now + Math.max(0, countedMs))
    return { upstreamId, createdAt: now, created: true }
  }

  async rebind (pool: string, keyId: string, expected: string, next: string): Promise<RebindResult> {
    const entry = this.#live(pool, keyId, Date.now())
    if (entry === undefined) return { upstreamId: null, swapped: false }
    if (entry.upstreamId !== expected) return { upstreamId: entry.upstreamId, swapped: false }
    if (expected !== next) {
      // A move counts the binding again for its whole TTL, as a touch does.
      if (entry.counted) this.#count(pool, expected, -1)
      this.#count(pool, next, 1)
      entry.counted = true
      this.#held.delete(entry)
      entry.upstreamId = next
      this.#notify(pool, keyId)
    }
    return { upstreamId: next, swapped: true }
  }

  async touch (requests: readonly TouchRequest[]): Promise<void> {
    const now = Date.now()
    for (const request of requests) {
      const entry = this.#live(request.pool, request.keyId, now)
      if (entry === undefined || entry.upstreamId !== request.upstreamId) continue
      entry.expiresAt = now + request.ttlMs
      // Its client came back: off probation, counted again if its hold had ended.
      this.#held.delete(entry)
      if (!entry.counted) {
        entry.counted = true
        this.#count(entry.pool, entry.upstreamId, 1)
      }
      this.#order.delete(entry)
      this.#order.add(entry)
    }
  }

  async delete (pool: string, keyId: string): Promise<boolean> {
    const entry = this.#live(pool, keyId, Date.now())
    if (entry === undefined) return false
    this.#remove(entry)
    this.#notify(pool, keyId)
    return true
  }

  async sessionCounts (pool: string, upstreamIds: readonly string[]): Promise<Record<string, number>> {
    this.#releaseHolds(Date.now())
    const counts = this.#counts.get(pool)
    const result: Record<string, number> = {}
    for (const id of upstreamIds) result[id] = counts?.get(id) ?? 0
    return result
  }

  async sessionsOf (pool: string, upstreamId: string, limit: number): Promise<string[]> {
    const now = Date.now()
    const found: string[] = []
    // Least recently touched first, as the Redis store lists them (by expiry): a rebalance moves the idlest.
    for (const entry of this.#order) {
      if (found.length >= limit) break
      if (entry.pool === pool && entry.upstreamId === upstreamId && entry.expiresAt > now) found.push(entry.keyId)
    }
    return found
  }

  async upstreamStates (pool: string): Promise<Record<string, UpstreamStatus>> {
    return Object.fromEntries(this.#upstreams.get(pool) ?? [])
  }

  async setUpstreamState (pool: string, upstreamId: string, change: UpstreamStateChange): Promise<UpstreamStatus> {
    const states = poolMap(this.#upstreams, pool)
    const current: UpstreamStatus = states.get(upstreamId) ?? { admin: 'active', down: false, changedAt: 0 }
    const admin = change.admin ?? current.admin
    const down = change.down ?? current.down
    const url = change.url ?? current.url
    const weight = change.weight ?? current.weight
    if (admin === current.admin && down === current.down && url === current.url && weight === current.weight && states.has(upstreamId)) return current
    const now = Date.now()
    const next: UpstreamStatus = { admin, down, changedAt: now, ...(url === undefined ? {} : { url }), ...(weight === undefined ? {} : { weight }) }
    states.set(upstreamId, next)
    // As the Redis store: members added at run time and removed long ago are forgotten (discovery churns through them).
    for (const [id, status] of states) {
      if (id !== upstreamId && status.admin === 'removed' && status.url !== undefined && status.changedAt < now - FORGET_REMOVED_AFTER_MS) states.delete(id)
    }
    return next
  }

  onInvalidate (listener: (change: Invalidation) => void): () => void {
    this.#listeners.add(listener)
    return () => { this.#listeners.delete(listener) }
  }

  async close (): Promise<void> {
    clearInterval(this.#sweepTimer)
    this.#listeners.clear()
  }

  /** Number of bindings held, expired ones not yet swept included. */
  get size (): number {
    return this.#order.size
  }

  #live (pool: string, keyId: string, now: number): Entry | undefined {
    const entry = this.#byPool.get(pool)?.get(keyId)
    if (entry === undefined) return undefined
    if (entry.expiresAt <= now) {
      this.#remove(entry)
      return undefined
    }
    return entry
  }

  #remove (entry: Entry): void {
    this.#byPool.get(entry.pool)?.delete(entry.keyId)
    this.#order.delete(entry)
    this.#held.delete(entry)
    if (entry.counted) this.#count(entry.pool, entry.upstreamId, -1)
  }

  // Bindings whose probation hold ended without a touch stop counting. Holds are few (new bindings of the last hold
  // time), and this runs with the counts, about once a second per pool.
  #releaseHolds (now: number): void {
    for (const [entry, until] of this.#held) {
      if (until > now) continue
      this.#held.delete(entry)
      if (entry.counted) {
        entry.counted = false
        this.#count(entry.pool, entry.upstreamId, -1)
      }
    }
  }

  #evictOldest (): void {
    const first = this.#order.values().next()
    if (first.done === true) return
    this.#remove(first.value)
  }

  #count (pool: string, upstreamId: string, delta: number): void {
    const counts = poolMap(this.#counts, pool)
    counts.set(upstreamId, (counts.get(upstreamId) ?? 0) + delta)
  }

  #notify (pool: string, keyId: string): void {
    for (const listener of this.#listeners) listener({ pool, keyId })
  }

  // Walks the map a slice at a time with a live iterator that survives deletions, so a large store is
  // swept over several ticks instead of in one long pause.
  #sweep (): void {
    const now = Date.now()
    this.#sweepCursor ??= this.#order.values()
    for (let i = 0; i < SWEEP_SLICE; i++) {
      const step = this.#sweepCursor.next()
      if (step.done === true) {
        this.#sweepCursor = undefined
        return
      }
      const entry = step.value
      if (entry.expiresAt <= now) this.#remove(entry)
    }
  }
}
