/**
 * `reply.forward()`: hands the request to @fastify/reply-from, aimed at the upstream the affinity hook chose.
 * Upstream failures become 502/504 answers with a short JSON body; never a 500, never an internal address.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { FastifyReplyFromHooks } from '@fastify/reply-from'
import { BadGatewayError, UpstreamTimeoutError } from '../errors'

const TIMEOUT_CODES = new Set([
  'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT',
  'FST_REPLY_FROM_TIMEOUT', 'FST_REPLY_FROM_GATEWAY_TIMEOUT', 'FST_REPLY_FROM_HTTP_REQUEST_TIMEOUT'
])

function isTimeout (error: unknown): boolean {
  for (let e = error as { code?: unknown, cause?: unknown } | undefined, depth = 0; e !== undefined && e !== null && depth < 4; e = e.cause as typeof e, depth++) {
    if (typeof e.code === 'string' && TIMEOUT_CODES.has(e.code)) return true
  }
  return false
}

/**
 * Answers a failed forward: 504 for timeouts, 502 otherwise; logs the cause with the upstream id only.
 * @param reply - the reply of the failed request
 * @param failure - what reply-from reports
 */
export function sendUpstreamError (reply: FastifyReply, failure: { error: unknown }): void {
  const problem = isTimeout(failure.error)
    ? new UpstreamTimeoutError({ cause: failure.error })
    : new BadGatewayError({ cause: failure.error })
  const sticky = reply.request.sticky
  reply.request.log.warn({ pool: sticky?.pool, upstream: sticky?.upstream.id, code: (failure.error as { code?: string }).code, statusCode: problem.statusCode },
    'fastify-sticky: upstream request failed')
  const status = problem.statusCode ?? 502
  reply.code(status).send({
    statusCode: status,
    code: problem.code,
    error: status === 504 ? 'Gateway Timeout' : 'Bad Gateway',
    message: problem.message,
    requestId: reply.request.id
  })
}

function upstreamOf (request: FastifyRequest): string {
  // Set by the plugin before any handler runs; forward() refuses to run without it.
  return (request.sticky as NonNullable<FastifyRequest['sticky']>).upstream.url
}

/** Options handed to reply-from on every forward; shared, so a request allocates none. */
export const REPLY_FROM_OPTIONS = Object.freeze({ getUpstream: upstreamOf, onError: sendUpstreamError }) as unknown as FastifyReplyFromHooks
