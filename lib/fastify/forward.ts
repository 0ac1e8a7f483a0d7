/**
 * `reply.forward()`: hands the request to @fastify/reply-from, aimed at the upstream the core chose, or opens a
 * WebSocket tunnel for an upgrade. Whatever fails goes back to the core (one path for both), which says whether to
 * retry, on which upstream, or what to answer. The reply-from hooks here are also what the @fastify/http-proxy
 * integration hands to http-proxy.
 */
import type { IncomingMessage } from 'node:http'
import { Readable, type Duplex } from 'node:stream'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { FastifyReplyFromHooks } from '@fastify/reply-from'
import { ipPrefixKey } from '../affinity/keys'
import { errorCodes } from '../core/failure'
import { HANDOFF_MOVED_HEADER, isHandoffTarget } from '../core/handoff-protocol'
import { forwardTarget } from '../core/forward-target'
import { badGateway, sessionMoved, tunnelLimit, type StickyProblem } from '../core/problem'
import type { StickyRequestState } from '../core/request-state'
import { isStickyProblem, type StickyCore } from '../core/sticky-core'
import { forwardedForValue } from '../core/upstream-headers'
import type { ResolvedRouteConfig } from '../options'
import { sendProblem } from './problem-reply'
import { attachState, stateOf } from './request-state'
import type { RoutingCookieWriter } from './routing-cookie-writer'
import { isUpgrade, openTunnel, upgradeSocketOf, type TunnelOptions } from './websocket'

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

/** What forwarding needs besides the core. */
export interface ForwarderDeps {
  /** WebSocket tunnel settings and the open client sockets (ended as the gateway closes). */
  readonly tunnels: { readonly options: TunnelOptions, readonly sockets: Set<Duplex> }
  /** Writes the routing cookie (again, after a failover) on replies. */
  readonly cookies: RoutingCookieWriter
}

/** The pieces the plugin wires. */
export interface Forwarder {
  /** The `reply.forward` decorator. */
  forward (this: FastifyReply, source?: string): FastifyReply
  /**
   * reply-from hooks that route by the request's state: `getUpstream`, `onError` (failover through the core),
   * `rewriteRequestHeaders`, `rewriteHeaders`, and for learn routes `onResponse`. Frozen; shared by all requests.
   */
  replyOptions (route: ResolvedRouteConfig | undefined): FastifyReplyFromHooks
}

