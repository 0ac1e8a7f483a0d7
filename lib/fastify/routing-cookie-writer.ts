/**
 * How the Fastify door writes the routing cookie. With @fastify/cookie registered (the default, or the app's own),
 * through its `reply.setCookie`, as always: the app's `parseOptions` (`partitioned`, `priority`…) apply to it too,
 * and it goes out after every other Set-Cookie. With `cookiePlugin: false` (the command) as a header made from the
 * core's text, which spares every request @fastify/cookie's hooks; it is then moved after the upstream's own
 * Set-Cookie values, so the order is the same both ways (the last of two cookies of one name wins in a browser).
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { StickyRequestState } from '../core/request-state'
import type { StickyCore } from '../core/sticky-core'
import { isUpgrade } from './websocket'

/** Writes a state's routing cookie on Fastify replies. */
export interface RoutingCookieWriter {
  /** Sets the routing cookie a state asks for on an HTTP reply (a retry replaces it); upgrades take it on their 101. */
  apply (request: FastifyRequest, reply: FastifyReply, state: StickyRequestState): void
  /**
   * Whether a forwarded response that sets the routing cookie must have it moved after the upstream's own (then the
   * forward's `rewriteHeaders` passes its result through {@link RoutingCookieWriter.afterUpstream}).
   */
  readonly movesAfterUpstream: boolean
  /** Puts the reply's routing cookie after the upstream's own Set-Cookie values, in its forwarded response headers. */
  afterUpstream (reply: FastifyReply, state: StickyRequestState, headers: Record<string, unknown>): Record<string, unknown>
}

/**
 * @param viaCookiePlugin - whether @fastify/cookie is registered (then its `setCookie` writes the cookie)
 */
export function createRoutingCookieWriter (core: StickyCore, viaCookiePlugin: boolean): RoutingCookieWriter {
  if (viaCookiePlugin) {
    return {
      apply (request, reply, state) {
        if (state.cookie === undefined || isUpgrade(request)) return
        const cookie = core.routingCookie(state, request.protocol === 'https')
        // @fastify/cookie keeps one cookie per name, domain and path: a retry's replaces the first.
        if (cookie !== undefined) reply.setCookie(cookie.name, cookie.value, cookie.attributes)
      },
      movesAfterUpstream: false,
      afterUpstream: (_reply, _state, headers) => headers
    }
  }
  // Nothing is kept per request (a WeakMap entry per new session measurably costs the garbage collector): the
  // cookie's text is made again from the state where it is needed, and found in the reply by its name.
  return {
    apply (request, reply, state) {
      if (state.cookie === undefined || isUpgrade(request)) return
      const value = core.routingSetCookie(state, request.protocol === 'https') as string
      // A retry after a failover: the first attempt's routing cookie gives way to this one.
      if (reply.hasHeader('set-cookie')) withoutCookieOf(reply, value)
      reply.header('set-cookie', value)
    },
    movesAfterUpstream: true,
    afterUpstream (reply, state, headers) {
      const upstream = headers['set-cookie']
      if (upstream === undefined || state.cookie === undefined) return headers
      const value = core.routingSetCookie(state, reply.request.protocol === 'https') as string
      withoutCookieOf(reply, value)
      headers['set-cookie'] = [...setCookieLines(upstream), value]
      return headers
    }
  }
}

// Removes the reply's Set-Cookie values of the cookie `line` sets (its name), keeping the others in order.
function withoutCookieOf (reply: FastifyReply, line: string): void {
  const prefix = line.slice(0, line.indexOf('=') + 1)
  const others = setCookieLines(reply.getHeader('set-cookie')).filter((value) => !value.startsWith(prefix))
  reply.removeHeader('set-cookie')
  if (others.length > 0) reply.header('set-cookie', others)
}

// A Set-Cookie header's value (one line, several, or none) as its lines.
function setCookieLines (value: unknown): string[] {
  if (value === undefined) return []
  return Array.isArray(value) ? value.map(String) : [String(value)]
}
