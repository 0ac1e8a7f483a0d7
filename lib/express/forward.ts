/**
 * The HTTP half of the Express door: a request handler that asks the core where a request goes, forwards it there
 * with undici (streamed both ways; small bodies buffered so a failed attempt can be sent again), and hands every
 * failure back to the core, which says whether to retry, on which upstream, or what to answer. The same hooks as
 * the Fastify door's `reply.forward()`, in the same order: request headers rewritten by the core, the app's session
 * cookie learnt before the response head leaves, response headers rewritten by the core, the routing cookie last.
 * With the `handoff` option, the upstream's handoff endpoints are never a target, and an old upstream's 421 for a
 * session that moved away is followed to the session's new upstream, as the Fastify door does.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { pipeline } from 'node:stream'
import type { Dispatcher } from 'undici'
import type { StickyDecision } from '../affinity/decision'
import { forwardTarget } from '../core/forward-target'
import { HANDOFF_MOVED_HEADER, isHandoffTarget } from '../core/handoff-protocol'
import type { CoreLogger } from '../core/logger'
import { badGateway, sessionMoved } from '../core/problem'
import type { StickyRequestState } from '../core/request-state'
import { isStickyProblem, type StickyCore } from '../core/sticky-core'
import type { ResolvedRouteConfig } from '../options'
import { clientFacts, expressTrustOf, type ClientFacts, type TrustFn } from './client-facts'
import { sendProblem, writeUpstreamHead } from './client-response'
import { routingSetCookies } from './cookie-text'
import { createViewReader } from './request-view'

/** What forwarding needs besides the route. */
export interface ForwardDeps {
  readonly core: StickyCore
  readonly log: CoreLogger
  /** One undici Agent for every upstream (a connection pool per origin), with the core's timeouts. */
  readonly dispatcher: Dispatcher
  /** `undefined`: the Express app's `trust proxy` (nothing outside Express). */
  readonly trust: TrustFn | undefined
  /** Each request's decision, for `sticky.decisionOf(request)`. */
  readonly decisions: WeakMap<IncomingMessage, StickyDecision>
}

/** A node:http request as Express extends it (every field optional: plain node:http has none of them). */
export interface ForwardedRequest extends IncomingMessage {
  /** Express: the URL before mounting stripped the mount path; it is what is forwarded. */
  originalUrl?: string
  /** A body parser's result; used only when one already read the body (mount the proxy before body parsers). */
  body?: unknown
}

/** An Express-style `next`: called with an error only (the proxy always answers). */
export type NextFunction = (error?: unknown) => void

/** The body of the upstream request, and whether the request can be sent again as it was. */
interface OutgoingBody {
  readonly body: Buffer | IncomingMessage | undefined
  readonly replayable: boolean
}

const NO_BODY: OutgoingBody = Object.freeze({ body: undefined, replayable: true })

/** Thrown (to `next`) when a body parser read the body before the proxy and left no raw bytes to forward. */
export class BodyAlreadyReadError extends Error {
  constructor () {
    super('fastify-sticky: the request body was already read (by a body parser?) and cannot be forwarded: mount sticky.proxy() before body parsers, or use express.raw()')
    this.name = 'BodyAlreadyReadError'
  }
}

function hasBody (request: IncomingMessage): boolean {
  const length = request.headers['content-length']
  return (length !== undefined && length !== '0') || request.headers['transfer-encoding'] !== undefined
}

/**
 * Reads a small request body into memory so the request can be sent again to another upstream, as the Fastify
 * door's `bufferReplayableBody`: bodies larger than `limit`, of unknown length, or of GET/HEAD are streamed.
 * @returns the body, or `undefined` when the client left while it was read
 */
async function outgoingBody (request: ForwardedRequest, limit: number): Promise<OutgoingBody | undefined> {
  if (!hasBody(request)) return NO_BODY
  if (request.readableEnded) {
    const parsed = request.body
    if (Buffer.isBuffer(parsed)) return { body: parsed, replayable: true }
    if (typeof parsed === 'string') return { body: Buffer.from(parsed), replayable: true }
    throw new BodyAlreadyReadError()
  }
  const length = Number(request.headers['content-length'])
  if (!(length > 0 && length <= limit) || request.method === 'GET' || request.method === 'HEAD') return { body: request, replayable: false }
  const chunks: Buffer[] = []
  let size = 0
  try {
    for await (const chunk of request) {
      size += (chunk as Buffer).length
      chunks.push(chunk as Buffer)
    }
  } catch {
    return undefined
  }
  return { body: Buffer.concat(chunks, size), replayable: true }
}

/**
 * Builds the request handler of one `proxy(config)`.
 * @param route - the resolved route config, or `null` for a proxy without affinity over the default pool
 */
