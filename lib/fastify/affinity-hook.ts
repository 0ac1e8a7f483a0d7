/**
 * The `onRequest` hook of a sticky route: the request's view goes to the core, the decision comes back as the
 * request's state (and `request.sticky`), and a routing cookie to set is set (kept for the 101 on upgrades; see
 * ./routing-cookie-writer.ts for how).
 */
import type { FastifyReply, FastifyRequest, onRequestHookHandler } from 'fastify'
import type { StickyRequestState } from '../core/request-state'
import { isStickyProblem, type StickyCore } from '../core/sticky-core'
import type { StickyProblem } from '../core/problem'
import type { ResolvedRouteConfig } from '../options'
import { sendProblem } from './problem-reply'
import { attachState } from './request-state'
import type { RoutingCookieWriter } from './routing-cookie-writer'

/**
 * @returns the affinity hook of one route: a callback hook, so that a request decided at once (a returning client
 *   whose binding the store has at hand) goes on without a promise and a microtask
 */
export function affinityHook (core: StickyCore, route: ResolvedRouteConfig, cookies: RoutingCookieWriter): onRequestHookHandler {
  // Applies the decision; `false` when the problem was answered here (the hook must then not call `done`).
  function settle (request: FastifyRequest, reply: FastifyReply, decided: StickyRequestState | StickyProblem): boolean {
    if (isStickyProblem(decided)) {
      sendProblem(core, reply, route.pool, decided)
      return false
    }
    attachState(request, decided)
    if (route.key !== false) request.log.debug({ pool: route.pool, upstream: decided.decision.upstream.id, decision: decided.decision.decision }, 'fastify-sticky: routed')
    cookies.apply(request, reply, decided)
    return true
  }

  return function stickyAffinity (request, reply, done) {
    const decided = route.key === false
      ? core.balance(route)
      : core.decide(route, { ip: request.ip, headers: request.headers, query: request.query, cookies: request.cookies, request })
    if (!(decided instanceof Promise)) {
      // A throw here reaches Fastify's hook runner, which answers it as an error.
      if (settle(request, reply, decided)) done()
      return
    }
    decided.then((state) => {
      let settled: boolean
      try {
        settled = settle(request, reply, state)
      } catch (error) {
        done(error as Error)
        return
      }
      if (settled) done()
    }, (error: unknown) => { done(error instanceof Error ? error : new Error('fastify-sticky: the affinity decision failed', { cause: error })) })
  }
}
