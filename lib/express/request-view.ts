/**
 * What the core reads of a node:http request (an Express one, or an upgrade Express never saw): the client's
 * address, the headers and the query (only for routes keyed by it), each read as the Fastify door reads them, so
 * a client is routed the same through either door.
 */
import type { IncomingMessage } from 'node:http'
import querystring from 'node:querystring'
import type { RequestView } from '../core/request-state'
import type { ResolvedRouteConfig } from '../options'
import type { ClientFacts } from './client-facts'

/** Builds the request views of one route. */
export function createViewReader (route: ResolvedRouteConfig): (request: IncomingMessage, url: string, facts: ClientFacts) => RequestView {
  const wantsQuery = route.key !== false && route.key.some((source) => source.kind === 'query')
  return (request, url, facts) => {
    return {
      ip: facts.ip,
      headers: request.headers,
      query: wantsQuery ? queryOf(url) : undefined,
      // Left to the core, which parses the Cookie header as @fastify/cookie does (and only for routes that read more
      // than the routing cookie); never cookie-parser's `req.cookies`, which turns `j:` values into objects and
      // moves signed ones out: both doors must read the same cookies.
      cookies: undefined,
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
