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
  /** Puts the routing cookie after the upstream's own Set-Cookie values, in the headers of its forwarded response. */
  afterUpstream (request: FastifyRequest, headers: Record<string, unknown>): void
}

interface SentCookie {
  readonly reply: FastifyReply
  readonly value: string
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
      afterUpstream () {}
    }
  }
  // Only requests whose reply carries a routing cookie (new, moved or renewed sessions) are in it.
  const sent = new WeakMap<FastifyRequest, SentCookie>()
  return {
    apply (request, reply, state) {
      if (state.cookie === undefined || isUpgrade(request)) return
      const value = core.routingSetCookie(state, request.protocol === 'https') as string
      const previous = sent.get(request)
      if (previous?.value === value) return
      if (previous !== undefined) withoutSetCookie(reply, previous.value)
      reply.header('set-cookie', value)
      sent.set(request, { reply, value })
    },
    afterUpstream (request, headers) {
      const upstream = headers['set-cookie']
      const own = upstream === undefined ? undefined : sent.get(request)
      if (own === undefined) return
      withoutSetCookie(own.reply, own.value)
      headers['set-cookie'] = [...(Array.isArray(upstream) ? upstream as string[] : [String(upstream)]), own.value]
    }
  }
}

function withoutSetCookie (reply: FastifyReply, value: string): void {
  const current = reply.getHeader('set-cookie')
  const others = (Array.isArray(current) ? current : [current]).filter((line) => line !== undefined && line !== value)
  reply.removeHeader('set-cookie')
  if (others.length > 0) reply.header('set-cookie', others)
}
