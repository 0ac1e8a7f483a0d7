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
import { removeHopByHop, writeForwardingHeaders } from './upstream-headers'

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
  upstreamRequestHeaders (state: StickyRequestState | undefined, headers: Record<string, unknown>, edge: EdgeFacts): Record<string, unknown>
  clientResponseHeaders (state: StickyRequestState | undefined, headers: Record<string, unknown>): Record<string, unknown>
}

/** @returns the rewriting functions for these options */
export function createHeaderRewriter (options: ResolvedOptions): HeaderRewriter {
  const cookieOptions = options.cookie
  const stripCookies = cookieOptions.forward ? [] : Object.values(options.pools).map((pool) => pool.cookieName)
  const reboundHeader = options.reboundHeader
  const handoff = options.handoff !== undefined
  const xForwarded = options.xForwarded
  const allowedHosts = xForwarded === false ? undefined : xForwarded.allowedHosts

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
        secure: cookieOptions.secure === 'auto' ? https : cookieOptions.secure
      }
    }
  }

  function upstreamRequestHeaders (state: StickyRequestState | undefined, headers: Record<string, unknown>, edge: EdgeFacts): Record<string, unknown> {
    // undici refuses `Expect: 100-continue` (curl sends it for bodies over 1 MB); the body is streamed anyway.
    if (headers.expect !== undefined) delete headers.expect
    // What `Connection` does not name (a bare `Keep-Alive`, `Upgrade: h2c`, `TE`) would make undici refuse the
    // request, or reach the upstream as if we had sent it.
    removeHopByHop(headers)
    if (stripCookies.length > 0 && typeof headers.cookie === 'string') {
      const cookie = removeCookies(headers.cookie, stripCookies)
      if (cookie === undefined) delete headers.cookie
      else headers.cookie = cookie
    }
    if (xForwarded !== false) {
      const host = edge.host === '' || (allowedHosts !== undefined && !allowedHosts.has(edge.host.toLowerCase())) ? undefined : edge.host
      writeForwardingHeaders(headers, edge.forwardedFor, edge.protocol, host)
    }
    // Which session a request belongs to is the gateway's to say: an upstream's handoff plugin keys state by it.
    if (headers[SESSION_HEADER] !== undefined) delete headers[SESSION_HEADER]
    if (handoff && state?.binding !== undefined) headers[SESSION_HEADER] = state.binding.keyId
    if (reboundHeader !== false) {
      // A client-sent header must never claim a rebound that did not happen.
      // (`delete` only when present: it turns the headers object into a slow dictionary for the rest of its life.)
      if (state?.decision.rebound === true) headers[reboundHeader] = '1'
      else if (headers[reboundHeader] !== undefined) delete headers[reboundHeader]
    }
    return headers
  }

  // An upstream that builds absolute URLs from the Host it was sent (its own address) would hand clients an
  // internal address in redirects: those become path-absolute references (nginx's `proxy_redirect default`).
  function clientResponseHeaders (state: StickyRequestState | undefined, headers: Record<string, unknown>): Record<string, unknown> {
    removeHopByHop(headers)
    if (state === undefined) return headers
    const origin = state.decision.upstream.url
    if (headers.location !== undefined) headers.location = withoutOrigin(headers.location, origin)
    if (headers['content-location'] !== undefined) headers['content-location'] = withoutOrigin(headers['content-location'], origin)
    // A shared cache that kept a response with our Set-Cookie would pin everyone it serves to one binding.
    if (state.cookie !== undefined) headers['cache-control'] = privateCacheControl(headers['cache-control'])
    return headers
  }

  return { routingCookie, upstreamRequestHeaders, clientResponseHeaders }
}
