/**
 * `reply.forward()`: hands the request to @fastify/reply-from, aimed at the upstream the affinity hook chose, and
 * handles what goes wrong: a connection that fails marks the upstream down (for every gateway), moves the session
 * with one compare-and-set and retries once when the request can be replayed. Answers are 502/503/504 with a short
 * JSON body; never a 500, never an internal address.
 */
import { Readable, type Duplex } from 'node:stream'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { FastifyReplyFromHooks } from '@fastify/reply-from'
import type { AffinityFailure, AffinityResolver, AffinityResult, BindingContext } from '../affinity/resolve'
import { BadGatewayError, NoUpstreamError, UpstreamTimeoutError } from '../errors'
import { trimOws } from '../affinity/cookie-text'
import type { ResolvedKeySource } from '../affinity/keys'
import type { ResolvedRouteConfig } from '../options'
import type { HealthMonitor } from '../pool/health'
import { isUpgrade, openTunnel, type TunnelFailure, type TunnelOptions } from './websocket'

/** Per-request routing state kept between the affinity hook and the forward. */
export interface ForwardState {
  readonly route: ResolvedRouteConfig
  binding: BindingContext | undefined
  retried: boolean
  source: string | undefined
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

// Failures where the request never reached the upstream: safe to send again, whatever the method.
const NOT_REACHED_CODES = new Set(['ECONNREFUSED', 'UND_ERR_CONNECT_TIMEOUT', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN'])
// The connection broke: the upstream may have seen the request, so only idempotent requests are sent again.
const RESET_CODES = new Set(['ECONNRESET', 'UND_ERR_SOCKET', 'EPIPE', 'UND_ERR_CLOSED'])
const TIMEOUT_CODES = new Set([
  'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT',
  'FST_REPLY_FROM_TIMEOUT', 'FST_REPLY_FROM_GATEWAY_TIMEOUT', 'FST_REPLY_FROM_HTTP_REQUEST_TIMEOUT'
])
const IDEMPOTENT_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE'])

// reply-from wraps transport errors; the code that matters may sit a few causes down.
function codesOf (error: unknown): string[] {
  const codes: string[] = []
  for (let e = error as { code?: unknown, cause?: unknown } | undefined, depth = 0; e !== undefined && e !== null && depth < 5; e = e.cause as typeof e, depth++) {
    if (typeof e.code === 'string') codes.push(e.code)
  }
  return codes
}

// Transport errors name the upstream's address ("connect ECONNREFUSED 10.0.0.11:3000", `address`, `port`), and
// reply-from logs every one at warn ('response errored') whatever `disableRequestLogging` says: that line keeps
// the error's type and code only. The plugin's own line names the upstream by its id.
function upstreamSafeError (error: unknown): Record<string, unknown> {
  const e = error as { name?: unknown } | null
  return { type: typeof e?.name === 'string' ? e.name : 'Error', code: codesOf(error).pop(), message: 'upstream request failed' }
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
  /** Whether to add X-Forwarded-For/-Proto/-Host. */
  readonly xForwarded: boolean
  /** WebSocket tunnels: settings, the open client sockets, and the routing cookies an upgrade's 101 must carry. */
  readonly tunnels: {
    readonly options: TunnelOptions
    readonly sockets: Set<Duplex>
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
  const { resolver, health, reboundHeader } = deps

  function sendProblem (reply: FastifyReply, status: number, code: string | undefined, error: string, message: string): FastifyReply {
    return reply.code(status).send({ statusCode: status, code, error, message, requestId: reply.request.id })
  }

  function sendUpstreamError (reply: FastifyReply, error: unknown): void {
    const codes = codesOf(error)
    const problem = codes.some((code) => TIMEOUT_CODES.has(code))
      ? new UpstreamTimeoutError({ cause: error })
      : new BadGatewayError({ cause: error })
    const sticky = reply.request.sticky
    reply.request.log.warn({ pool: sticky?.pool, upstream: sticky?.upstream.id, code: codes[codes.length - 1], statusCode: problem.statusCode },
      'fastify-sticky: upstream request failed')
    const status = problem.statusCode === 504 ? 504 : 502
    deps.onForwardError?.(sticky?.pool ?? '', status)
    sendProblem(reply, status, problem.code, status === 504 ? 'Gateway Timeout' : 'Bad Gateway', problem.message)
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
    if (deps.stripCookies.length > 0 && typeof headers.cookie === 'string') {
      const cookie = removeCookies(headers.cookie, deps.stripCookies)
      if (cookie === undefined) delete headers.cookie
      else headers.cookie = cookie
    }
    if (deps.xForwarded) {
      const client = request.raw.socket.remoteAddress
      const previous = headers['x-forwarded-for']
      if (client !== undefined) headers['x-forwarded-for'] = typeof previous === 'string' && previous !== '' ? previous + ', ' + client : client
      headers['x-forwarded-proto'] = request.protocol
      if (request.headers.host !== undefined) headers['x-forwarded-host'] = request.headers.host
    }
    if (reboundHeader !== false) {
      // A client-sent header must never claim a rebound that did not happen.
      // (`delete` only when present: it turns the headers object into a slow dictionary for the rest of its life.)
      if (request.sticky?.rebound === true) headers[reboundHeader] = '1'
      else if (headers[reboundHeader] !== undefined) delete headers[reboundHeader]
    }
    return headers
  }

  // Hop-by-hop headers describe the upstream connection, not this one: copied, they would override the
  // client's own `Connection: close`. An upstream that builds absolute URLs from the Host it was sent (its own
  // address) would hand clients an internal address in redirects: those become path-absolute references, which
  // every client resolves against the address it used (nginx's `proxy_redirect default`).
  function rewriteHeaders (headers: Record<string, unknown>, request?: FastifyRequest): Record<string, unknown> {
    if (headers.connection !== undefined) delete headers.connection
    if (headers['keep-alive'] !== undefined) delete headers['keep-alive']
    const origin = request?.sticky?.upstream.url
    if (origin !== undefined) {
      if (headers.location !== undefined) headers.location = withoutOrigin(headers.location, origin)
      if (headers['content-location'] !== undefined) headers['content-location'] = withoutOrigin(headers['content-location'], origin)
    }
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
    if (result.setCookie !== undefined) deps.setRoutingCookie(request, reply, state.route.pool, result.setCookie)
    return true
  }

  // A request that never reached an upstream is retried until every upstream of its pool has refused it: nothing
  // was sent anywhere, and each refusal marks that upstream down, so each retry goes to another one, and the last
  // finds none left (503). One retry is not enough: the next pick may be dead too (Redis lost the shared down
  // states, or two upstreams died together). Anything else is retried once.
  const unreached = new WeakMap<ForwardState, number>()
  function mayRetry (state: ForwardState, notReached: boolean, poolSize: number): boolean {
    if (!notReached) return !state.retried
    const misses = (unreached.get(state) ?? 0) + 1
    unreached.set(state, misses)
    return misses <= poolSize
  }

  async function recover (reply: FastifyReply, error: unknown, notReached: boolean): Promise<void> {
    const request = reply.request
    const state = forwardStateOf(request) as ForwardState
    const sticky = request.sticky as NonNullable<FastifyRequest['sticky']>
    const pool = resolver.pool(state.route)
    // A reset may only be a stale keep-alive connection: blame the upstream only if it refuses a new one.
    const down = notReached || !(await health.isReachable(sticky.upstream))
    if (down) await health.setDown(pool, sticky.upstream, true, codesOf(error).pop() ?? 'connection failed')
    const body = request.body
    const replayable = (body === undefined || body === null || !(body instanceof Readable)) &&
      (notReached || IDEMPOTENT_METHODS.has(request.method))
    if (!mayRetry(state, notReached, pool.upstreams.length) || !replayable || reply.sent) {
      sendUpstreamError(reply, error)
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
    reply.from(state.source, optionsFor(request))
  }

  function onError (reply: FastifyReply, failure: { error: unknown }): void {
    const codes = codesOf(failure.error)
    const notReached = codes.some((code) => NOT_REACHED_CODES.has(code))
    const reset = !notReached && codes.some((code) => RESET_CODES.has(code))
    if ((!notReached && !reset) || forwardStateOf(reply.request) === undefined) {
      sendUpstreamError(reply, failure.error)
      return
    }
    recover(reply, failure.error, notReached).catch((error: unknown) => { sendUpstreamError(reply, error) })
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
      state = { route, binding: undefined, retried: false, source, learn: undefined }
      setForwardState(request, state)
    } else if (state !== undefined) {
      state.source = source
    }
    if (isUpgrade(request)) {
      tunnel(this)
      return this
    }
    useSafeLog(request)
    try {
      return this.from(source, optionsFor(request))
    } catch (error) {
      // reply-from refuses what it cannot turn into an upstream URL (absolute-form targets, '..' segments):
      // that is the client's request at fault, not the gateway.
      request.log.debug({ err: error }, 'fastify-sticky: request target refused')
      return sendProblem(this, 400, 'FST_STICKY_BAD_REQUEST_TARGET', 'Bad Request', 'Bad Request: the request target cannot be forwarded')
    }
  }

  function tunnel (reply: FastifyReply): void {
    const request = reply.request
    const sticky = request.sticky as NonNullable<FastifyRequest['sticky']>
    const headers = rewriteRequestHeaders(request, { ...request.headers })
    openTunnel(reply, sticky.upstream.url, headers, deps.tunnels.setCookies(request), deps.tunnels.options, deps.tunnels.sockets, (failure) => {
      tunnelFailed(reply, failure).catch((error: unknown) => { sendUpstreamError(reply, error) })
    })
  }

  // An upstream that cannot be reached before its 101 fails over like an HTTP request: an upgrade carries no
  // body, so it can always be sent again.
  async function tunnelFailed (reply: FastifyReply, failure: TunnelFailure): Promise<void> {
    const request = reply.request
    const state = forwardStateOf(request)
    const sticky = request.sticky as NonNullable<FastifyRequest['sticky']>
    const error = Object.assign(new Error('upstream upgrade failed'), { code: failure.code })
    const notReached = failure.code !== undefined && NOT_REACHED_CODES.has(failure.code)
    if (state === undefined || !notReached) {
      sendUpstreamError(reply, error)
      return
    }
    const pool = resolver.pool(state.route)
    await health.setDown(pool, sticky.upstream, true, failure.code ?? 'connection failed')
    if (!mayRetry(state, true, pool.upstreams.length)) {
      sendUpstreamError(reply, error)
      return
    }
    state.retried = true
    if (state.route.failover === 'strict' && state.binding !== undefined) {
      sendUnavailable(reply, pool.name, 'strict-down')
      return
    }
    if (!applyResult(request, reply, state, await resolver.failover(state.route, sticky.upstream, state.binding))) return
    tunnel(reply)
  }

  return { forward, sendUnavailable }
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
