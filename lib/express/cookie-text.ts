/**
 * Cookie text for a door without @fastify/cookie registered: the Cookie header parsed, and the routing cookie
 * serialised, by the very functions @fastify/cookie calls (cookie@2's `parseCookie` and `stringifySetCookie`), so
 * the Express door reads and writes byte for byte what the Fastify door does. cookie@2 is an ES module: it is
 * loaded once, when the middleware is created. (@fastify/cookie's own `parse`/`serialize` only work once its plugin
 * has been registered on a Fastify instance, which it loads that module in.)
 */
import type { StickyRequestState } from '../core/request-state'
import type { RoutingCookie, StickyCore } from '../core/sticky-core'

async function loadCookieModule () {
  return await import('cookie')
}

/** Parsing and serialising cookies as @fastify/cookie does. */
export interface CookieText {
  /** Parses a Cookie header (`{}` for none). */
  parse (header: string | undefined): Record<string, string | undefined>
  /** Serialises the routing cookie as a Set-Cookie value. */
  serialize (cookie: RoutingCookie): string
}

/** Loads cookie@2 and returns the parser and serialiser. */
export async function loadCookieText (): Promise<CookieText> {
  const { parseCookie, stringifySetCookie } = await loadCookieModule()
  return {
    parse: (header) => header === undefined || header === '' ? {} : parseCookie(header),
    serialize: (cookie) => stringifySetCookie({ name: cookie.name, value: cookie.value, ...cookie.attributes })
  }
}

/**
 * The Set-Cookie values the gateway adds to a response of `state`: the routing cookie when the state asks for one.
 * @param https - whether the client's request is HTTPS (for `cookie.secure: 'auto'`)
 */
export function routingSetCookies (core: StickyCore, text: CookieText, state: StickyRequestState, https: boolean): string[] {
  const cookie = core.routingCookie(state, https)
  return cookie === undefined ? [] : [text.serialize(cookie)]
}
