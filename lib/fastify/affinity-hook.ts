/**
 * The `onRequest` hook of a sticky route: the request's view goes to the core, the decision comes back as the
 * request's state (and `request.sticky`), and a routing cookie to set is set (kept for the 101 on upgrades).
 */
import type { FastifyReply, FastifyRequest, onRequestAsyncHookHandler } from 'fastify'
import { isStickyProblem, type StickyCore } from '../core/sticky-core'
import type { StickyRequestState } from '../core/request-state'
import type { ResolvedRouteConfig } from '../options'
import { sendProblem } from './problem-reply'
import { attachState } from './request-state'
import { isUpgrade } from './websocket'

// The routing Set-Cookie this reply carries, so that a retry on another upstream replaces it rather than adding a
// second one (kept per reply, not on the state: one state may serve several replies, as the doors' tests do).
const sentCookies = new WeakMap<FastifyReply, string>()

/**
 * Sets the routing cookie a state asks for on an HTTP reply; upgrades take it on their 101 (see the tunnel).
 * Written as the header itself (the text made once per pool), not through @fastify/cookie's `setCookie`, which
 * costs a Map and an onSend pass per reply; the header reads the same and goes out before the upstream's cookies.
 */
export function applyRoutingCookie (core: StickyCore, request: FastifyRequest, reply: FastifyReply, state: StickyRequestState): void {
  if (state.cookie === undefined || isUpgrade(request)) return
  const cookie = core.routingSetCookie(state, request.protocol === 'https') as string
  const previous = sentCookies.get(reply)
  if (previous !== undefined) {
    if (previous === cookie) return
    const current = reply.getHeader('set-cookie')
    const others = (Array.isArray(current) ? current : [current]).filter((value) => value !== undefined && value !== previous)
    reply.removeHeader('set-cookie')
    if (others.length > 0) reply.header('set-cookie', others)
  }
  reply.header('set-cookie', cookie)
  sentCookies.set(reply, cookie)
}

/** @returns the affinity hook of one route */
export function affinityHook (core: StickyCore, route: ResolvedRouteConfig): onRequestAsyncHookHandler {
  return async function stickyAffinity (request: FastifyRequest, reply: FastifyReply) {
    const decided = route.key === false
      ? core.balance(route)
      : await core.decide(route, { ip: request.ip, headers: request.headers, query: request.query, cookies: request.cookies, request })
    if (isStickyProblem(decided)) return sendProblem(core, reply, route.pool, decided)
    attachState(request, decided)
    if (route.key !== false) request.log.debug({ pool: route.pool, upstream: decided.decision.upstream.id, decision: decided.decision.decision }, 'fastify-sticky: routed')
    applyRoutingCookie(core, request, reply, decided)
  }
}
