/**
 * The programmatic API, `app.sticky`: pools, bindings, counts, draining and runtime membership. Every change is
 * applied on this gateway at once and written to the store, so every gateway on it sees the same within about a
 * second.
 */
import type { CoreLogger } from './logger'
import type { AffinityStats } from '../affinity/decision'
import { resolveUpstream, type ResolvedUpstream, type StickyUpstreamOptions } from '../options'
import type { UpstreamPool, UpstreamState } from '../pool/upstream-pool'
import type { BindingStore, UpstreamStateChange } from '../store/binding-store'
import { createBindingsApi, type BindingsApiDeps, type StickyBindings } from './bindings-api'
import { InvalidOptionError, UnknownPoolError, UnknownUpstreamError, UpstreamExistsError } from '../errors'
import type { MoveJobOptions, MoveJobs, SessionMoveJob } from './move-jobs'
import type { SessionMover } from './session-mover'

/** Default `tolerance` of a rebalance: every upstream within 10 % of the pool's mean. */
export const DEFAULT_REBALANCE_TOLERANCE = 0.1

/** The programmatic API, as `app.sticky`. */
export interface StickyApi {
  /** The binding store every sticky route uses (the one given as `store`, or the one the plugin built). */
  readonly store: BindingStore
  /** The pools, by name: read-only views whose changes are validated and shared through the store. */
  readonly pools: ReadonlyMap<string, StickyPool>
  /** One binding's look-up, move and eviction by the key a client is routed by. */
  readonly bindings: StickyBindings
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
   * One pool (as `pools.get(name)`, but throwing for an unknown name).
   * @throws FST_STICKY_UNKNOWN_POOL
   */
  pool (name: string): StickyPool
  /**
   * Drains an upstream and moves every session bound to it to the pool's other upstreams, with their state when the
   * `handoff` option is set and the app serves `fastify-sticky/upstream` (sessions of an app without it stay, and the
   * drain waits for them, unless `withoutState`). Runs in the background; follow it with {@link StickyApi.moveJob}.
   * @throws FST_STICKY_UNKNOWN_POOL, FST_STICKY_UNKNOWN_UPSTREAM
   */
  evacuate (pool: string, upstreamId: string, options?: MoveJobOptions): SessionMoveJob
  /**
   * Moves sessions from upstreams above the pool's mean (per weight) to those below until each is within
   * `tolerance` of it (after a scale-up). Runs in the background.
   * @throws FST_STICKY_UNKNOWN_POOL; FST_STICKY_INVALID_OPTION for a bad tolerance
   */
  rebalance (pool: string, options?: MoveJobOptions & { readonly tolerance?: number }): SessionMoveJob
  /** @returns this gateway's evacuations and rebalances, running ones and the last few ended */
  moveJobs (): SessionMoveJob[]
  /** @returns one of them by id, or `undefined` */
  moveJob (id: string): SessionMoveJob | undefined
  /** Stops a running evacuation or rebalance after the moves in progress. @returns whether one was running */
  cancelMoveJob (id: string): boolean
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

/**
 * One pool, as `app.sticky.pools.get(name)` and `app.sticky.pool(name)` show it: what it holds now, and the changes
 * an operator makes, each validated (coded errors) and shared through the store, so every gateway sees it within
 * about a second.
 */
export interface StickyPool {
  readonly name: string
  /** The pool's current members (runtime additions included, removed ones not). */
  readonly upstreams: readonly ResolvedUpstream[]
  /**
   * @returns `active`, `draining`, `down` or `removed`, as this gateway knows it now
   * @throws FST_STICKY_UNKNOWN_UPSTREAM for an id the pool never had
   */
  state (upstreamId: string): UpstreamState
  /** Live sessions per upstream, store-wide. @throws the store's error when it fails */
  sessionCounts (): Promise<Record<string, number>>
  /** As {@link StickyApi.drain}. */
  drain (upstreamId: string): Promise<void>
  /** As {@link StickyApi.undrain}. */
  undrain (upstreamId: string): Promise<void>
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

/** @deprecated Since 0.2: the same as {@link StickyPool}, which `app.sticky.pool()` returns. */
export type StickyPoolHandle = StickyPool

/** What {@link createStickyApi} works with. */
export interface StickyApiDeps {
  readonly store: BindingStore
  readonly pools: ReadonlyMap<string, UpstreamPool>
  readonly stats: AffinityStats
  readonly log: CoreLogger
  /** Verifies a routing cookie value (for `bindings`); `null` when it does not verify. */
  readonly verifyRoutingCookie: BindingsApiDeps['verifyRoutingCookie']
  /** Derives the store's key id of a raw affinity key (for `bindings`). */
  readonly keyIdOf: BindingsApiDeps['keyIdOf']
  /** Planned session moves (one binding with handoff). */
  readonly mover: SessionMover
  /** Evacuations and rebalances. */
  readonly jobs: MoveJobs
}

// `ReadonlyMap` is a type only: from JavaScript (or through a cast) a Map's set, delete and clear would change what
// every caller of app.sticky and the admin API sees. Membership changes go through a pool view, and the store.
class ReadonlyPools extends Map<string, StickyPool> {
  constructor (entries: Iterable<readonly [string, StickyPool]>) {
    super()
    for (const [name, pool] of entries) super.set(name, pool)
  }

