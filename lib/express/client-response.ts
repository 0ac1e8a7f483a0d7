/**
 * What the Express door writes on a node:http response: an upstream's head (status and rewritten headers, with the
 * routing cookie added to whatever Set-Cookie the upstream and earlier middleware set), and the answers the gateway
 * makes itself (built by the core: status, `Retry-After`, JSON body, never an address).
 */
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http'
import type { CoreLogger } from '../core/logger'
import { problemBody, type StickyProblem } from '../core/problem'
import type { StickyCore } from '../core/sticky-core'

/** The request id for problem bodies: what a request-id middleware (pino-http, express-request-id) set, if any. */
export function requestIdOf (request: IncomingMessage): string | undefined {
  const id = (request as { id?: unknown }).id
  return typeof id === 'string' ? id : typeof id === 'number' ? String(id) : undefined
}

function setCookieList (value: unknown): string[] {
  if (value === undefined) return []
  return Array.isArray(value) ? value.map(String) : [String(value)]
}

/**
 * Writes the head of a relayed upstream response.
 * @param headers - the upstream's headers, already rewritten for the client (see `core.clientResponseHeaders`)
 * @param ownCookies - serialized Set-Cookie values of the gateway's own (the routing cookie)
 */
export function writeUpstreamHead (res: ServerResponse, statusCode: number, headers: Record<string, unknown>, ownCookies: readonly string[]): void {
  const head: OutgoingHttpHeaders = {}
  for (const name in headers) {
    const value = headers[name]
    if (value !== undefined && value !== null) head[name] = value as string | string[] | number
  }
  // Earlier middleware's cookies (a session, CSRF) stay; the upstream's follow, then ours, as the Fastify door sends them.
  const earlier = res.getHeader('set-cookie')
  if (earlier !== undefined || ownCookies.length > 0) {
    const cookies = [...setCookieList(earlier), ...setCookieList(head['set-cookie']), ...ownCookies]
    if (cookies.length > 0) head['set-cookie'] = cookies
  }
  res.writeHead(statusCode, head)
}

/**
 * Sends an answer the gateway makes itself (logged at debug with its cause; counted under `pool`). Once the
 * response head is out there is nothing left to say: the connection is cut instead.
 * @param ownCookies - the routing cookie, when the request's state set one (the binding exists: keep the client on it)
 */
export function sendProblem (
  core: StickyCore, log: CoreLogger, request: IncomingMessage, res: ServerResponse, pool: string, problem: StickyProblem,
  ownCookies: readonly string[] = []
): void {
  if (problem.cause !== undefined) log.debug({ err: problem.cause, code: problem.code }, 'fastify-sticky: answered by the gateway')
  core.problemSent(pool, problem)
  if (res.headersSent) {
    res.destroy()
    return
  }
  const body = JSON.stringify(problemBody(problem, requestIdOf(request)))
  const headers: OutgoingHttpHeaders = {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body)
  }
  if (problem.retryAfterSeconds !== undefined) headers['retry-after'] = String(problem.retryAfterSeconds)
  const earlier = res.getHeader('set-cookie')
  if (ownCookies.length > 0) headers['set-cookie'] = [...setCookieList(earlier), ...ownCookies]
  res.writeHead(problem.status, headers)
  res.end(body)
}
