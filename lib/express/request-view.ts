/**
 * What the core reads of a node:http request (an Express one, or an upgrade Express never saw): the client's
 * address, the headers, the query (only for routes keyed by it) and the cookies, each read as the Fastify door
 * reads them, so a client is routed the same through either door.
 */
import type { IncomingMessage } from 'node:http'
import querystring from 'node:querystring'
import type { RequestView } from '../core/request-state'
import type { ResolvedRouteConfig } from '../options'
import type { ClientFacts } from './client-facts'
import type { CookieText } from './cookie-text'

/** Builds the request views of one route. */
export function createViewReader (route: ResolvedRouteConfig, cookies: CookieText): (request: IncomingMessage, url: string, facts: ClientFacts) => RequestView {
  const wantsQuery = route.key !== false && route.key.some((source) => source.kind === 'query')
  return (request, url, facts) => {
    const header = request.headers.cookie
    return {
      ip: facts.ip,
      headers: request.headers,
      query: wantsQuery ? queryOf(url) : undefined,
      // Always parsed here, as @fastify/cookie parses it, never taken from cookie-parser's `req.cookies`: that one
      // turns `j:` values into objects and moves signed ones out, and both doors must read the same cookies.
      cookies: cookies.parse(typeof header === 'string' ? header : undefined),
      request
    }
  }
}

// Parsed as Fastify's default query parser does (repeated names become arrays), not by Express's `qs`, so
// `key: { query }` reads the same value through both doors.
function queryOf (url: string): Record<string, unknown> {
  const q = url.indexOf('?')
  return q < 0 ? {} : querystring.parse(url.slice(q + 1))
}
