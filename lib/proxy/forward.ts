/**
 * `reply.forward()`: hands the request to @fastify/reply-from, aimed at the upstream the affinity hook chose, and
 * handles what goes wrong: a connection that fails marks the upstream down (for every gateway), moves the session
 * with one compare-and-set and retries once when the request can be replayed. Answers are 502/503/504 with a short
 * JSON body; never a 500, never an internal address.
 */
import type { IncomingMessage } from 'node:http'
import { Readable, type Duplex } from 'node:stream'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { FastifyReplyFromHooks } from '@fastify/reply-from'
import type { AffinityFailure, AffinityResolver, AffinityResult, BindingContext } from '../affinity/resolve'
import { BadGatewayError, BadRequestTargetError, NoUpstreamError, TunnelLimitError, UpstreamTimeoutError } from '../errors'
import { trimOws } from '../affinity/cookie-text'
import { ipPrefixKey, type ResolvedKeySource } from '../affinity/keys'
import { classifyForwardFailure, errorCodes, planFailureResponse, type ForwardFailure } from '../core/failure'
import { forwardTarget } from '../core/forward-target'
import { forwardedForValue, removeHopByHop, writeForwardingHeaders } from '../core/upstream-headers'
import type { ResolvedRouteConfig } from '../options'
import type { ResolvedXForwarded } from '../options/edge'
import type { HealthMonitor } from '../pool/health'
import type { TunnelLimits } from './tunnel-limits'
import { isUpgrade, openTunnel, upgradeSocketOf, type TunnelOptions } from './websocket'

/** Per-request routing state kept between the affinity hook and the forward. */
export interface ForwardState {
  readonly route: ResolvedRouteConfig
  binding: BindingContext | undefined
  retried: boolean
  /** Attempts of this request that never reached an upstream (each one marked that upstream down). */
  unreached: number
  source: string | undefined
  /** Whether this response sets a routing cookie (then no shared cache may keep it). */
  setsCookie: boolean
  /** On routes that learn the app's session cookie: which, and the value the client sent (if any). */
  readonly learn: { readonly source: LearnSource, readonly requestValue: string | undefined } | undefined
}

type LearnSource = Extract<ResolvedKeySource, { kind: 'learn' }>

const kForwardState = Symbol('fastify-sticky.forwardState')

/** @returns the request's routing state, if the affinity hook (or forward) made one */
export function forwardStateOf (request: FastifyRequest): ForwardState | undefined {
  return (request as unknown as Record<symbol, ForwardState | undefined>)[kForwardState]
}

/** Attaches routing state to a request. */
export function setForwardState (request: FastifyRequest, state: ForwardState): void {
  (request as unknown as Record<symbol, ForwardState>)[kForwardState] = state
}

const IDEMPOTENT_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE'])

// Transport errors name the upstream's address ("connect ECONNREFUSED 10.0.0.11:3000", `address`, `port`), and
// reply-from logs every one at warn ('response errored') whatever `disableRequestLogging` says: that line keeps
// the error's type and code only. The plugin's own line names the upstream by its id.
function upstreamSafeError (error: unknown): Record<string, unknown> {
  const e = error as { name?: unknown } | null
  return { type: typeof e?.name === 'string' ? e.name : 'Error', code: errorCodes(error).pop(), message: 'upstream request failed' }
}

const kOriginalWarn = Symbol('fastify-sticky.originalWarn')
type WarnFn = (this: unknown, ...args: unknown[]) => void
type SafeLoggable = FastifyRequest['log'] & { [kOriginalWarn]?: WarnFn }

function safeWarn (this: SafeLoggable, ...args: unknown[]): void {
  if (args[1] === 'response errored') args[0] = { err: upstreamSafeError(args[0]) }
  this[kOriginalWarn]?.apply(this, args)
}