  override set (): this {
    throw new TypeError('app.sticky.pools is read-only: change a pool through app.sticky.pool(name)')
  }

  override delete (): boolean {
    throw new TypeError('app.sticky.pools is read-only: change a pool through app.sticky.pool(name)')
  }

  override clear (): void {
    throw new TypeError('app.sticky.pools is read-only: change a pool through app.sticky.pool(name)')
  }
}

// The pools themselves, for the plugin's own tests and internals: the public API hands out views only.
const poolsOfApi = new WeakMap<StickyApi, ReadonlyMap<string, UpstreamPool>>()

/** @returns the pools behind `api` (not part of the public API: their mutators skip the store) */
export function internalPools (api: StickyApi): ReadonlyMap<string, UpstreamPool> {
  const pools = poolsOfApi.get(api)
  if (pools === undefined) throw new TypeError('not an app.sticky object')
  return pools
}

/** Builds `app.sticky`. */
export function createStickyApi (deps: StickyApiDeps): StickyApi {
  const { store, pools, stats, log } = deps
  const poolNamed = (name: string): UpstreamPool => {
    const pool = pools.get(name)
    if (pool === undefined) throw new UnknownPoolError(name)
    return pool
  }
  const memberOf = (pool: UpstreamPool, upstreamId: string): UpstreamPool => {
    if (pool.get(upstreamId) === undefined) throw new UnknownUpstreamError(pool.name, upstreamId)
    return pool
  }
  // Applied here at once, then written to the store, then read back (another gateway may have changed more).
  const change = async (pool: UpstreamPool, upstreamId: string, next: UpstreamStateChange, message: string): Promise<void> => {
    pool.applyLocalChange(upstreamId, next)
    await store.setUpstreamState(pool.name, upstreamId, next)
    pool.applyStates(await store.upstreamStates(pool.name))
    log.info({ pool: pool.name, upstream: upstreamId }, `fastify-sticky: upstream ${message}`)
  }
  const viewOf = (pool: UpstreamPool): StickyPool => Object.freeze({
    name: pool.name,
    get upstreams () { return pool.upstreams },
    state (upstreamId: string) {
      if (pool.get(upstreamId) === undefined && pool.state(upstreamId) !== 'removed') memberOf(pool, upstreamId)
      return pool.state(upstreamId)
    },
    sessionCounts: async () => store.sessionCounts(pool.name, pool.upstreams.map((u) => u.id)),
    drain: async (upstreamId: string) => change(memberOf(pool, upstreamId), upstreamId, { admin: 'draining' }, 'draining'),
    undrain: async (upstreamId: string) => change(memberOf(pool, upstreamId), upstreamId, { admin: 'active' }, 'undrained'),
    async add (input: StickyUpstreamOptions) {
      const upstream = resolveUpstream(`pool("${pool.name}").add()`, input)
      if (pool.get(upstream.id) !== undefined) throw new UpstreamExistsError(pool.name, upstream.id)
      const configured = pool.config.upstreams.some((u) => u.id === upstream.id)
      // A member removed while down comes back as up: its address may be a new server (DNS gives IPs out again).
      await change(pool, upstream.id, configured ? { admin: 'active', down: false } : { admin: 'active', down: false, url: upstream.url, weight: upstream.weight }, 'added')
    },
    remove: async (upstreamId: string) => change(memberOf(pool, upstreamId), upstreamId, { admin: 'removed' }, 'removed')
  })
  const views: ReadonlyMap<string, StickyPool> = new ReadonlyPools([...pools].map(([name, pool]) => [name, viewOf(pool)]))
  const view = (name: string): StickyPool => {
    const found = views.get(name)
    if (found === undefined) throw new UnknownPoolError(name)
    return found
  }
  const { mover, jobs } = deps
  const bindings = createBindingsApi({ store, pools, log, mover, verifyRoutingCookie: deps.verifyRoutingCookie, keyIdOf: deps.keyIdOf })
  const api: StickyApi = {
    store,
    pools: views,
    bindings,
    stats,
    get admin () { return adminListeners.get(api) },
    sessionCounts: async (name) => view(name).sessionCounts(),
    async sessions (name, upstreamId) {
      memberOf(poolNamed(name), upstreamId)
      return (await store.sessionCounts(name, [upstreamId]))[upstreamId]
    },
    drain: async (name, upstreamId) => view(name).drain(upstreamId),
    undrain: async (name, upstreamId) => view(name).undrain(upstreamId),
    state: (name, upstreamId) => view(name).state(upstreamId),
    pool: view,
    evacuate: (name, upstreamId, options) => jobs.evacuate(memberOf(poolNamed(name), upstreamId), upstreamId, options),
    rebalance (name, options = {}) {
      const tolerance = options.tolerance ?? DEFAULT_REBALANCE_TOLERANCE
      if (!(tolerance >= 0 && tolerance <= 10)) throw new InvalidOptionError(`rebalance tolerance must be a number from 0 to 10, got ${String(tolerance)}`)
      return jobs.rebalance(poolNamed(name), tolerance, options)
    },
    moveJobs: () => jobs.jobs(),
    moveJob: (id) => jobs.job(id),
    cancelMoveJob: (id) => jobs.cancel(id)
  }
  poolsOfApi.set(api, pools)
  return api
}
