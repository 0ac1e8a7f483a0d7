/**
 * The sticky core: everything that decides, and nothing that speaks HTTP for a framework. Given a request's view it
 * decides the upstream (and the routing cookie to set); given a failed forward it says whom to blame and whether to
 * retry, moving the session when its upstream is down; given an upstream's response headers it learns the app's
 * session cookie and rewrites what must not reach the client. Every front door (the Fastify plugin, the
 * @fastify/http-proxy integration, the Express middleware) translates its framework's request into a
 * {@link RequestView}, calls these, and writes the answers. Framework-free: no import of fastify, reply-from or
 * an HTTP server type. Over 300 lines because it is the one place that wires the core's parts (store, pools,
 * resolver, health, mover, tunnels) and documents the contract the doors call; each part is a module of its own.
 */
import type { AffinityResult, StickyDecision } from '../affinity/decision'
import type { ResolvedKeySource } from '../affinity/keys'
import { AffinityResolver } from '../affinity/resolve'
import { StoreKeyIds } from '../affinity/key-id'
import { createRoutingCookieCodec } from '../affinity/routing-cookie'
import type { StickyMetrics } from '../admin/metrics'
import { DEFAULT_HANDOFF_CONCURRENCY } from '../options/handoff'
import { resolveRouteConfig, type ResolvedOptions, type ResolvedRouteConfig, type StickyRouteConfig } from '../options'
import { HealthMonitor } from '../pool/health'
import { UpstreamPool } from '../pool/upstream-pool'
import { MoveJobs } from './move-jobs'
import { SessionMover } from './session-mover'
import { TunnelSessions } from './tunnel-sessions'
import { createStickyApi, type StickyApi } from './sticky-api'
import { TouchScheduler } from '../store/touch-scheduler'
import { createStore } from './core-store'
import { classifyForwardFailure, planFailureResponse } from './failure'
import { createHeaderRewriter, type RoutingCookie } from './header-rewriter'
import type { CoreLogger } from './logger'
import { badGateway, badRequestTarget, noUpstream, upstreamTimeout, type StickyProblem } from './problem'
import type { EdgeFacts, LearnSource, RequestView, StickyRequestState } from './request-state'
import { readRoutingCookie } from './routing-cookie-header'
import { TunnelLimits } from './tunnel-limits'

export type { RoutingCookie } from './header-rewriter'

const STORE_WARN_INTERVAL_MS = 10_000
const IDEMPOTENT_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE'])

/** What became of a failed forward. */
export type FailureOutcome =
  | { readonly retry: true }
  | { readonly retry: false, readonly problem: StickyProblem | null }

/** What a front door tells the core of a failed forward. */
export interface FailureContext {
  /** The client's connection closed first (nobody to answer). */
  readonly clientGone: boolean
  /** The request can be sent again as it was (no body, or a buffered one). */
  readonly replayable: boolean
  readonly method: string
}

/** What the core needs from its host. */
export interface StickyCoreDeps {
  readonly log: CoreLogger
  /** Metrics, when on: store operations are timed, the near cache reports hits and misses. */
  readonly metrics?: StickyMetrics
}