// Wraps `warn` on the request's own logger (once) rather than making a child: a pino child of Fastify's
// per-request child costs ~10 µs a request (measured: bench/results/profile.md), an own property ~nothing.
function useSafeLog (request: FastifyRequest): void {
  const log = request.log as SafeLoggable
  // Own property only: a pino child inherits its parent's symbols but has a `warn` of its own when it sets a level.
  if (Object.hasOwn(log, kOriginalWarn)) return
  log[kOriginalWarn] = log.warn as unknown as WarnFn
  log.warn = safeWarn as unknown as FastifyRequest['log']['warn']
}

// A reference that starts with the upstream's own origin, as a path-absolute reference; anything else as it is.
function withoutOrigin (value: unknown, origin: string): unknown {
  if (typeof value !== 'string' || value.length < origin.length || value.slice(0, origin.length).toLowerCase() !== origin.toLowerCase()) return value
  const rest = value.slice(origin.length)
  if (rest === '') return '/'
  if (rest[0] === '/') return rest
  return rest[0] === '?' || rest[0] === '#' ? '/' + rest : value
}

/** What forwarding needs from the plugin. */
export interface ForwarderDeps {
  readonly resolver: AffinityResolver
  readonly health: HealthMonitor
  /** Lower-case header name, or `false`. */
  readonly reboundHeader: string | false
  /** The default pool's route config for `reply.forward()` outside sticky routes, if one can be named. */
  readonly defaultRoute: ResolvedRouteConfig | null
  /** Applies a new decision's routing cookie (of the given pool) to the reply. */
  readonly setRoutingCookie: (request: FastifyRequest, reply: FastifyReply, pool: string, value: string) => void
  /** Routing cookie names removed from requests before they reach an upstream (empty: forward them). */
  readonly stripCookies: readonly string[]
  /** Whether (and for which hosts) to write X-Forwarded-For/-Proto/-Host. */
  readonly xForwarded: ResolvedXForwarded
  /** WebSocket tunnels: settings, the open client sockets, their caps, and the routing cookies an upgrade's answer must carry. */
  readonly tunnels: {
    readonly options: TunnelOptions
    readonly sockets: Set<Duplex>
    readonly limits: TunnelLimits
    readonly setCookies: (request: FastifyRequest) => readonly string[]
  }
  /** Told of every answer the gateway makes itself because forwarding failed (metrics). */
  readonly onForwardError?: (pool: string, status: 502 | 503 | 504) => void
}

/**
 * Removes the named cookies from a Cookie header, as a load balancer's `indirect` cookie mode does: the upstream
 * app never sees the gateway's routing cookie.
 * @returns the header without them, or `undefined` when nothing is left
 */
export function removeCookies (header: string, names: readonly string[]): string | undefined {
  let found = false
  for (const name of names) {
    // Not `name + '='`: the parser trims names, so `sticky =v` is the routing cookie too.
    if (header.includes(name)) {
      found = true
      break
    }
  }
  if (!found) return header
  const kept = header.split(';').filter((pair) => {
    const eq = pair.indexOf('=')
    return !names.includes(trimOws(eq < 0 ? pair : pair.slice(0, eq)))
  })
  return kept.length === 0 ? undefined : trimOws(kept.join(';'))
}

/** The pieces the plugin wires: the `reply.forward` decorator and the 503 answer shared with the hook. */
export interface Forwarder {
  forward (this: FastifyReply, source?: string): FastifyReply
  /** Answers 503 with `Retry-After` (no upstream can take the request, or a strict route's upstream is down). */
  sendUnavailable (reply: FastifyReply, pool: string, failure: AffinityFailure): FastifyReply
}

