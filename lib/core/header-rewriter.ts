/**
 * What the gateway changes in the headers it passes on: the routing cookie a response sets, the request headers
 * sent upstream (hop-by-hop removed, routing cookies stripped, forwarding headers written, the rebound header), and
 * the response headers sent to the client (hop-by-hop removed, no upstream origin in `Location`, private caching of
 * a response that sets the routing cookie). Resolved once from the options; the same for every front door.
 */
import { SESSION_HEADER } from './handoff-protocol'
import type { ResolvedOptions } from '../options'
import type { EdgeFacts, StickyRequestState } from './request-state'
import { removeCookies } from './routing-cookie-header'
import { privateCacheControl, withoutOrigin } from './response-headers'
import { connectionNamedHeaders, EDGE_CLAIM_HEADERS, HOP_BY_HOP_HEADERS } from './upstream-headers'

/** The routing cookie a response must set: name, value and attributes (serialised by the front door). */
export interface RoutingCookie {
  readonly name: string
  readonly value: string
  readonly attributes: {
    readonly path: string
    readonly domain: string | undefined
    readonly maxAge: number | undefined
    readonly sameSite: 'lax' | 'strict' | 'none'
    readonly httpOnly: true
    readonly secure: boolean
  }
}

/** The header rewriting of one core; as the sticky core exposes it (see `StickyCore` for each function). */
export interface HeaderRewriter {
  routingCookie (state: StickyRequestState, https: boolean): RoutingCookie | undefined
  routingSetCookie (state: StickyRequestState, https: boolean): string | undefined
  upstreamRequestHeaders (state: StickyRequestState | undefined, headers: Record<string, unknown>, edge: EdgeFacts): Record<string, unknown>
  clientResponseHeaders (state: StickyRequestState | undefined, headers: Record<string, unknown>): Record<string, unknown>
}

/** Serialises a cookie as a Set-Cookie value (cookie@2's `stringifySetCookie`, which @fastify/cookie calls). */
export type SetCookieSerializer = (cookie: { name: string, value: string } & RoutingCookie['attributes']) => string

// Attributes that follow `name=value`, per pool and `Secure` or not, serialised once by the same serializer
// @fastify/cookie uses: a new session's Set-Cookie is then one concatenation. Routing cookie values are signed
// tokens (base64url and dots), which that serializer writes unencoded, so the text is byte for byte its own.
interface SetCookieText { readonly prefix: string, readonly plain: string, readonly secure: string }

/**
 * @param serialize - the Set-Cookie serializer the attribute text is made with, once per pool
 * @returns the rewriting functions for these options
 */