export function createForwardHandler (deps: ForwardDeps, route: ResolvedRouteConfig): (request: ForwardedRequest, res: ServerResponse, next?: NextFunction) => void {
  const { core, log, dispatcher, decisions } = deps
  const limit = core.options.replayBodyLimit
  const handoffPath = core.options.handoff?.path
  const viewOf = createViewReader(route)
  const ownCookies = (state: StickyRequestState, facts: ClientFacts): string[] => routingSetCookies(core, state, facts.protocol === 'https')
  // A route with its own response timeout (long polling, Server-Sent Events) applies it to headers and body alike.
  const timeouts = route.timeoutMs === undefined ? {} : { headersTimeout: route.timeoutMs, bodyTimeout: route.timeoutMs }
  const hosts = new Map<string, string>()
  const hostOf = (origin: string): string => {
    let host = hosts.get(origin)
    if (host === undefined) {
      host = new URL(origin).host
      hosts.set(origin, host)
    }
    return host
  }

  // The response side, not the request: undici destroys a streamed request body itself when the upstream fails,
  // and the client is still there to be answered.
  const clientGone = (res: ServerResponse): boolean => res.destroyed || res.socket?.destroyed === true

  async function handle (request: ForwardedRequest, res: ServerResponse): Promise<void> {
    const facts = clientFacts(request, deps.trust ?? expressTrustOf(request))
    const url = request.originalUrl ?? request.url ?? '/'
    const decided = route.key === false ? core.balance(route) : await core.decide(route, viewOf(request, url, facts))
    if (isStickyProblem(decided)) return sendProblem(core, log, request, res, route.pool, decided)
    const state = decided
    decisions.set(request, state.decision)
    const target = forwardTarget(undefined, url)
    if (target === null || (handoffPath !== undefined && isHandoffTarget(target, handoffPath))) {
      return sendProblem(core, log, request, res, route.pool, core.badTarget(new Error('request target refused')), ownCookies(state, facts))
    }
    const outgoing = await outgoingBody(request, limit)
    if (outgoing === undefined) return
    const method = request.method ?? 'GET'
    const abort = new AbortController()
    // A client that leaves (a long poll given up) must not hold an upstream connection until a timeout.
    res.once('close', () => { if (!res.writableFinished) abort.abort() })
    for (;;) {
      const headers = core.upstreamRequestHeaders(state, request.headers, facts)
      headers.host = hostOf(state.decision.upstream.url)
      if (Buffer.isBuffer(outgoing.body)) headers['content-length'] = String(outgoing.body.length)
      let response: Dispatcher.ResponseData
      try {
        response = await dispatcher.request({
          origin: state.decision.upstream.url,
          path: target,
          method: method as Dispatcher.HttpMethod,
          headers: headers as Record<string, string | string[]>,
          body: outgoing.body,
          signal: abort.signal,
          ...timeouts
        })
      } catch (error) {
        const outcome = await core.reportFailure(state, error, { clientGone: clientGone(res), replayable: outgoing.replayable, method })
        if (outcome.retry && !res.headersSent && !clientGone(res)) {
          decisions.set(request, state.decision)
          continue
        }
        if (!outcome.retry && outcome.problem !== null && !clientGone(res)) {
          sendProblem(core, log, request, res, state.route.pool, outcome.problem, ownCookies(state, facts))
        } else {
          res.destroy()
        }
        return
      }
      if (handoffPath !== undefined && response.headers[HANDOFF_MOVED_HEADER] !== undefined) {
        // The session moved away from this upstream (its 421 after a handoff): none of this answer goes to the client.
        response.body.dump().catch(() => {})
        let followed: boolean | Error = false
        // A streamed body is gone: no point asking where the session went.
        if (outgoing.replayable) followed = await core.followMove(state).catch((error: unknown) => error as Error)
        if (clientGone(res)) return
        if (followed === true) {
          decisions.set(request, state.decision)
          continue
        }
        const problem = followed === false ? sessionMoved() : badGateway(followed)
        sendProblem(core, log, request, res, state.route.pool, problem, ownCookies(state, facts))
        return
      }
      return relay(request, res, state, facts, response)
    }
  }

  async function relay (request: IncomingMessage, res: ServerResponse, state: StickyRequestState, facts: ClientFacts, response: Dispatcher.ResponseData): Promise<void> {
    const headers = core.clientResponseHeaders(state, response.headers as Record<string, unknown>)
    // On learn routes the response waits for its Set-Cookie to be bound in the store, so the client's next request,
    // through any gateway, finds the binding.
    if (state.learn !== undefined) {
      await core.learn(state, headers['set-cookie'] as string | string[] | undefined)
        .catch((error: unknown) => { log.debug({ err: error }, 'fastify-sticky: could not learn the app session cookie') })
    }
    if (clientGone(res)) {
      response.body.destroy()
      return
    }
    // An HTTP/1 connection cannot be reused until the request body has been read: the upstream answered first.
    if (!request.complete) headers.connection = 'close'
    try {
      writeUpstreamHead(res, response.statusCode, headers, ownCookies(state, facts))
    } catch (error) {
      // A status or header node:http refuses to write: the upstream's answer is not one we can pass on.
      response.body.destroy()
      sendProblem(core, log, request, res, state.route.pool, badGateway(error), ownCookies(state, facts))
      return
    }
    // pipeline() ends or destroys both sides: a body cut by the upstream (or its body timeout) cuts the client's.
    pipeline(response.body, res, () => {})
  }

  return function stickyProxy (request, res, next) {
    handle(request, res).catch((error: unknown) => {
      if (next !== undefined) {
        next(error)
        return
      }
      log.warn({ err: error }, 'fastify-sticky: the proxy failed')
      if (res.headersSent) res.destroy()
      else res.writeHead(500).end()
    })
  }
}
