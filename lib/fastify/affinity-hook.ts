/**
 * The `onRequest` hook of a sticky route: the request's view goes to the core, the decision comes back as the
 * request's state (and `request.sticky`), and a routing cookie to set is set (kept for the 101 on upgrades; see
 * ./routing-cookie-writer.ts for how).
 */
import type { FastifyReply, FastifyRequest, onRequestAsyncHookHandler } from 'fastify'
import { isStickyProblem, type StickyCore } from '../core/sticky-core'
import type { ResolvedRouteConfig } from '../options'
import { sendProblem } from './problem-reply'
import { attachState } from './request-state'
import type { RoutingCookieWriter } from './routing-cookie-writer'

/** @returns the affinity hook of one route */
export function affinityHook (core: StickyCore, route: ResolvedRouteConfig, cookies: RoutingCookieWriter): onRequestAsyncHookHandler {
  return async function stickyAffinity (request: FastifyRequest, reply: FastifyReply) {
    const decided = route.key === false
      ? core.balance(route)
      : await core.decide(route, { ip: request.ip, headers: request.headers, query: request.query, cookies: request.cookies, request })
    if (isStickyProblem(decided)) return sendProblem(core, reply, route.pool, decided)
    attachState(request, decided)
    if (route.key !== false) request.log.debug({ pool: route.pool, upstream: decided.decision.upstream.id, decision: decided.decision.decision }, 'fastify-sticky: routed')
    cookies.apply(request, reply, decided)
  }
}
