/**
 * The one per-request state object: what the core decided for a request and what a failed forward may change.
 * Every front door keeps exactly one of these per request (Fastify on `request`, Express on `res.locals`-like
 * storage of its own) and hands it back to the core. Framework-free.
 */
import type { BindingContext, StickyDecision } from '../affinity/decision'
import type { ResolvedKeySource } from '../affinity/keys'
import type { ResolvedRouteConfig } from '../options'

/** The learn-mode key source. */
export type LearnSource = Extract<ResolvedKeySource, { kind: 'learn' }>

/** A request's routing state, from the decision to the last byte of the response. */
export interface StickyRequestState {
  /** The route's resolved settings. */
  readonly route: ResolvedRouteConfig
  /** Where the request goes now (a failover replaces it). */
  decision: StickyDecision
  /** The binding behind the decision, for failover. */
  binding: BindingContext | undefined
  /** The routing cookie value this response must set (new, moved or re-signed binding), if any. */
  cookie: string | undefined
  /** Whether a retry after a broken connection happened. */
  retried: boolean
  /** Attempts that never reached an upstream (each one marked that upstream down). */
  unreached: number
  /** The target `forward(source)` named, if any. */
  source: string | undefined
  /** On routes that learn the app's session cookie: which, and the value the client sent (if any). */
  readonly learn: { readonly source: LearnSource, readonly requestValue: string | undefined } | undefined
}

/** What a front door reads of a request for the core's decision. */
export interface RequestView {
  /** The client address as the framework computed it (proxy-aware). */
  readonly ip: string | undefined
  readonly headers: Record<string, string | string[] | undefined>
  /** Parsed query (for `key: { query }`). */
  readonly query: unknown
  /** Parsed cookies, when the framework parsed them already; the core parses the Cookie header otherwise. */
  readonly cookies: Record<string, string | undefined> | undefined
  /** The framework's own request, passed to function keys. */
  readonly request: unknown
}

/** What the gateway, as the edge, says of the client on the upstream request (each trustProxy-aware). */
export interface EdgeFacts {
  /** X-Forwarded-For to send: the trusted part of the chain, then the peer. */
  readonly forwardedFor: string | undefined
  /** `http` or `https`, as the client used it. */
  readonly protocol: string
  /** The host the client asked for (`''` when unknown). */
  readonly host: string
}