/** Builds the forwarder of one plugin registration. */
export function createForwarder (deps: ForwarderDeps): Forwarder {
  const { resolver, health, reboundHeader, xForwarded } = deps
  const allowedHosts = xForwarded === false ? undefined : xForwarded.allowedHosts

  function sendProblem (reply: FastifyReply, status: number, code: string | undefined, error: string, message: string): FastifyReply {
    return reply.code(status).send({ statusCode: status, code, error, message, requestId: reply.request.id })
  }

  // The answer the gateway makes itself when a forward fails: a coded problem, the cause kept for the log only.
  function sendFailure (reply: FastifyReply, error: unknown, failure: ForwardFailure, status: 400 | 502 | 504): void {
    if (reply.sent) return
    if (status === 400) {
      request400(reply, error)
      return
    }
    const problem = status === 504 ? new UpstreamTimeoutError({ cause: error }) : new BadGatewayError({ cause: error })
    const sticky = reply.request.sticky
    reply.request.log.warn({ pool: sticky?.pool, upstream: sticky?.upstream.id, code: failure.code, statusCode: status },
      'fastify-sticky: upstream request failed')
    deps.onForwardError?.(sticky?.pool ?? '', status)
    sendProblem(reply, status, problem.code, status === 504 ? 'Gateway Timeout' : 'Bad Gateway', problem.message)
  }

  // The client's request is at fault (its target, or a header that cannot be sent): no upstream is involved.
  function request400 (reply: FastifyReply, error: unknown): FastifyReply {
    reply.request.log.debug({ err: error }, 'fastify-sticky: request cannot be forwarded')
    const problem = new BadRequestTargetError()
    return sendProblem(reply, 400, problem.code, 'Bad Request', problem.message)
  }

  function sendUnavailable (reply: FastifyReply, pool: string, failure: AffinityFailure): FastifyReply {
    const problem = new NoUpstreamError(pool)
    const config = resolver.pool({ pool } as ResolvedRouteConfig).config
    const retryAfterMs = config.healthCheck?.intervalMs ?? config.cooldownMs
    reply.header('retry-after', String(Math.max(1, Math.ceil(retryAfterMs / 1000))))
    const message = failure === 'strict-down'
      ? 'Service Unavailable: the upstream this session is bound to is down'
      : problem.message
    deps.onForwardError?.(pool, 503)
    return sendProblem(reply, 503, problem.code, 'Service Unavailable', message)
  }

  function upstreamOf (request: FastifyRequest): string {
    // Set before reply.from runs; forward() answers 503 itself when there is none.
    return (request.sticky as NonNullable<FastifyRequest['sticky']>).upstream.url
  }

  function rewriteRequestHeaders (request: FastifyRequest, headers: Record<string, unknown>): Record<string, unknown> {
    // undici refuses `Expect: 100-continue` (curl sends it for bodies over 1 MB); the body is streamed anyway.
    if (headers.expect !== undefined) delete headers.expect
    // reply-from removes `Connection` and what it names; what it does not name (a bare `Keep-Alive`, `Upgrade: h2c`,
    // `TE`) would make undici refuse the request, or reach the upstream as if we had sent it.
    removeHopByHop(headers)
    if (deps.stripCookies.length > 0 && typeof headers.cookie === 'string') {
      const cookie = removeCookies(headers.cookie, deps.stripCookies)
      if (cookie === undefined) delete headers.cookie
      else headers.cookie = cookie
    }
    if (xForwarded !== false) {
      const peer = request.raw.socket?.remoteAddress
      // `request.ips` walks X-Forwarded-For (and allocates): only worth it when the client sent one.
      const forwardedFor = request.headers['x-forwarded-for'] === undefined ? peer : forwardedForValue(request.ips, peer)
      writeForwardingHeaders(headers, forwardedFor, request.protocol, forwardedHost(request))
    }
    if (reboundHeader !== false) {
      // A client-sent header must never claim a rebound that did not happen.
      // (`delete` only when present: it turns the headers object into a slow dictionary for the rest of its life.)
      if (request.sticky?.rebound === true) headers[reboundHeader] = '1'
      else if (headers[reboundHeader] !== undefined) delete headers[reboundHeader]
    }
    return headers
  }

  // The host the client asked for (trustProxy-aware), when it may be passed on.
  function forwardedHost (request: FastifyRequest): string | undefined {
    const host = request.host
    if (host === '' || (allowedHosts !== undefined && !allowedHosts.has(host.toLowerCase()))) return undefined
    return host
  }

  // Hop-by-hop headers describe the upstream connection, not this one: copied, they would override the
  // client's own `Connection: close`. An upstream that builds absolute URLs from the Host it was sent (its own
  // address) would hand clients an internal address in redirects: those become path-absolute references, which
  // every client resolves against the address it used (nginx's `proxy_redirect default`).
  function rewriteHeaders (headers: Record<string, unknown>, request?: FastifyRequest): Record<string, unknown> {
    removeHopByHop(headers)
    const origin = request?.sticky?.upstream.url
    if (origin !== undefined) {
      if (headers.location !== undefined) headers.location = withoutOrigin(headers.location, origin)
      if (headers['content-location'] !== undefined) headers['content-location'] = withoutOrigin(headers['content-location'], origin)
    }
    // A shared cache that kept a response with our Set-Cookie would pin everyone it serves to one binding.
    if (request !== undefined && forwardStateOf(request)?.setsCookie === true) headers['cache-control'] = privateCacheControl(headers['cache-control'])
    return headers
  }

  const sharedOptions = Object.freeze({ getUpstream: upstreamOf, onError, rewriteRequestHeaders, rewriteHeaders }) as unknown as FastifyReplyFromHooks

  // On learn routes the response waits for its Set-Cookie to be bound in the store, so the client's next request,
  // through any gateway, finds the binding.
  function onLearnResponse (request: FastifyRequest, reply: FastifyReply, res: { headers: Record<string, unknown>, stream: unknown }): void {
    const state = forwardStateOf(request)
    const sticky = request.sticky
    const learn = state?.learn
    if (state === undefined || learn === undefined || sticky === null) {
      reply.send(res.stream)
      return
    }
    resolver.learn(state.route, learn.source, learn.requestValue, sticky.upstream, res.headers['set-cookie'] as string | string[] | undefined)
      .catch((error: unknown) => { request.log.debug({ err: error }, 'fastify-sticky: could not learn the app session cookie') })
      .finally(() => reply.send(res.stream))
  }
  const learnOptions = Object.freeze({ ...sharedOptions, onResponse: onLearnResponse }) as unknown as FastifyReplyFromHooks

  // A body buffered for replay is handed over as is; anything else (none, parsed, stream) goes through reply-from's own path.
  const routeOptions = new WeakMap<ResolvedRouteConfig, FastifyReplyFromHooks>()
  function optionsFor (request: FastifyRequest): FastifyReplyFromHooks {
    const state = forwardStateOf(request)
    let base = state?.learn === undefined ? sharedOptions : learnOptions
    const timeoutMs = state?.route.timeoutMs
    if (timeoutMs !== undefined) {
      // A route with its own response timeout (long polling, Server-Sent Events): one frozen options object per route.
      let own = routeOptions.get((state as ForwardState).route)
      if (own === undefined) {
        own = Object.freeze({ ...base, timeout: timeoutMs }) as unknown as FastifyReplyFromHooks
        routeOptions.set((state as ForwardState).route, own)
      }
      base = own
    }
    const body = request.body
    if (!Buffer.isBuffer(body)) return base
    return { ...base, body, contentType: request.headers['content-type'] ?? 'application/octet-stream' } as unknown as FastifyReplyFromHooks
  }

  function applyResult (request: FastifyRequest, reply: FastifyReply, state: ForwardState, result: AffinityResult): boolean {
    if (result.sticky === null) {
      sendUnavailable(reply, state.route.pool, result.failure ?? 'no-upstream')
      return false
    }
    request.sticky = result.sticky
    state.binding = result.binding ?? state.binding
    if (result.setCookie !== undefined) {
      state.setsCookie = true
      deps.setRoutingCookie(request, reply, state.route.pool, result.setCookie)
    }
    return true
  }

  // The response side, not the request: undici destroys a streamed request body itself when the upstream fails,
  // and the client is still there to be answered.
  function clientGone (reply: FastifyReply): boolean {
    return reply.raw.destroyed || reply.raw.socket?.destroyed === true
  }

  // One path for every failed forward, HTTP or upgrade: classify, blame only the upstream's own failures, then
  // retry (after a failover when the upstream is now down) or answer.
  async function recover (reply: FastifyReply, error: unknown, retryWith: (reply: FastifyReply) => void): Promise<void> {
    const request = reply.request
    const state = forwardStateOf(request)
    const failure = classifyForwardFailure(error, clientGone(reply))
    if (state === undefined || request.sticky === null) {
      const plan = planFailureResponse(failure, { replayable: false, idempotent: false, unreachedAttempts: 0, retried: true, poolSize: 0 })
      if (plan.status !== null) sendFailure(reply, error, failure, plan.status)
      return
    }
    const sticky = request.sticky
    const pool = resolver.pool(state.route)
    const body = request.body
    const plan = planFailureResponse(failure, {
      replayable: body === undefined || body === null || !(body instanceof Readable),
      idempotent: IDEMPOTENT_METHODS.has(request.method),
      unreachedAttempts: state.unreached,
      retried: state.retried,
      poolSize: pool.upstreams.length
    })
    if (failure.kind === 'unreached') state.unreached++
    // A reset may only be a stale keep-alive connection: blame the upstream only if it refuses a new one.
    const down = plan.blame === 'yes' || (plan.blame === 'if-unreachable' && !(await health.isReachable(sticky.upstream)))
    if (down) await health.setDown(pool, sticky.upstream, true, failure.code ?? 'connection failed')
    if (!plan.retry || reply.sent || clientGone(reply)) {
      if (plan.status !== null) sendFailure(reply, error, failure, plan.status)
      return
    }
    state.retried = true
    if (down) {
      if (state.route.failover === 'strict' && state.binding !== undefined) {
        sendUnavailable(reply, pool.name, 'strict-down')
        return
      }
      if (!applyResult(request, reply, state, await resolver.failover(state.route, sticky.upstream, state.binding))) return
    }
    retryWith(reply)
  }

  function retryHttp (reply: FastifyReply): void {
    reply.from(forwardStateOf(reply.request)?.source, optionsFor(reply.request))
  }

  function onError (reply: FastifyReply, failure: { error: unknown }): void {
    recover(reply, failure.error, retryHttp).catch((error: unknown) => {
      sendFailure(reply, error, { kind: 'bad-gateway', code: undefined }, 502)
    })
  }

  function forward (this: FastifyReply, source?: string): FastifyReply {
    const request = this.request
    let state = forwardStateOf(request)
    if (request.sticky === null) {
      const route = deps.defaultRoute
      if (route === null) {
        throw new Error('fastify-sticky: reply.forward() on a route without config.sticky needs a default pool (defaults.pool, or a single pool)')
      }
      const decision = resolver.resolveWithoutAffinity(route)
      if (decision === null) return sendUnavailable(this, route.pool, 'no-upstream')
      request.sticky = decision
      state = { route, binding: undefined, retried: false, unreached: 0, source, setsCookie: false, learn: undefined }
      setForwardState(request, state)
    } else if (state !== undefined) {
      state.source = source
    }
    // One target rule for requests and upgrades: reply-from's own check, applied before either is sent.
    const target = forwardTarget(source, request.url)
    if (target === null) return request400(this, new Error('request target refused'))
    if (isUpgrade(request)) {
      startTunnel(this, target)
      return this
    }
    useSafeLog(request)
    try {
      return this.from(source, optionsFor(request))
    } catch (error) {
      // reply-from refuses what it cannot turn into an upstream URL: that is the client's request at fault.
      return request400(this, error)
    }
  }

  // An upgrade takes a tunnel place for its whole life, retries included, until the client socket closes.
  function startTunnel (reply: FastifyReply, path: string): void {
    const request = reply.request
    const client = upgradeSocketOf(request) as Duplex
    const place = deps.tunnels.limits.acquire(ipPrefixKey(request.ip, 32, 64) ?? request.ip)
    if (typeof place === 'string') {
      const problem = new TunnelLimitError(place === 'gateway' ? 'on this gateway' : 'for this client')
      request.log.warn({ pool: request.sticky?.pool, limit: place }, 'fastify-sticky: WebSocket tunnel refused')
      reply.header('retry-after', '5')
      sendProblem(reply, 503, problem.code, 'Service Unavailable', problem.message)
      return
    }
    client.once('close', place)
    tunnel(reply, path)
  }

  function tunnel (reply: FastifyReply, path: string): void {
    const request = reply.request
    const sticky = request.sticky as NonNullable<FastifyRequest['sticky']>
    const upgrade = request.headers.upgrade
    const headers = rewriteRequestHeaders(request, { ...request.headers })
    // The client's `Connection` may name our own X-Forwarded-* for removal by the next hop: send only ours.
    headers.connection = 'Upgrade'
    headers.upgrade = upgrade
    const target = {
      upstreamUrl: sticky.upstream.url,
      path,
      headers,
      setCookies: deps.tunnels.setCookies(request)
    }
    openTunnel(reply, target, deps.tunnels.options, deps.tunnels.sockets, {
      onFailure: (error) => {
        recover(reply, error, (again) => { tunnel(again, path) }).catch((cause: unknown) => {
          sendFailure(reply, cause, { kind: 'bad-gateway', code: undefined }, 502)
        })
      },
      onResponse: (response) => { relayRefusal(reply, response, target.setCookies) }
    })
  }

  // An upstream that answers an upgrade with anything but 101 is relayed as an ordinary response, through Fastify:
  // same header rewriting as HTTP (Location without the upstream's origin), framing written anew.
  function relayRefusal (reply: FastifyReply, response: IncomingMessage, setCookies: readonly string[]): void {
    const headers = rewriteHeaders({ ...response.headers }, reply.request)
    delete headers['set-cookie']
    reply.code(response.statusCode ?? 502)
    for (const [name, value] of Object.entries(headers)) if (value !== undefined) reply.header(name, value)
    const cookies = [...(response.headers['set-cookie'] ?? []), ...setCookies]
    if (cookies.length > 0) reply.header('set-cookie', cookies)
    reply.send(response)
  }

  return { forward, sendUnavailable }
}

