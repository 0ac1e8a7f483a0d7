/**
 * `app.sticky.bindings`: look up, move and evict one binding by the key a client is routed by (a routing cookie
 * value, a header or query value, an app session cookie, an address). The admin API's `/bindings/*` routes call
 * these, so a script and an operator's curl see the same answers and the same coded errors. Framework-free.
 */
import { IP_KEY_NAMESPACE, ipPrefixKey, keyNamespace } from '../affinity/keys'
import {
  AmbiguousBindingError, BindingChangedError, StoreUnavailableError, UnknownBindingError, UnknownPoolError,
  UnknownUpstreamError, UpstreamDownError, HandoffFailedError
} from '../errors'
import type { UpstreamPool, UpstreamState } from '../pool/upstream-pool'
import type { Binding, BindingStore } from '../store/binding-store'
import type { CoreLogger } from './logger'
import type { ResolvedUpstream } from '../options'
import type { SessionMover } from './session-mover'

/**
 * The key a binding is found by, as the route that made it reads it:
 * - a string, or `{ cookie }`: a routing cookie value, as the browser stores it (percent-encoded) or decoded;
 * - `{ header, value }`, `{ query, value }`: the value of that request header or query parameter;
 * - `{ appCookie, value }`: the value of the app's session cookie that a `{ learn }` route learnt;
 * - `{ ip }`: a client address, masked as the route's `{ ip: { ipv4Prefix, ipv6Prefix } }` masks it
 *   (default 32 and 64 bits, as the `'ip'` key).
 * Keys of function key sources cannot be named here: only the function knows them.
 */
export type StickyBindingKey =
  | string
  | { readonly cookie: string }
  | { readonly header: string, readonly value: string }
  | { readonly query: string, readonly value: string }
  | { readonly appCookie: string, readonly value: string }
  | { readonly ip: string, readonly ipv4Prefix?: number, readonly ipv6Prefix?: number }

/** Where to look for a binding. */
export interface StickyBindingLookup {
  /** The pool to look in; every pool the key can be in when omitted. */
  readonly pool?: string
}

/** How to move a binding. */
export interface StickyBindingMoveOptions extends StickyBindingLookup {
  /**
   * Carry the session's state to the new upstream (needs the plugin's `handoff` option and `fastify-sticky/upstream`
   * in the app): its requests are held briefly at the old upstream, then continue on the new one.
   * @defaultValue false
   */
  readonly handoff?: boolean
}

/** One binding, as `app.sticky.bindings` (and the admin API) show it. The raw key is never shown. */
export interface StickyBindingView {
  readonly pool: string
  /** The kind of key that named it: `cookie`, `header`, `query`, `appCookie` or `ip`. */
  readonly key: StickyBindingKind
  /** The store's key id (a keyed hash of the key). */
  readonly keyId: string
  /** The upstream it is bound to now. */
  readonly upstream: string
  /** That upstream's state; `null` when it is no longer a member of the pool. */
  readonly state: UpstreamState | null
  /** When it was first made (ISO 8601); `null` when the store holds no valid time for it. */
  readonly createdAt: string | null
  /** The upstream a routing cookie names (it may differ from `upstream` until the client's next request). */
  readonly cookieUpstream?: string
}

/** The kinds of {@link StickyBindingKey}. */
export type StickyBindingKind = 'cookie' | 'header' | 'query' | 'appCookie' | 'ip'