export function createHeaderRewriter (options: ResolvedOptions, serialize: SetCookieSerializer): HeaderRewriter {
  const cookieOptions = options.cookie
  const stripCookies = cookieOptions.forward ? [] : Object.values(options.pools).map((pool) => pool.cookieName)
  const reboundHeader = options.reboundHeader
  const handoff = options.handoff !== undefined
  const xForwarded = options.xForwarded
  const allowedHosts = xForwarded === false ? undefined : xForwarded.allowedHosts

  const setCookieTexts = new Map<string, SetCookieText>()
  for (const [poolName, pool] of Object.entries(options.pools)) {
    const attributes = { path: pool.cookiePath, domain: cookieOptions.domain, maxAge: pool.cookieMaxAgeSeconds, sameSite: cookieOptions.sameSite, httpOnly: true as const }
    const prefix = pool.cookieName + '='
    const attributesAfter = (secure: boolean): string =>
      serialize({ name: pool.cookieName, value: 'v', ...attributes, secure }).slice(prefix.length + 1)
    setCookieTexts.set(poolName, { prefix, plain: attributesAfter(false), secure: attributesAfter(true) })
  }

  const secureFor = (https: boolean): boolean => cookieOptions.secure === 'auto' ? https : cookieOptions.secure

  function routingSetCookie (state: StickyRequestState, https: boolean): string | undefined {
    if (state.cookie === undefined) return undefined
    const text = setCookieTexts.get(state.route.pool) as SetCookieText
    return text.prefix + state.cookie + (secureFor(https) ? text.secure : text.plain)
  }

  function routingCookie (state: StickyRequestState, https: boolean): RoutingCookie | undefined {
    if (state.cookie === undefined) return undefined
    const pool = options.pools[state.route.pool]
    return {
      name: pool.cookieName,
      value: state.cookie,
      attributes: {
        path: pool.cookiePath,
        domain: cookieOptions.domain,
        maxAge: pool.cookieMaxAgeSeconds,
        sameSite: cookieOptions.sameSite,
        httpOnly: true,
        secure: secureFor(https)
      }
    }
  }

  // Request headers never passed on as the client sent them: hop-by-hop ones, `Expect` (undici refuses
  // `100-continue`; curl sends it for bodies over 1 MB, and the body is streamed anyway), the handoff session header
  // and the rebound header (the gateway's own to say), and with `xForwarded` every edge claim (rewritten below).
  const notForwarded = new Set([
    ...HOP_BY_HOP_HEADERS, 'expect', SESSION_HEADER,
    ...(reboundHeader === false ? [] : [reboundHeader]),
    ...(xForwarded === false ? [] : EDGE_CLAIM_HEADERS)
  ])
  const hopByHop = new Set(HOP_BY_HOP_HEADERS)

  // One pass over the client's headers into a new record (deleting from the old one would turn it into a slow
  // dictionary for the rest of its life), then the gateway's own headers after them.
  function upstreamRequestHeaders (state: StickyRequestState | undefined, headers: Record<string, unknown>, edge: EdgeFacts): Record<string, unknown> {
    const named = connectionNamedHeaders(headers.connection)
    const out: Record<string, unknown> = {}
    for (const name in headers) {
      const value = headers[name]
      if (value === undefined || notForwarded.has(name) || named?.has(name) === true) continue
      if (name === 'cookie' && stripCookies.length > 0 && typeof value === 'string') {
        const cookie = removeCookies(value, stripCookies)
        if (cookie !== undefined) out.cookie = cookie
        continue
      }
      out[name] = value
    }
    if (xForwarded !== false) {
      if (edge.forwardedFor !== undefined) out['x-forwarded-for'] = edge.forwardedFor
      out['x-forwarded-proto'] = edge.protocol
      if (edge.host !== '' && (allowedHosts === undefined || allowedHosts.has(edge.host.toLowerCase()))) out['x-forwarded-host'] = edge.host
    }
    // Which session a request belongs to is the gateway's to say: an upstream's handoff plugin keys state by it.
    if (handoff && state?.binding !== undefined) out[SESSION_HEADER] = state.binding.keyId
    // A client-sent rebound header was dropped above: it must never claim a rebound that did not happen.
    if (reboundHeader !== false && state?.decision.rebound === true) out[reboundHeader] = '1'
    return out
  }

  // An upstream that builds absolute URLs from the Host it was sent (its own address) would hand clients an
  // internal address in redirects: those become path-absolute references (nginx's `proxy_redirect default`).
  // One pass into a new record, as for requests.
  function clientResponseHeaders (state: StickyRequestState | undefined, headers: Record<string, unknown>): Record<string, unknown> {
    const named = connectionNamedHeaders(headers.connection)
    const origin = state?.decision.upstream.url
    const out: Record<string, unknown> = {}
    for (const name in headers) {
      const value = headers[name]
      if (value === undefined || hopByHop.has(name) || named?.has(name) === true) continue
      // Rewritten in the one pass: reading them back from the new record would be a lookup each on a record of
      // whatever shape this response has.
      out[name] = origin !== undefined && (name === 'location' || name === 'content-location') ? withoutOrigin(value, origin) : value
    }
    // A shared cache that kept a response with our Set-Cookie would pin everyone it serves to one binding.
    if (state?.cookie !== undefined) out['cache-control'] = privateCacheControl(out['cache-control'])
    return out
  }

  return { routingCookie, routingSetCookie, upstreamRequestHeaders, clientResponseHeaders }
}
