/**
 * What affinity resolution answers: the decision a request is routed by (`request.sticky`), the binding behind it,
 * why input was refused, and the counters of all of them (`app.sticky.stats`).
 */
import type { ResolvedUpstream } from '../options'
import type { BudgetRefusal } from './new-binding-budget'
import type { RoutingCookieRejection } from './routing-cookie'

/**
 * How the upstream was chosen: `hit` (an existing binding), `new` (a binding was made now), `rebind` (the
 * binding was moved), `degraded` (the store failed; the cookie or the balancer decided), `unbound` (the client is
 * over its new-binding budget: its cookie or rendezvous hashing decided, and nothing was stored), `none` (no
 * affinity).
 */
export type StickyDecisionKind = 'hit' | 'new' | 'rebind' | 'degraded' | 'unbound' | 'none'

/** Why a client's routing cookie (or another key's value) was ignored. */
export type CookieRejection = RoutingCookieRejection | 'unknown-upstream' | 'junk-key'

/** The routing decision of one request, as `request.sticky` exposes it. */
export interface StickyDecision {
  /** The pool's name. */
  readonly pool: string
  /** The upstream that serves the request. */
  readonly upstream: ResolvedUpstream
  /** How it was chosen. */
  readonly decision: StickyDecisionKind
  /** `true` when the client's session moved away from an upstream that is down: its session state is lost. */
  readonly rebound: boolean
}

/** The binding behind a decision, kept so a failed forward can move it. */
export interface BindingContext {
  readonly keyId: string
  /** What the `hash` strategy hashes for this binding. */
  readonly hashKey: string
  /** For routing-cookie bindings: what a re-issued cookie carries. */
  readonly cookie: { readonly bindingId: string, readonly createdAt: number } | undefined
}

/** Why no upstream could be given: none can take the request, or a strict route's upstream is down. */
export type AffinityFailure = 'no-upstream' | 'strict-down'

/** What {@link AffinityResolver.resolveCookie} found. */
export interface AffinityResult {
  /** The decision; `null` together with `failure`. */
  readonly sticky: StickyDecision | null
  readonly failure?: AffinityFailure
  /** A routing cookie value to send back (new or moved binding, or a signature by an older secret), if any. */
  readonly setCookie: string | undefined
  /** Why the client's cookie was ignored, if it was. */
  readonly rejected: CookieRejection | undefined
  /** The binding, for failover. */
  readonly binding?: BindingContext
  /** The store error behind a `degraded` decision. */
  readonly storeError?: unknown
}

/** Counters of decisions and refused input, since the plugin started. */
export interface AffinityStats {
  hit: number
  new: number
  rebind: number
  degraded: number
  /** Requests served without a stored binding because a new-binding budget was spent (see `overBudget`). */
  unbound: number
  /** New bindings refused, by the budget that refused them (per client address, per gateway). */
  overBudget: Record<BudgetRefusal, number>
  none: number
  /** Requests answered 503 because no upstream could take them (or a strict route's upstream was down). */
  unavailable: number
  invalidCookie: Record<Exclude<CookieRejection, 'junk-key'>, number>
  /** Requests whose only key values were refused (too long, not an address, a key function that threw). */
  invalidKey: number
  /** App session cookies bound from upstream responses (learn keys). */
  learned: number
  /** App session cookies deleted by upstream responses, their bindings forgotten. */
  learnedForgotten: number
  storeErrors: number
}

/** @returns counters at zero */
export function newAffinityStats (): AffinityStats {
  return {
    hit: 0,
    new: 0,
    rebind: 0,
    degraded: 0,
    unbound: 0,
    overBudget: { client: 0, gateway: 0 },
    none: 0,
    unavailable: 0,
    invalidCookie: { oversized: 0, 'bad-signature': 0, garbled: 0, 'unknown-upstream': 0 },
    invalidKey: 0,
    learned: 0,
    learnedForgotten: 0,
    storeErrors: 0
  }
}

/** @returns the decision of a request served by `upstream` of the pool named `pool` */
export function decided (pool: string, upstream: ResolvedUpstream, decision: StickyDecisionKind, rebound: boolean): StickyDecision {
  return { pool, upstream, decision, rebound }
}