/** The framework-free sticky core; see the module comment. */
export interface StickyCore {
  readonly options: ResolvedOptions
  /** The programmatic API (`app.sticky` in Fastify). */
  readonly api: StickyApi
  /** WebSocket tunnel caps. */
  readonly tunnels: TunnelLimits
  /** The default pool's round-robin route, for forwards outside sticky routes; `null` when no pool can be named. */
  readonly defaultRoute: ResolvedRouteConfig | null
  /**
   * Resolves a route's `config.sticky` once, at route registration.
   * @param label - `METHOD url`, for messages
   * @returns the frozen settings, or `null` when the route is not sticky
   * @throws FST_STICKY_INVALID_ROUTE_CONFIG naming the route and the option
   */
  route (label: string, config: boolean | StickyRouteConfig | undefined): ResolvedRouteConfig | null
  /**
   * Decides a request's upstream: the route's key sources in order (routing cookie, address, header, query, learnt
   * app cookie, function), then the store, then the balancer.
   * @returns the request's state, or the problem to answer (503 when no upstream can take it); at once (no promise)
   *   when the store can answer without I/O, as for a returning client on the memory store or in the near cache
   */
  decide (route: ResolvedRouteConfig, view: RequestView): StickyRequestState | StickyProblem | Promise<StickyRequestState | StickyProblem>
  /** A request without affinity (`key: false`, or a forward outside sticky routes): round robin, no store. */
  balance (route: ResolvedRouteConfig): StickyRequestState | StickyProblem
  /**
   * The routing cookie the state's response must set, if any.
   * @param https - whether the client's request is HTTPS as the framework sees it (for `secure: 'auto'`)
   */
  routingCookie (state: StickyRequestState, https: boolean): RoutingCookie | undefined
  /**
   * The same routing cookie as a `Set-Cookie` header value (what @fastify/cookie would write for it), built from
   * attribute text made once per pool.
   */
  routingSetCookie (state: StickyRequestState, https: boolean): string | undefined
  /**
   * The headers of the request sent upstream, as a new record (the client's is left as it was): hop-by-hop
   * headers removed, routing cookies stripped, forwarding headers written from `edge`, the rebound header set only
   * when the session moved.
   */
  upstreamRequestHeaders (state: StickyRequestState | undefined, headers: Record<string, unknown>, edge: EdgeFacts): Record<string, unknown>
  /**
   * The upstream's response headers for the client, as a new record (the upstream's is left as it was): hop-by-hop
   * removed, `Location` without the upstream's origin, `Cache-Control: private` when the response sets the routing
   * cookie.
   */
  clientResponseHeaders (state: StickyRequestState | undefined, headers: Record<string, unknown>): Record<string, unknown>
  /**
   * Reports a failed forward: blames the upstream only when it is at fault, moves the session (compare-and-set, so
   * every gateway agrees) when its upstream is now down, and says whether to retry (the state then names the new
   * upstream, and `state.cookie` the new cookie) or what to answer.
   */
  reportFailure (state: StickyRequestState | undefined, error: unknown, context: FailureContext): Promise<FailureOutcome>
  /**
   * After an upstream answered 421 with `x-sticky-moved` (the session moved away from it): points the state at the
   * session's new upstream. `false` when there is none to follow or it was tried once (then the doors answer the
   * `sessionMoved` problem, 503 with Retry-After 0).
   */
  followMove (state: StickyRequestState | undefined): Promise<boolean>
  /** Open WebSocket tunnels by session, closed (reconnect-friendly) when their session's binding changes. */
  readonly tunnelSessions: TunnelSessions
  /** Learns the app's session cookie from the upstream's `Set-Cookie` on learn routes (before the response is released). */
  learn (state: StickyRequestState, setCookie: string | readonly string[] | undefined): Promise<void>
  /** The problem for a target that cannot be forwarded (400). */
  badTarget (cause: unknown): StickyProblem
  /** Counts an answer the gateway made itself (502/503/504 feed the forward-error metric). */
  problemSent (pool: string, problem: StickyProblem): void
  /** Stops timers, flushes pending touches, closes what the core opened. */
  close (): Promise<void>
}

/** @returns whether a decision is a problem to answer rather than a request state */
export function isStickyProblem (value: StickyRequestState | StickyProblem): value is StickyProblem {
  return (value as StickyProblem).status !== undefined
}

/**
 * Builds and starts a sticky core: the store (connected, or degraded while Redis is down), pools, health checks.
 * @throws Error when a store the caller gave (or the in-memory one) cannot start
 */
