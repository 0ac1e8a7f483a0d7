/**
 * The contract every binding store keeps. Memory and Redis stores both implement it and both pass
 * the shared contract suite in `test/store/binding-store.contract.ts`.
 *
 * A binding maps a key id (a keyed hash of an affinity key, never the raw key) inside a pool to one
 * upstream id. Time-to-live is sliding (idle timeout); the caller clamps every TTL it passes so a
 * binding never outlives its maximum lifetime.
 */

/** A stored binding. */
export interface Binding {
  /** The configured id of the upstream the key is bound to. */
  readonly upstreamId: string
  /** When the binding was first created, in ms since the epoch (store clock). */
  readonly createdAt: number
}

/** The answer of {@link BindingStore.bindIfAbsent}. */
export interface BindResult {
  /** The upstream the key is bound to now: the caller's choice if it won, the earlier winner's otherwise. */
  readonly upstreamId: string
  /** When the binding that won was created. */
  readonly createdAt: number
  /** `true` when this call created the binding. */
  readonly created: boolean
}

/** The answer of {@link BindingStore.rebind}. */
export interface RebindResult {
  /** The upstream the key is bound to after the call (`null` when no binding exists). */
  readonly upstreamId: string | null
  /** `true` when this call moved the binding. */
  readonly swapped: boolean
}

/** One sliding-expiry refresh, as batched by {@link BindingStore.touch}. */
export interface TouchRequest {
  readonly pool: string
  readonly keyId: string
  /** The upstream the caller believes the key is bound to; a binding moved elsewhere meanwhile is left alone. */
  readonly upstreamId: string
  /** New time-to-live from now, in ms. */
  readonly ttlMs: number
}

/** What changed, as delivered to {@link BindingStore.onInvalidate} listeners. */
export interface Invalidation {
  readonly pool: string
  readonly keyId: string
}

/**
 * The operator's intent for an upstream: `draining` keeps its bound sessions but takes no new ones; `removed`
 * takes it out of the pool (its sessions move on their next request).
 */
export type UpstreamAdminState = 'active' | 'draining' | 'removed'

/** An upstream's shared state, as every gateway on the store sees it. */
export interface UpstreamStatus {
  /** Set by drain/undrain/add/remove. */
  readonly admin: UpstreamAdminState
  /** Set by health checks (passive or active) on any gateway. */
  readonly down: boolean
  /** When `admin` or `down` last changed, in ms since the epoch (store clock); drives slow start and cool-down. */
  readonly changedAt: number
  /** For an upstream added at run time: its URL (configured upstreams have none here). */
  readonly url?: string
  /** For an upstream added at run time: its weight. */
  readonly weight?: number
}

/** A change to an upstream's shared state; omitted fields are left as they are. */
export interface UpstreamStateChange {
  readonly admin?: UpstreamAdminState
  readonly down?: boolean
  /** Membership of an upstream added at run time. */
  readonly url?: string
  readonly weight?: number
}

/**
 * How long an upstream added at run time and then removed stays in the shared states (as `removed`) before the
 * next state change drops it: long past any gateway's poll, so every gateway has seen it removed.
 */
export const FORGET_REMOVED_AFTER_MS = 3_600_000

/** A map of key ids to upstream ids shared by every gateway that uses the same store. */
export interface BindingStore {
  /**
   * Prepares the store (connects, loads shared state). Called once by the plugin before it serves.
   * Idempotent.
   */
  init (): Promise<void>

  /**
   * A salt shared by every gateway on this store, created once (first writer wins) and never changed,
   * so that every gateway derives the same key id from the same raw key.
   * @returns the salt, a string of at least 32 characters
   */
  sharedSalt (): Promise<string>

  /**
   * Listens for a change of the shared salt, which happens only when the store lost it (a Redis restarted empty
   * or flushed) and another gateway wrote a new one first. Key ids must then be derived anew.
   * @returns a function that unsubscribes
   */
  onSaltChange (listener: (salt: string) => void): () => void

