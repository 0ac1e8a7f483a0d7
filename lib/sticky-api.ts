/**
 * The programmatic API, `app.sticky`: pools, counts, draining and runtime membership. Every change goes to the
 * store first, so every gateway on it sees the same within about a second.
 */
import type { CoreLogger } from './core/logger'
import type { AffinityStats } from './affinity/resolve'
import { resolveUpstream, type ResolvedUpstream, type StickyUpstreamOptions } from './options'
import type { UpstreamPool, UpstreamState } from './pool/upstream-pool'
import type { BindingStore, UpstreamStateChange } from './store/binding-store'
import { UnknownPoolError, UnknownUpstreamError, UpstreamExistsError } from './errors'

/** The programmatic API, as `app.sticky`. */
export interface StickyApi {
  /** The binding store every sticky route uses. */
  readonly store: BindingStore
  /** The pools, by name. */
  readonly pools: ReadonlyMap<string, UpstreamPool>
  /** Decision and refused-input counters since the plugin started. */
  readonly stats: Readonly<AffinityStats>
  /**
   * Live sessions per upstream of a pool, counted over the whole store (every gateway together).
   * @throws FST_STICKY_UNKNOWN_POOL
   */
  sessionCounts (pool: string): Promise<Record<string, number>>
  /**
   * Live sessions bound to one upstream (store-wide); what a `preStop` hook waits on while draining.
   * @throws FST_STICKY_UNKNOWN_POOL, FST_STICKY_UNKNOWN_UPSTREAM
   */
  sessions (pool: string, upstreamId: string): Promise<number>
  /**
   * Drains an upstream on every gateway: it keeps its bound sessions and gets no new ones.
   * @throws FST_STICKY_UNKNOWN_POOL, FST_STICKY_UNKNOWN_UPSTREAM; the store's error when it fails
   */
  drain (pool: string, upstreamId: string): Promise<void>
  /** Makes a drained upstream take new sessions again (slow start applies). @throws as {@link StickyApi.drain} */
  undrain (pool: string, upstreamId: string): Promise<void>
  /** @returns `active`, `draining`, `down` or `removed`, as this gateway knows it now */
  state (pool: string, upstreamId: string): UpstreamState
  /**
   * Runtime membership of a pool, shared through the store: every gateway sees a change within about a second.
   * @throws FST_STICKY_UNKNOWN_POOL
   */
  pool (name: string): StickyPoolHandle
  /**
   * The admin API's own listener (`admin.listen`) once it listens: from the app's `onReady` until it closes.
   * `undefined` before and after, and when the admin API is off or served by the app itself (under its prefix).
   */
  readonly admin: StickyAdminListener | undefined
}

/** Where the admin listener (`admin.listen`) listens, as `app.sticky.admin`. */
export interface StickyAdminListener {
  /** Its origin, e.g. `http://127.0.0.1:9090` (with the port actually bound when `admin.listen.port` is 0). */
  readonly address: string
  /** The status page, e.g. `http://127.0.0.1:9090/_sticky/`; the API is under it. */
  readonly url: string
}

const adminListeners = new WeakMap<StickyApi, StickyAdminListener>()

/**
 * Records where the admin listener of `api` listens (or, with `undefined`, that it stopped).
 * @param api - the object `app.sticky` is
 */
export function setAdminListener (api: StickyApi, listener: StickyAdminListener | undefined): void {
  if (listener === undefined) adminListeners.delete(api)
  else adminListeners.set(api, Object.freeze({ ...listener }))
}

/** Runtime membership of one pool (`app.sticky.pool(name)`). */
export interface StickyPoolHandle {
  /** The pool's current members. */
  readonly upstreams: readonly ResolvedUpstream[]
  /**
   * Adds an upstream on every gateway. Moves no existing session; new sessions go to it until its share is even
   * (least-sessions), ramped by slow start when configured.
   * @throws FST_STICKY_INVALID_OPTION for a bad upstream; FST_STICKY_UPSTREAM_EXISTS when the id is already a member
   */
  add (upstream: StickyUpstreamOptions): Promise<void>
  /**
   * Removes an upstream on every gateway; its sessions move, each on its next request (the app is told).
   * @throws FST_STICKY_UNKNOWN_UPSTREAM when the id is not a member
   */
  remove (upstreamId: string): Promise<void>
}

/** What {@link createStickyApi} works with. */
export interface StickyApiDeps {
  readonly store: BindingStore
  readonly pools: ReadonlyMap<string, UpstreamPool>
  readonly stats: AffinityStats
  readonly log: CoreLogger
}

/** Builds `app.sticky`. */
export function createStickyApi ({ store, pools, stats, log }: StickyApiDeps): StickyApi {
  const poolNamed = (name: string): UpstreamPool => {
    const pool = pools.get(name)
    if (pool === undefined) throw new UnknownPoolError(name)
    return pool
  }
  const memberOf = (name: string, upstreamId: string): UpstreamPool => {
    const pool = poolNamed(name)
    if (pool.get(upstreamId) === undefined) throw new UnknownUpstreamError(name, upstreamId)
    return pool
  }
  // Applied here at once, then written to the store, then read back (another gateway may have changed more).
  const change = async (pool: UpstreamPool, upstreamId: string, next: UpstreamStateChange, message: string): Promise<void> => {
    pool.applyLocalChange(upstreamId, next)
    await store.setUpstreamState(pool.name, upstreamId, next)
    pool.applyStates(await store.upstreamStates(pool.name))
    log.info({ pool: pool.name, upstream: upstreamId }, `fastify-sticky: upstream ${message}`)
  }
  const api: StickyApi = {
    store,
    pools,
    stats,
    get admin () { return adminListeners.get(api) },
    async sessionCounts (name) {
      return store.sessionCounts(name, poolNamed(name).upstreams.map((u) => u.id))
    },
    async sessions (name, upstreamId) {
      memberOf(name, upstreamId)
      return (await store.sessionCounts(name, [upstreamId]))[upstreamId]
    },
    drain: async (name, upstreamId) => change(memberOf(name, upstreamId), upstreamId, { admin: 'draining' }, 'draining'),
    undrain: async (name, upstreamId) => change(memberOf(name, upstreamId), upstreamId, { admin: 'active' }, 'undrained'),
    state (name, upstreamId) {
      const pool = poolNamed(name)
      if (pool.get(upstreamId) === undefined && pool.state(upstreamId) !== 'removed') memberOf(name, upstreamId)
      return pool.state(upstreamId)
    },
    pool (name) {
      const pool = poolNamed(name)
      return {
        get upstreams () { return pool.upstreams },
        async add (input) {
          const upstream = resolveUpstream(`pool("${name}").add()`, input)
          if (pool.get(upstream.id) !== undefined) throw new UpstreamExistsError(name, upstream.id)
          const configured = pool.config.upstreams.some((u) => u.id === upstream.id)
          await change(pool, upstream.id, configured ? { admin: 'active' } : { admin: 'active', url: upstream.url, weight: upstream.weight }, 'added')
        },
        remove: async (upstreamId) => change(memberOf(name, upstreamId), upstreamId, { admin: 'removed' }, 'removed')
      }
    }
  }
  return api
}