/** One binding's look-up, move and eviction, as `app.sticky.bindings`. */
export interface StickyBindings {
  /**
   * @param key - `undefined` (a cookie the request did not send) names no binding
   * @returns the binding, or `null` when the key is not one the gateway issued (a forged or garbled cookie) or has
   *   no binding
   * @throws FST_STICKY_UNKNOWN_POOL for a `pool` that is not configured; FST_STICKY_AMBIGUOUS_BINDING when the key
   *   is bound in several pools and no `pool` was given; FST_STICKY_STORE_UNAVAILABLE when the store cannot be asked
   */
  get (key: StickyBindingKey | undefined, lookup?: StickyBindingLookup): Promise<StickyBindingView | null>
  /**
   * Moves a binding to another upstream of its pool, on every gateway; the client's next request goes there (and a
   * cookie client gets a new routing cookie). Moving it where it is already is a no-op.
   * @returns the binding after the move
   * @throws FST_STICKY_UNKNOWN_BINDING when there is none; FST_STICKY_UNKNOWN_UPSTREAM when the target is not a
   *   member; FST_STICKY_UPSTREAM_DOWN when it is down; FST_STICKY_BINDING_CHANGED when another gateway moved or
   *   evicted it meanwhile; FST_STICKY_HANDOFF_FAILED (with `reason`) when a move with handoff left the session
   *   where it was; and as {@link StickyBindings.get}
   */
  move (key: StickyBindingKey | undefined, upstreamId: string, options?: StickyBindingMoveOptions): Promise<StickyBindingView>
  /**
   * Deletes a binding on every gateway; the client's next request is placed as a new session.
   * @returns `true` when a binding was deleted, `false` when there was none
   * @throws as {@link StickyBindings.get}
   */
  evict (key: StickyBindingKey | undefined, lookup?: StickyBindingLookup): Promise<boolean>
}

/** A raw affinity key, as the resolver hashes it into a key id. */
interface RawKey {
  readonly kind: StickyBindingKind
  readonly rawKey: string
  /** The upstream a routing cookie names. */
  readonly upstreamHint?: string
}

/** What {@link createBindingsApi} works with. */
export interface BindingsApiDeps {
  readonly store: BindingStore
  readonly pools: ReadonlyMap<string, UpstreamPool>
  /** Verifies a routing cookie value (signature and format); `null` when it does not verify. */
  readonly verifyRoutingCookie: (value: string) => { readonly bindingId: string, readonly upstreamId: string } | null
  /** Derives the store's key id of a raw affinity key; `undefined` while the store's salt is not known. */
  readonly keyIdOf: (rawKey: string) => string | undefined
  readonly log: CoreLogger
  /** Moves with handoff. */
  readonly mover: SessionMover
}

interface Found {
  readonly pool: UpstreamPool
  readonly keyId: string
  readonly key: RawKey
  readonly binding: Binding
}