  /**
   * Reads a binding. Does not extend its TTL.
   * @returns the binding, or `null` when none exists or it has expired
   */
  get (pool: string, keyId: string): Promise<Binding | null>

  /**
   * Reads a binding at once, when the store can answer without I/O (an in-process store; a near cache's live entry).
   * The one synchronous method: the request path asks it first, so that a returning client is routed without a
   * promise, and calls {@link BindingStore.get} (once) only when this says `undefined`. A store whose data is
   * elsewhere returns `undefined`; one that overrides `get` (a subclass, a wrapper) must override this too, or hits
   * bypass it. Does not extend the TTL.
   * @returns the binding, `null` when there is none (as `get` would answer), or `undefined` when only `get` can say
   */
  peek (pool: string, keyId: string): Binding | null | undefined

  /**
   * Binds `keyId` to `upstreamId` unless it is already bound. Atomic: of any number of concurrent calls
   * for one key, on any gateway, exactly one creates the binding and every call returns that winner.
   * @param ttlMs - time-to-live of a new binding; an existing binding's TTL is left unchanged
   * @param countedMs - how long a new binding counts in {@link BindingStore.sessionCounts} unless it is touched or
   *   moved first (a binding on probation: its client may never come back, and must not hold an upstream's session
   *   slot for long); a touch or a move counts it again for the TTL it then has. At most `ttlMs`; defaults to it.
   *   A store that ignores it counts the binding for its whole TTL.
   */
  bindIfAbsent (pool: string, keyId: string, upstreamId: string, ttlMs: number, countedMs?: number): Promise<BindResult>

  /**
   * Compare-and-set: moves the binding from `expected` to `next` only if it is still bound to `expected`.
   * Atomic; keeps the binding's TTL and creation time; notifies invalidation listeners when it moves.
   */
  rebind (pool: string, keyId: string, expected: string, next: string): Promise<RebindResult>

  /**
   * Extends the TTL of several bindings at once (sliding idle timeout). Each entry is applied atomically and
   * only if the key is still bound to the entry's upstream. Meant to be called in batches off the request path.
   */
  touch (requests: readonly TouchRequest[]): Promise<void>

  /**
   * Removes a binding; notifies invalidation listeners.
   * @returns `true` when a binding was removed
   */
  delete (pool: string, keyId: string): Promise<boolean>

  /**
   * Live (unexpired) bindings per upstream, counted over the whole store (every gateway together); a binding made
   * with a shorter `countedMs` and neither touched nor moved since is left out once that time has passed.
   * @returns a count for every id in `upstreamIds` (0 when it has none)
   */
  sessionCounts (pool: string, upstreamIds: readonly string[]): Promise<Record<string, number>>

  /**
   * Key ids of live sessions bound to one upstream, store-wide, at most `limit` of them: what an evacuation or a
   * rebalance moves. A snapshot, not atomic with binds and moves: a session bound meanwhile may be missing, one
   * moved meanwhile still listed (the move's compare-and-set tells).
   */
  sessionsOf (pool: string, upstreamId: string, limit: number): Promise<string[]>

  /**
   * Shared state of the upstreams of a pool that have any (an upstream never changed has no entry: active, up).
   */
  upstreamStates (pool: string): Promise<Record<string, UpstreamStatus>>

  /**
   * Changes an upstream's shared state. Atomic per upstream: fields not given are kept; `changedAt` moves only
   * when something actually changed.
   * @returns the state after the change
   */
  setUpstreamState (pool: string, upstreamId: string, change: UpstreamStateChange): Promise<UpstreamStatus>

  /**
   * Subscribes to changes of existing bindings (rebind, delete) made by any gateway on this store.
   * @returns a function that unsubscribes
   */
  onInvalidate (listener: (change: Invalidation) => void): () => void

  /** Releases connections and timers. The store is unusable afterwards. Idempotent. */
  close (): Promise<void>
}
