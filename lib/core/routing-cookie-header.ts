/**
 * The routing cookie's text in a Cookie header: reading it (the first copy that verifies, when a browser sends
 * several of one name) and removing it before the request reaches an upstream. Names and values are trimmed and
 * decoded exactly as the Cookie parser (@fastify/cookie) does, so every front door reads the same value.
 * Framework-free.
 */
import { fastifyCookie } from '@fastify/cookie'
import { trimOws } from '../affinity/cookie-text'

/**
 * Most routing cookies of one name verified per request: browsers send a few at most (one per path or domain), and
 * each costs an HMAC, so a header stuffed with copies (about 1,400 fit in 16 KiB) must not cost one per copy.
 */
export const MAX_ROUTING_COOKIE_CANDIDATES = 8

/** Parses a Cookie header as @fastify/cookie does. */
export function parseCookieHeader (header: string): Record<string, string | undefined> {
  return fastifyCookie.parse(header)
}

/**
 * The routing cookie's value: the parsed one, or with several copies of the name, the first that verifies.
 * @param cookies - the parsed Cookie header
 * @param header - the raw Cookie header
 * @param firstValid - picks the first verifying value of a list, or `undefined`
 */
export function readRoutingCookie (
  cookies: Record<string, string | undefined>, header: string | undefined, name: string,
  firstValid: (values: readonly string[]) => string | undefined
): string | undefined {
  const value = cookies[name]
  // Searched without '=': the parser trims names, so `sticky =x` is a routing cookie too.
  if (value === undefined || header === undefined || header.indexOf(name) === header.lastIndexOf(name)) return value
  return firstValid(cookieValues(header, name, MAX_ROUTING_COOKIE_CANDIDATES)) ?? value
}

// The first `limit` values of one cookie name in a Cookie header, decoded as @fastify/cookie decodes them.
function cookieValues (header: string, name: string, limit: number): string[] {
  const values: string[] = []
  for (const pair of header.split(';')) {
    if (values.length >= limit) break
    const eq = pair.indexOf('=')
    if (eq < 0 || trimOws(pair.slice(0, eq)) !== name) continue
    const raw = trimOws(pair.slice(eq + 1))
    try {
      values.push(decodeURIComponent(raw))
    } catch {
      values.push(raw)
    }
  }
  return values
}

/**
 * Removes the named cookies from a Cookie header, as a load balancer's `indirect` cookie mode does: the upstream
 * app never sees the gateway's routing cookie.
 * @returns the header without them, or `undefined` when nothing is left
 */
export function removeCookies (header: string, names: readonly string[]): string | undefined {
  let found = false
  for (const name of names) {
    // Not `name + '='`: the parser trims names, so `sticky =v` is the routing cookie too.
    if (header.includes(name)) {
      found = true
      break
    }
  }
  if (!found) return header
  const kept = header.split(';').filter((pair) => {
    const eq = pair.indexOf('=')
    return !names.includes(trimOws(eq < 0 ? pair : pair.slice(0, eq)))
  })
  return kept.length === 0 ? undefined : trimOws(kept.join(';'))
}