/** Builds `app.sticky.bindings`. */
export function createBindingsApi (deps: BindingsApiDeps): StickyBindings {
  const { store, pools, log } = deps

  const storeCall = async <T>(call: () => Promise<T>): Promise<T> => {
    try {
      return await call()
    } catch (error) {
      throw new StoreUnavailableError({ cause: error })
    }
  }

  const rawKeyOf = (key: StickyBindingKey | undefined): RawKey | null => {
    if (typeof key === 'string') return cookieKey(deps.verifyRoutingCookie, key)
    if (typeof key !== 'object' || key === null) return null
    if ('cookie' in key) return cookieKey(deps.verifyRoutingCookie, key.cookie)
    if ('header' in key) return valueKey('header', 'header', key.header, key.value)
    if ('query' in key) return valueKey('query', 'query', key.query, key.value)
    if ('appCookie' in key) return valueKey('appCookie', 'learn', key.appCookie, key.value)
    if ('ip' in key) {
      const masked = typeof key.ip === 'string' ? ipPrefixKey(key.ip, key.ipv4Prefix ?? 32, key.ipv6Prefix ?? 64) : undefined
      return masked === undefined ? null : { kind: 'ip', rawKey: IP_KEY_NAMESPACE + masked }
    }
    return null
  }

  const poolsToSearch = (lookup: StickyBindingLookup | undefined): UpstreamPool[] => {
    if (lookup?.pool === undefined) return [...pools.values()]
    const pool = pools.get(lookup.pool)
    if (pool === undefined) throw new UnknownPoolError(lookup.pool)
    return [pool]
  }

  const find = async (input: StickyBindingKey | undefined, lookup: StickyBindingLookup | undefined): Promise<Found | null> => {
    const searched = poolsToSearch(lookup)
    const key = rawKeyOf(input)
    if (key === null) return null
    const keyId = deps.keyIdOf(key.rawKey)
    if (keyId === undefined) throw new StoreUnavailableError()
    // A binding id is random, so one pool has it, unless its client replayed the cookie under another pool's cookie
    // name (the token does not name its pool): then the answer is AMBIGUOUS, never a guess. Asked together.
    const bindings = await storeCall(async () => Promise.all(searched.map(async (pool) => store.get(pool.name, keyId))))
    const found: Found[] = []
    searched.forEach((pool, i) => {
      const binding = bindings[i]
      if (binding !== null) found.push({ pool, keyId, key, binding })
    })
    if (found.length > 1) throw new AmbiguousBindingError(found.map((f) => f.pool.name))
    return found[0] ?? null
  }

  const viewOf = ({ pool, keyId, key, binding }: Found): StickyBindingView => ({
    pool: pool.name,
    key: key.kind,
    keyId,
    upstream: binding.upstreamId,
    state: pool.get(binding.upstreamId) === undefined ? null : pool.state(binding.upstreamId),
    createdAt: isoTime(binding.createdAt),
    ...(key.upstreamHint === undefined ? {} : { cookieUpstream: key.upstreamHint })
  })

  return {
    async get (key, lookup) {
      const found = await find(key, lookup)
      return found === null ? null : viewOf(found)
    },
    async move (key, upstreamId, lookup) {
      const found = await find(key, lookup)
      if (found === null) throw new UnknownBindingError()
      const { pool, keyId, binding } = found
      if (pool.get(upstreamId) === undefined) throw new UnknownUpstreamError(pool.name, upstreamId)
      if (pool.state(upstreamId) === 'down') throw new UpstreamDownError(pool.name, upstreamId)
      if (binding.upstreamId === upstreamId) return viewOf(found)
      if (lookup?.handoff === true) {
        const from = pool.get(binding.upstreamId)
        if (from === undefined) throw new HandoffFailedError('source-gone')
        const outcome = await deps.mover.move(pool, keyId, from, pool.get(upstreamId) as ResolvedUpstream, { handoff: true })
        if (!outcome.moved) throw new HandoffFailedError(outcome.reason)
        return viewOf({ ...found, binding: { ...binding, upstreamId } })
      }
      const moved = await storeCall(async () => store.rebind(pool.name, keyId, binding.upstreamId, upstreamId))
      if (!moved.swapped) throw new BindingChangedError(moved.upstreamId)
      log.info({ pool: pool.name, keyId, from: binding.upstreamId, to: upstreamId }, 'fastify-sticky: moved a binding')
      return viewOf({ ...found, binding: { ...binding, upstreamId } })
    },
    async evict (key, lookup) {
      const found = await find(key, lookup)
      if (found === null) return false
      const { pool, keyId, binding } = found
      const deleted = await storeCall(async () => store.delete(pool.name, keyId))
      if (deleted) log.info({ pool: pool.name, keyId, upstream: binding.upstreamId }, 'fastify-sticky: evicted a binding')
      return deleted
    }
  }
}

// A store (a custom one, or a hand-edited Redis value) may hold any number: a view must not throw for it.
function isoTime (ms: number): string | null {
  const date = new Date(ms)
  return Number.isNaN(date.getTime()) ? null : date.toISOString()
}

// Accepts the value as the browser stores it (percent-encoded) or decoded, as an operator pastes it.
function cookieKey (verify: BindingsApiDeps['verifyRoutingCookie'], value: unknown): RawKey | null {
  if (typeof value !== 'string') return null
  let token = verify(value)
  if (token === null && value.includes('%')) {
    try {
      token = verify(decodeURIComponent(value))
    } catch {
      token = null
    }
  }
  return token === null ? null : { kind: 'cookie', rawKey: token.bindingId, upstreamHint: token.upstreamId }
}

// From JavaScript anything can arrive: a key that is not two non-empty strings names no binding.
function valueKey (kind: StickyBindingKind, source: 'header' | 'query' | 'learn', name: unknown, value: unknown): RawKey | null {
  if (typeof name !== 'string' || name === '' || typeof value !== 'string' || value === '') return null
  return { kind, rawKey: keyNamespace(source, name) + value }
}