/** Builds the forwarder of one plugin registration. */
export function createForwarder (core: StickyCore, deps: ForwarderDeps): Forwarder {
  const handoffPath = core.options.handoff?.path
  // Requests whose upstream answered that their session moved away (a WeakSet: nothing to clean up).
  const movedAway = new WeakSet<FastifyRequest>()
  // The response side, not the request: undici destroys a streamed request body itself when the upstream fails,
  // and the client is still there to be answered.
  function clientGone (reply: FastifyReply): boolean {
    return reply.raw.destroyed || reply.raw.socket?.destroyed === true
  }

  function upstreamOf (request: FastifyRequest): string {
    // Set before reply.from runs; forward() answers itself when there is none.
    return (stateOf(request) as StickyRequestState).decision.upstream.url
  }

  function rewriteRequestHeaders (request: FastifyRequest, headers: Record<string, unknown>): Record<string, unknown> {
    const peer = request.raw.socket?.remoteAddress
    // `request.ips` walks X-Forwarded-For (and allocates): only worth it when the client sent one.
    const forwardedFor = request.headers['x-forwarded-for'] === undefined ? peer : forwardedForValue(request.ips, peer)
    return core.upstreamRequestHeaders(stateOf(request), headers, { forwardedFor, protocol: request.protocol, host: request.host })
  }

  function rewriteHeaders (headers: Record<string, unknown>, request?: FastifyRequest): Record<string, unknown> {
    // The session moved away from this upstream (its 421 after a handoff): none of this answer goes to the client.
    if (handoffPath !== undefined && request !== undefined && headers[HANDOFF_MOVED_HEADER] !== undefined) {
      movedAway.add(request)
      return {}
    }
    return core.clientResponseHeaders(request === undefined ? undefined : stateOf(request), headers)
  }

  function answer (reply: FastifyReply, problem: StickyProblem | null): void {
    if (problem === null || reply.sent) return
    sendProblem(core, reply, stateOf(reply.request)?.route.pool ?? '', problem)
  }

  // One path for every failed forward, HTTP or upgrade: the core blames, moves and decides; this only acts.
  async function recover (reply: FastifyReply, error: unknown, retry: (reply: FastifyReply) => void): Promise<void> {
    const request = reply.request
    const state = stateOf(request)
    const body = request.body
    const outcome = await core.reportFailure(state, error, {
      clientGone: clientGone(reply),
      replayable: body === undefined || body === null || !(body instanceof Readable),
      method: request.method
    })
    if (!outcome.retry) return answer(reply, outcome.problem)
    if (reply.sent) return
    const moved = state as StickyRequestState
    attachState(request, moved)
    deps.cookies.apply(request, reply, moved)
    retry(reply)
  }

  function retryHttp (reply: FastifyReply): void {
    reply.from(stateOf(reply.request)?.source, optionsFor(reply))
  }

  function onError (reply: FastifyReply, failure: { error: unknown }): void {
    recover(reply, failure.error, retryHttp).catch((error: unknown) => { answer(reply, badGateway(error)) })
  }

  // With handoff, an answer may be the old upstream's 421 for a session that moved: followed to its new upstream.
  function sendOrFollow (request: FastifyRequest, reply: FastifyReply, res: { stream: unknown }, send: () => void): void {
    if (!movedAway.has(request)) {
      send()
      return
    }
    movedAway.delete(request)
    ;(res.stream as { destroy?: () => void }).destroy?.()
    const body = request.body
    // A streamed body is gone: the answer can only be that the session moved, without waiting for where.
    if (body instanceof Readable) return answer(reply, sessionMoved())
    core.followMove(stateOf(request)).then((followed) => {
      if (reply.sent) return
      if (!followed) return answer(reply, sessionMoved())
      attachState(request, stateOf(request) as StickyRequestState)
      retryHttp(reply)
    }, (error: unknown) => { answer(reply, badGateway(error)) })
  }
  const onHandoffResponse = (request: FastifyRequest, reply: FastifyReply, res: { stream: unknown }): void => {
    sendOrFollow(request, reply, res, () => reply.send(res.stream))
  }

  const sharedOptions = Object.freeze({
    getUpstream: upstreamOf,
    onError,
    rewriteRequestHeaders,
    rewriteHeaders,
    ...(handoffPath === undefined ? {} : { onResponse: onHandoffResponse })
  }) as unknown as FastifyReplyFromHooks

  // On learn routes the response waits for its Set-Cookie to be bound in the store, so the client's next request,
  // through any gateway, finds the binding.
  function onLearnResponse (request: FastifyRequest, reply: FastifyReply, res: { headers: Record<string, unknown>, stream: unknown }): void {
    if (movedAway.has(request)) {
      sendOrFollow(request, reply, res, () => {})
      return
    }
    const state = stateOf(request)
    if (state === undefined) {
      reply.send(res.stream)
      return
    }
    core.learn(state, res.headers['set-cookie'] as string | string[] | undefined)
      .catch((error: unknown) => { request.log.debug({ err: error }, 'fastify-sticky: could not learn the app session cookie') })
      .finally(() => reply.send(res.stream))
  }
  const learnOptions = Object.freeze({ ...sharedOptions, onResponse: onLearnResponse }) as unknown as FastifyReplyFromHooks

  // A route with its own response timeout (long polling, Server-Sent Events): one frozen options object per route.
  const routeOptions = new WeakMap<ResolvedRouteConfig, FastifyReplyFromHooks>()
  function replyOptions (route: ResolvedRouteConfig | undefined): FastifyReplyFromHooks {
    if (route === undefined) return sharedOptions
    let own = routeOptions.get(route)
    if (own === undefined) {
      const learns = route.key !== false && route.key.some((source) => source.kind === 'learn')
      const base = learns ? learnOptions : sharedOptions
      own = route.timeoutMs === undefined ? base : Object.freeze({ ...base, timeout: route.timeoutMs }) as unknown as FastifyReplyFromHooks
      routeOptions.set(route, own)
    }
    return own
  }

  // A body buffered for replay is handed over as is; anything else (none, parsed, stream) goes through reply-from's own path.
  // A request that sets the routing cookie (a new, moved or renewed session) may need it moved after the upstream's
  // own cookies: options of its own for that; every other request shares its route's frozen options.
  function optionsFor (reply: FastifyReply): FastifyReplyFromHooks {
    const request = reply.request
    const state = stateOf(request)
    let options = replyOptions(state?.route)
    if (state?.cookie !== undefined && deps.cookies.movesAfterUpstream) {
      options = { ...options, rewriteHeaders: (headers: Record<string, unknown>) => deps.cookies.afterUpstream(reply, state, rewriteHeaders(headers, request)) } as unknown as FastifyReplyFromHooks
    }
    const body = request.body
    if (!Buffer.isBuffer(body)) return options
    return { ...options, body, contentType: request.headers['content-type'] ?? 'application/octet-stream' } as unknown as FastifyReplyFromHooks
  }

  function forward (this: FastifyReply, source?: string): FastifyReply {
    const request = this.request
    let state = stateOf(request)
    if (state === undefined) {
      const route = core.defaultRoute
      if (route === null) {
        throw new Error('fastify-sticky: reply.forward() on a route without config.sticky needs a default pool (defaults.pool, or a single pool)')
      }
      const balanced = core.balance(route)
      if (isStickyProblem(balanced)) return sendProblem(core, this, route.pool, balanced)
      state = balanced
      attachState(request, state)
    }
    state.source = source
    // One target rule for requests and upgrades: reply-from's own check, applied before either is sent.
    const target = forwardTarget(source, request.url)
    if (target === null || (handoffPath !== undefined && isHandoffTarget(target, handoffPath))) {
      return sendProblem(core, this, state.route.pool, core.badTarget(new Error('request target refused')))
    }
    if (isUpgrade(request)) {
      startTunnel(this, target)
      return this
    }
    useSafeLog(request)
    try {
      return this.from(source, optionsFor(this))
    } catch (error) {
      // reply-from refuses what it cannot turn into an upstream URL: that is the client's request at fault.
      return sendProblem(core, this, state.route.pool, core.badTarget(error))
    }
  }

  // An upgrade takes a tunnel place for its whole life, retries included, until the client socket closes.
  function startTunnel (reply: FastifyReply, path: string): void {
    const request = reply.request
    const client = upgradeSocketOf(request) as Duplex
    const place = core.tunnels.acquire(ipPrefixKey(request.ip, 32, 64) ?? request.ip)
    if (typeof place === 'string') {
      request.log.warn({ pool: request.sticky?.pool, limit: place }, 'fastify-sticky: WebSocket tunnel refused')
      sendProblem(core, reply, request.sticky?.pool ?? '', tunnelLimit(place))
      return
    }
    client.once('close', place)
    tunnel(reply, path)
  }

  function tunnel (reply: FastifyReply, path: string): void {
    const request = reply.request
    const state = stateOf(request) as StickyRequestState
    const upgrade = request.headers.upgrade
    const headers = rewriteRequestHeaders(request, request.headers)
    // The client's `Connection` may name our own X-Forwarded-* for removal by the next hop: send only ours.
    headers.connection = 'Upgrade'
    headers.upgrade = upgrade
    const cookie = core.routingSetCookie(state, request.protocol === 'https')
    const setCookies = cookie === undefined ? [] : [cookie]
    openTunnel(reply, { upstreamUrl: state.decision.upstream.url, path, headers, setCookies, onOpen: core.tunnelSessions.onOpen(state) }, deps.tunnels.options, deps.tunnels.sockets, {
      onFailure: (error) => {
        recover(reply, error, (again) => { tunnel(again, path) }).catch((cause: unknown) => { answer(reply, badGateway(cause)) })
      },
      onResponse: (response) => { relayRefusal(reply, response, setCookies, path) }
    })
  }

  // An upstream that answers an upgrade with anything but 101 is relayed as an ordinary response, through Fastify:
  // same header rewriting as HTTP (Location without the upstream's origin), framing written anew.
  function relayRefusal (reply: FastifyReply, response: IncomingMessage, setCookies: readonly string[], path: string): void {
    // The handshake of a session that moved away (the old upstream's 421): opened on its new upstream instead.
    if (handoffPath !== undefined && response.headers[HANDOFF_MOVED_HEADER] !== undefined) {
      response.resume()
      core.followMove(stateOf(reply.request)).then((followed) => {
        if (followed) tunnel(reply, path)
        else answer(reply, sessionMoved())
      }, (error: unknown) => { answer(reply, badGateway(error)) })
      return
    }
    const headers = rewriteHeaders({ ...response.headers }, reply.request)
    delete headers['set-cookie']
    reply.code(response.statusCode ?? 502)
    for (const [name, value] of Object.entries(headers)) if (value !== undefined) reply.header(name, value)
    const cookies = [...(response.headers['set-cookie'] ?? []), ...setCookies]
    if (cookies.length > 0) reply.header('set-cookie', cookies)
    reply.send(response)
  }

  return { forward, replyOptions }
}

/** @returns whether the request has a streamed body of a known length within `limit` (what {@link bufferReplayableBody} reads) */
export function hasReplayableBody (request: FastifyRequest, limit: number): boolean {
  if (!(request.body instanceof Readable) || request.method === 'GET' || request.method === 'HEAD') return false
  const length = Number(request.headers['content-length'])
  return length > 0 && length <= limit
}

/**
 * Reads a small request body into memory so the request can be sent again to another upstream. Bodies that are
 * already parsed, absent, larger than `limit` or of unknown length are left alone (and then not replayable).
 */
export async function bufferReplayableBody (request: FastifyRequest, limit: number): Promise<void> {
  if (!hasReplayableBody(request, limit)) return
  const body = request.body as Readable
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of body) {
    size += (chunk as Buffer).length
    if (size > limit) throw Object.assign(new Error('request body larger than its content-length'), { statusCode: 400 })
    chunks.push(chunk as Buffer)
  }
  request.body = Buffer.concat(chunks, size)
}
