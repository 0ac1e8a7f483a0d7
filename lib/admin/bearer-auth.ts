/**
 * Bearer token check of the admin API: the presented token and the configured one are hashed to digests of equal
 * length and compared with `crypto.timingSafeEqual`, so neither the token's content nor its length leaks through
 * response timing.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'

function digest (value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest()
}

/**
 * @param token - the configured token
 * @returns a check of an `Authorization` header value: `true` only for `Bearer <token>`
 */
export function createBearerCheck (token: string): (authorization: string | undefined) => boolean {
  const expected = digest(token)
  return (authorization) => {
    // Parsed by hand, not with a regular expression: this runs before authentication, on any header it is sent.
    if (authorization === undefined || authorization.length < 8) return false
    if (authorization.slice(0, 6).toLowerCase() !== 'bearer' || (authorization[6] !== ' ' && authorization[6] !== '\t')) return false
    const presented = authorization.slice(7).trim()
    return presented !== '' && timingSafeEqual(digest(presented), expected)
  }
}

/** Answers 401 and says nothing else (no hint whether a token was missing, malformed or wrong). */
export function sendUnauthorized (reply: FastifyReply): FastifyReply {
  return reply.code(401)
    .header('www-authenticate', 'Bearer realm="fastify-sticky"')
    .header('cache-control', 'no-store')
    .send({ statusCode: 401, error: 'Unauthorized', message: 'Unauthorized' })
}

/**
 * @param token - the configured token
 * @returns an `onRequest` hook that lets only requests with `Authorization: Bearer <token>` through
 */
export function bearerAuthHook (token: string): (request: FastifyRequest, reply: FastifyReply, done: () => void) => void {
  const check = createBearerCheck(token)
  return function stickyAdminAuth (request, reply, done) {
    if (check(request.headers.authorization)) {
      done()
      return
    }
    sendUnauthorized(reply)
  }
}
