/**
 * The upgrade half of the Express door: a node:http `'upgrade'` listener that routes a WebSocket handshake with the
 * same affinity as the HTTP requests of its route (same key, same binding, the routing cookie on the 101), within the
 * tunnel caps, failing over before the 101 like an HTTP request. Express never sees upgrades, so this listener reads
 * the plain request: the client's facts through the `trustProxy` option only. Answers the gateway makes itself, and
 * an upstream's refusal (anything but 101), are written as ordinary HTTP responses on the socket; but an old
 * upstream's 421 for a session that moved away (with the `handoff` option) is followed to its new upstream, as HTTP's.
 */
import { ServerResponse, type IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { StickyDecision } from '../affinity/decision'
import { ipPrefixKey } from '../affinity/keys'
import { forwardTarget } from '../core/forward-target'
import { HANDOFF_MOVED_HEADER, isHandoffTarget } from '../core/handoff-protocol'
import type { CoreLogger } from '../core/logger'
import { badGateway, sessionMoved, tunnelLimit, type StickyProblem } from '../core/problem'
import type { StickyRequestState } from '../core/request-state'
import { isStickyProblem, type StickyCore } from '../core/sticky-core'
import type { ResolvedRouteConfig } from '../options'
import { clientFacts, type ClientFacts, type TrustFn } from './client-facts'
import { sendProblem, writeUpstreamHead } from './client-response'
import { routingSetCookies } from './cookie-text'
import { createViewReader } from './request-view'
import { openTunnel, type TunnelOptions } from '../tunnel/upgrade-tunnel'

/** A node:http `'upgrade'` listener. */
export type UpgradeListener = (request: IncomingMessage, socket: Duplex, head: Buffer) => void

/** What upgrades need besides the route. */
export interface UpgradeDeps {
  readonly core: StickyCore
  readonly log: CoreLogger
  readonly trust: TrustFn | undefined
  readonly tunnel: TunnelOptions
  /** Every open tunnel's client socket, ended on close. */
  readonly sockets: Set<Duplex>
  readonly decisions: WeakMap<IncomingMessage, StickyDecision>
}

/** Builds the upgrade listener of one `proxy(config)`. */
export function createUpgradeListener (deps: UpgradeDeps, route: ResolvedRouteConfig): UpgradeListener {
  const { core, log, sockets, decisions } = deps
  const viewOf = createViewReader(route)
  const handoffPath = core.options.handoff?.path
  const ownCookies = (state: StickyRequestState, facts: ClientFacts): string[] => routingSetCookies(core, state, facts.protocol === 'https')

  async function handle (request: IncomingMessage, socket: Socket, head: Buffer, res: ServerResponse): Promise<void> {
    const facts = clientFacts(request, deps.trust)
    const answer = (problem: StickyProblem, state?: StickyRequestState): void => {
      sendProblem(core, log, request, res, route.pool, problem, state === undefined ? [] : ownCookies(state, facts))
    }
    const url = request.url ?? '/'
    const decided = route.key === false ? core.balance(route) : await core.decide(route, viewOf(request, url, facts))
    if (isStickyProblem(decided)) return answer(decided)
    const state = decided
    decisions.set(request, state.decision)
    const target = forwardTarget(undefined, url)
    if (target === null || (handoffPath !== undefined && isHandoffTarget(target, handoffPath))) return answer(core.badTarget(new Error('request target refused')), state)
    // A tunnel takes its place for its whole life, retries included, until the client socket closes.
    const place = core.tunnels.acquire(facts.ip === undefined ? '' : ipPrefixKey(facts.ip, 32, 64) ?? facts.ip)
    if (typeof place === 'string') {
      log.warn({ pool: route.pool, limit: place }, 'fastify-sticky: WebSocket tunnel refused')
      return answer(tunnelLimit(place))
    }
    socket.once('close', place)
    attempt(request, socket, head, res, state, facts, target)
  }

  function attempt (
    request: IncomingMessage, socket: Socket, head: Buffer, res: ServerResponse, state: StickyRequestState, facts: ClientFacts, path: string
  ): void {
    const headers = core.upstreamRequestHeaders(state, request.headers, facts)
    // The client's `Connection` may name our own X-Forwarded-* for removal by the next hop: send only ours.
    headers.connection = 'Upgrade'
    headers.upgrade = request.headers.upgrade
    const setCookies = ownCookies(state, facts)
    const onOpen = core.tunnelSessions.onOpen(state)
    openTunnel(socket, head, { method: request.method ?? 'GET', upstreamUrl: state.decision.upstream.url, path, headers, setCookies, onOpen }, deps.tunnel, sockets, {
      onEstablished: () => { res.detachSocket(socket) },
      onFailure: (error) => {
        core.reportFailure(state, error, { clientGone: socket.destroyed, replayable: true, method: request.method ?? 'GET' })
          .then((outcome) => {
            if (outcome.retry && !socket.destroyed) {
              decisions.set(request, state.decision)
              attempt(request, socket, head, res, state, facts, path)
            } else if (!outcome.retry && outcome.problem !== null && !socket.destroyed) {
              sendProblem(core, log, request, res, route.pool, outcome.problem, ownCookies(state, facts))
            } else {
              socket.destroy()
            }
          })
          .catch((cause: unknown) => { sendProblem(core, log, request, res, route.pool, badGateway(cause)) })
      },
      // An upstream that answers an upgrade with anything but 101 is relayed as an ordinary response: same header
      // rewriting as HTTP (Location without the upstream's origin), framing written anew.
      onResponse: (response) => {
        if (handoffPath !== undefined && response.headers[HANDOFF_MOVED_HEADER] !== undefined) {
          response.resume()
          core.followMove(state)
            .then((followed) => {
              if (socket.destroyed) return
              if (!followed) return sendProblem(core, log, request, res, route.pool, sessionMoved(), setCookies)
              decisions.set(request, state.decision)
              attempt(request, socket, head, res, state, facts, path)
            })
            .catch((cause: unknown) => { sendProblem(core, log, request, res, route.pool, badGateway(cause)) })
          return
        }
        const rewritten = core.clientResponseHeaders(state, response.headers)
        writeUpstreamHead(res, response.statusCode ?? 502, rewritten, setCookies)
        response.pipe(res)
      }
    })
  }

  return function stickyUpgrade (request, duplex, head) {
    const socket = duplex as Socket
    socket.on('error', () => { socket.destroy() })
    // Answers go through a response of the socket's own, so they are framed as HTTP ones are; once one is written,
    // the socket goes with it (an upgrade connection is never reused).
    const res = new ServerResponse(request)
    res.assignSocket(socket)
    res.shouldKeepAlive = false
    res.once('finish', () => { if (!sockets.has(socket)) socket.end() })
    handle(request, socket, head, res).catch((error: unknown) => {
      log.warn({ err: error }, 'fastify-sticky: the upgrade failed')
      if (!res.headersSent && !socket.destroyed) sendProblem(core, log, request, res, route.pool, badGateway(error))
      else socket.destroy()
    })
  }
}