export async function createStickyCore (options: ResolvedOptions, deps: StickyCoreDeps): Promise<StickyCore> {
  const { log, metrics } = deps
  const { store, owned } = createStore(options, metrics)
  const keyIds = new StoreKeyIds(() => store.sharedSalt())
  const stopSaltWatch = store.onSaltChange((salt) => {
    keyIds.useSalt(salt)
    log.warn('fastify-sticky: the store lost its shared salt; using the one now in it')
  })
  try {
    await store.init()
    await keyIds.load()
  } catch (error) {
    // A Redis we created keeps reconnecting by itself: start degraded rather than not at all, so a gateway
    // restarted during a Redis outage still routes (cookie clients by their cookie, new ones by the balancer).
    if (!owned || options.redis === undefined) {
      stopSaltWatch()
      throw new Error(`fastify-sticky: the binding store is not reachable at start (${(error as Error).message})`, { cause: error })
    }
    log.warn({ err: error }, 'fastify-sticky: Redis is not reachable at start; routing degraded until it is')
  }
  const pools = new Map(Object.entries(options.pools).map(([name, pool]) => [name, new UpstreamPool(name, pool, store)]))
  const touches = new TouchScheduler(store, (error) => { log.debug({ err: error }, 'fastify-sticky: touching bindings failed') })
  const codec = createRoutingCookieCodec(options.secrets)
  const resolver = new AffinityResolver({ store, pools, codec, keyIds, touches, newBindings: options.newBindings })
  const health = new HealthMonitor(store, pools, log, options.timeouts.connectMs)
  await Promise.all([...pools.values()].map((pool) => pool.refreshCounts()))
  await health.start()
  const mover = new SessionMover({ store, handoff: options.handoff, log, observer: metrics })
  const jobs = new MoveJobs({ store, mover, log, concurrency: options.handoff?.concurrency ?? DEFAULT_HANDOFF_CONCURRENCY })
  const tunnelSessions = new TunnelSessions(store)
  const api = createStickyApi({
    mover,
    jobs,
    store,
    pools,
    stats: resolver.stats,
    log,
    verifyRoutingCookie: (value) => {
      const check = codec.verify(value)
      return check.ok ? check.token : null
    },
    keyIdOf: (rawKey) => keyIds.derive(rawKey)
  })
  metrics?.attach(api)

  // cookie@2, which @fastify/cookie parses and serialises with: every door reads and writes cookies as it does,
  // whether or not @fastify/cookie is registered.
  const { parseCookie, stringifySetCookie } = await import('cookie')
  const readCookies = (header: string | undefined): Record<string, string | undefined> =>
    header === undefined || header === '' ? {} : parseCookie(header)
  const { routingCookie, routingSetCookie, upstreamRequestHeaders, clientResponseHeaders } = createHeaderRewriter(options, stringifySetCookie)
  const tunnels = options.websocket === false
    ? new TunnelLimits(0, 0)
    : new TunnelLimits(options.websocket.maxTunnels, options.websocket.maxTunnelsPerClient)
  let lastStoreWarning = 0

  // reply.forward() outside sticky routes balances over the default pool, when one can be named.
  let defaultRoute: ResolvedRouteConfig | null
  try {
    defaultRoute = resolveRouteConfig('(default)', { key: false }, options)
  } catch {
    defaultRoute = null
  }

  function unavailable (route: ResolvedRouteConfig, strictDown: boolean): StickyProblem {
    const config = resolver.pool(route).config
    const retryAfterMs = config.healthCheck?.intervalMs ?? config.cooldownMs
    return noUpstream(route.pool, strictDown, Math.max(1, Math.ceil(retryAfterMs / 1000)))
  }

  function stateOf (route: ResolvedRouteConfig, decision: StickyDecision, rest: Partial<StickyRequestState>): StickyRequestState {
    return { route, decision, binding: rest.binding, cookie: rest.cookie, retried: false, unreached: 0, source: undefined, learn: rest.learn }
  }

  const firstValidCookie = (values: readonly string[]): string | undefined => resolver.firstValidCookie(values)

  function decide (route: ResolvedRouteConfig, view: RequestView): StickyRequestState | StickyProblem | Promise<StickyRequestState | StickyProblem> {
    if (route.key === false) return balance(route)
    const sources = route.key
    const cookieName = options.pools[route.pool].cookieName
    const rawHeader = view.headers.cookie
    const header = typeof rawHeader === 'string' ? rawHeader : undefined
    const value = sources[sources.length - 1].kind === 'cookie' ? readRoutingCookie(header, cookieName, firstValidCookie) : undefined
    if (sources.length === 1 && sources[0].kind === 'cookie') {
      const result = resolver.resolveCookie(route, value, view.ip)
      return result instanceof Promise ? result.then((found) => decided(route, found, undefined)) : decided(route, result, undefined)
    }
    return decideByKeys(route, sources, view, header, value)
  }

  // The whole Cookie header is parsed only for a route whose keys read other cookies (learn mode). A key whose binding
  // the store has at hand is decided at once, as a returning cookie is.
  function decideByKeys (
    route: ResolvedRouteConfig, sources: readonly ResolvedKeySource[], view: RequestView, header: string | undefined, value: string | undefined
  ): StickyRequestState | StickyProblem | Promise<StickyRequestState | StickyProblem> {
    const cookies = learnSourceOf(sources) === undefined ? undefined : view.cookies ?? readCookies(header)
    const result = resolver.resolve(route, sources, { ip: view.ip, headers: view.headers, query: view.query, cookies: cookies ?? NO_COOKIES, request: view.request }, value)
    return result instanceof Promise ? result.then((found) => decided(route, found, cookies)) : decided(route, result, cookies)
  }

  // What a resolution comes to for the door: the request's state, or the problem to answer.
  function decided (route: ResolvedRouteConfig, result: AffinityResult, cookies: Record<string, string | undefined> | undefined): StickyRequestState | StickyProblem {
    if (result.rejected !== undefined) log.debug({ reason: result.rejected }, 'fastify-sticky: affinity key ignored')
    if (result.storeError !== undefined) {
      const now = Date.now()
      if (now - lastStoreWarning > STORE_WARN_INTERVAL_MS) {
        lastStoreWarning = now
        log.warn({ err: result.storeError }, 'fastify-sticky: binding store failed; routing from cookies and the balancer')
      }
    }
    if (result.sticky === null) return unavailable(route, result.failure === 'strict-down')
    const learn = cookies === undefined || route.key === false ? undefined : learnSourceOf(route.key)
    return stateOf(route, result.sticky, {
      binding: result.binding,
      cookie: result.setCookie,
      learn: learn === undefined ? undefined : { source: learn, requestValue: cookies?.[learn.cookie] }
    })
  }

  function balance (route: ResolvedRouteConfig): StickyRequestState | StickyProblem {
    const decision = resolver.resolveWithoutAffinity(route)
    return decision === null ? unavailable(route, false) : stateOf(route, decision, {})
  }

  async function reportFailure (state: StickyRequestState | undefined, error: unknown, context: FailureContext): Promise<FailureOutcome> {
    const failure = classifyForwardFailure(error, context.clientGone)
    if (state === undefined) {
      const plan = planFailureResponse(failure, { replayable: false, idempotent: false, unreachedAttempts: 0, retried: true, poolSize: 0 })
      return { retry: false, problem: answerFor(plan.status, error) }
    }
    const upstream = state.decision.upstream
    const pool = resolver.pool(state.route)
    const plan = planFailureResponse(failure, {
      replayable: context.replayable,
      idempotent: IDEMPOTENT_METHODS.has(context.method),
      unreachedAttempts: state.unreached,
      retried: state.retried,
      poolSize: pool.upstreams.length
    })
    if (failure.kind === 'unreached') state.unreached++
    // A reset may only be a stale keep-alive connection: blame the upstream only if it refuses a new one.
    const down = plan.blame === 'yes' || (plan.blame === 'if-unreachable' && !(await health.isReachable(upstream)))
    if (down) await health.setDown(pool, upstream, true, failure.code ?? 'connection failed')
    if (!plan.retry || context.clientGone) {
      if (plan.status !== null && plan.status !== 400) {
        log.warn({ pool: pool.name, upstream: upstream.id, code: failure.code, statusCode: plan.status }, 'fastify-sticky: upstream request failed')
      }
      return { retry: false, problem: answerFor(plan.status, error) }
    }
    state.retried = true
    if (!down) return { retry: true }
    if (state.route.failover === 'strict' && state.binding !== undefined) return { retry: false, problem: unavailable(state.route, true) }
    const moved = await resolver.failover(state.route, upstream, state.binding)
    if (moved.sticky === null) return { retry: false, problem: unavailable(state.route, moved.failure === 'strict-down') }
    state.decision = moved.sticky
    state.binding = moved.binding ?? state.binding
    if (moved.setCookie !== undefined) state.cookie = moved.setCookie
    return { retry: true }
  }

  // A 421 from the old upstream of a session that moved: the binding names its new home (every gateway's near cache
  // was told by the move's rebind, a moment before the old upstream let go of the request).
  async function followMove (state: StickyRequestState | undefined): Promise<boolean> {
    if (state === undefined || state.binding === undefined || state.retried) return false
    const next = await mover.whereNow(resolver.pool(state.route), state.binding.keyId, state.decision.upstream.id)
    if (next === undefined) return false
    state.decision = { ...state.decision, upstream: next }
    state.retried = true
    return true
  }

  function answerFor (status: 400 | 502 | 504 | null, cause: unknown): StickyProblem | null {
    if (status === null) return null
    if (status === 400) return badRequestTarget(cause)
    return status === 504 ? upstreamTimeout(cause) : badGateway(cause)
  }

  async function learn (state: StickyRequestState, setCookie: string | readonly string[] | undefined): Promise<void> {
    if (state.learn === undefined) return
    await resolver.learn(state.route, state.learn.source, state.learn.requestValue, state.decision.upstream, setCookie)
  }

  return {
    options,
    api,
    tunnels,
    defaultRoute,
    route: (label, config) => resolveRouteConfig(label, config, options),
    decide,
    balance,
    routingCookie,
    routingSetCookie,
    upstreamRequestHeaders,
    clientResponseHeaders,
    reportFailure,
    followMove,
    tunnelSessions,
    learn,
    badTarget: badRequestTarget,
    problemSent (pool, problem) {
      if (problem.status !== 400) metrics?.onForwardError(pool, problem.status)
    },
    async close () {
      stopSaltWatch()
      health.stop()
      await jobs.close()
      tunnelSessions.close()
      await touches.flush()
      if (owned) await store.close()
    }
  }
}

// What a key route without a learn source reads as the request's cookies: none of its keys reads one.
const NO_COOKIES: Readonly<Record<string, string | undefined>> = Object.freeze({})

function learnSourceOf (sources: ReadonlyArray<{ readonly kind: string }>): LearnSource | undefined {
  for (const source of sources) if (source.kind === 'learn') return source as LearnSource
  return undefined
}


