/**
 * The routing cookie's text in a Cookie header: reading it (the first copy that verifies, when a browser sends
 * several of one name) and removing it before the request reaches an upstream. Names and values are trimmed and
 * decoded exactly as the Cookie parser (@fastify/cookie) does, so every front door reads the same value.
 * Framework-free.
 */
import { backOws, decodeCookieValue, skipOws, trimOws } from '../affinity/cookie-text'

/**
 * Most routing cookies of one name verified per request: browsers send a few at most (one per path or domain), and
 * each costs an HMAC, so a header stuffed with copies (about 1,400 fit in 16 KiB) must not cost one per copy.
 */
export const MAX_ROUTING_COOKIE_CANDIDATES = 8

/**
 * The routing cookie's value, read from the Cookie header without parsing the rest of it: the value the parser
 * would give (the first copy), or with several copies of the name, the first that verifies.
 * @param header - the raw Cookie header
 * @param firstValid - picks the first verifying value of a list, or `undefined`
 */
export function readRoutingCookie (
  header: string | undefined, name: string, firstValid: (values: readonly string[]) => string | undefined
): string | undefined {
  // Searched without '=': the parser trims names, so `sticky =x` is a routing cookie too.
  if (header === undefined || !header.includes(name)) return undefined
  const values = cookieValues(header, name, MAX_ROUTING_COOKIE_CANDIDATES)
  if (values.length < 2) return values[0]
  return firstValid(values) ?? values[0]
}

// The first `limit` values of one cookie name in a Cookie header, trimmed and decoded as the parser does (a pair
// without `=` is no cookie; a value that does not decode is kept as sent). Walks the header by `;` without
// splitting it, names compared in place: only the values of this name are cut out.
function cookieValues (header: string, name: string, limit: number): string[] {
  const values: string[] = []
  const length = header.length
  let start = 0
  let eq = NOT_SEARCHED
  while (start < length && values.length < limit) {
    let end = header.indexOf(';', start)
    if (end < 0) end = length
    eq = nextEquals(header, start, eq)
    // No '=' left: no pair after this one is a cookie.
    if (eq === -1) break
    if (eq < end && isName(header, start, eq, name)) {
      const from = skipOws(header, eq + 1, end)
      values.push(decodeCookieValue(header.slice(from, backOws(header, from, end))))
    }
    start = end + 1
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
  // One walk by `;` (as `split(';')` cuts it, a trailing empty pair included), names compared in place: only the
  // pairs kept are cut out, and they are joined with `;` as they were sent, then the whole is trimmed.
  let kept: string | undefined
  const length = header.length
  let start = 0
  let eq = NOT_SEARCHED
  for (;;) {
    let end = header.indexOf(';', start)
    if (end < 0) end = length
    eq = nextEquals(header, start, eq)
    if (!pairNamed(header, start, end, eq, names)) {
      const pair = header.slice(start, end)
      kept = kept === undefined ? pair : kept + ';' + pair
    }
    if (end === length) break
    start = end + 1
  }
  return kept === undefined ? undefined : trimOws(kept)
}

const NOT_SEARCHED = -2

// The first '=' at or after `start` (-1 when there is none), given the one found for an earlier pair: it is carried
// from pair to pair and searched again only once passed, since searching from every pair would make a header of many
// pairs without '=' quadratic.
function nextEquals (header: string, start: number, previous: number): number {
  return previous !== -1 && previous < start ? header.indexOf('=', start) : previous
}

// Whether the pair header[start, end) has one of the names (a pair without `=` is all name); `eq` is the first '='
// at or after `start`, -1 when there is none.
function pairNamed (header: string, start: number, end: number, eq: number, names: readonly string[]): boolean {
  const nameEnd = eq >= 0 && eq < end ? eq : end
  for (const name of names) if (isName(header, start, nameEnd, name)) return true
  return false
}

// Whether header[start, end), trimmed of spaces and tabs as the parser trims names, is `name`.
function isName (header: string, start: number, end: number, name: string): boolean {
  const from = skipOws(header, start, end)
  return backOws(header, from, end) - from === name.length && header.startsWith(name, from)
}