/**
 * The response's Cache-Control once it carries a routing cookie: private (the browser may keep it, a shared cache
 * may not); `no-store` is kept as it is, and `public` / `s-maxage` give way.
 */
export function privateCacheControl (value: unknown): string {
  if (typeof value !== 'string' || value === '') return 'private'
  if (/(^|,)\s*(private|no-store)\s*(,|$|=)/i.test(value)) return value
  const kept = value.split(',').map((d) => d.trim()).filter((d) => d !== '' && !/^(public|s-maxage\s*=.*)$/i.test(d))
  return ['private', ...kept].join(', ')
}

/**
 * Reads a small request body into memory so the request can be sent again to another upstream. Bodies that are
 * already parsed, absent, larger than `limit` or of unknown length are left alone (and then not replayable).
 */
export async function bufferReplayableBody (request: FastifyRequest, limit: number): Promise<void> {
  const body = request.body
  if (!(body instanceof Readable) || request.method === 'GET' || request.method === 'HEAD') return
  const length = Number(request.headers['content-length'])
  if (!(length > 0 && length <= limit)) return
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of body) {
    size += (chunk as Buffer).length
    if (size > limit) throw Object.assign(new Error('request body larger than its content-length'), { statusCode: 400 })
    chunks.push(chunk as Buffer)
  }
  request.body = Buffer.concat(chunks, size)
}
