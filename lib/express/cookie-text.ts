/**
 * The routing cookie as the Express door writes it: the core's Set-Cookie text, the same bytes the Fastify door
 * sends (cookie@2's serialisation, which @fastify/cookie uses, made once per pool).
 */
import type { StickyRequestState } from '../core/request-state'
import type { StickyCore } from '../core/sticky-core'

/**
 * The Set-Cookie values the gateway adds to a response of `state`: the routing cookie when the state asks for one.
 * @param https - whether the client's request is HTTPS (for `cookie.secure: 'auto'`)
 */
export function routingSetCookies (core: StickyCore, state: StickyRequestState, https: boolean): string[] {
  const cookie = core.routingSetCookie(state, https)
  return cookie === undefined ? [] : [cookie]
}
