/**
 * Writes an answer the gateway makes itself (built by the core) on a Fastify reply: status, `Retry-After`, JSON body.
 */
import type { FastifyReply } from 'fastify'
import { problemBody, type StickyProblem } from '../core/problem'
import type { StickyCore } from '../core/sticky-core'

/** Sends `problem` (logged at debug with its cause; counted for metrics under `pool`). */
export function sendProblem (core: StickyCore, reply: FastifyReply, pool: string, problem: StickyProblem): FastifyReply {
  if (problem.cause !== undefined) reply.request.log.debug({ err: problem.cause, code: problem.code }, 'fastify-sticky: answered by the gateway')
  core.problemSent(pool, problem)
  if (problem.retryAfterSeconds !== undefined) reply.header('retry-after', String(problem.retryAfterSeconds))
  return reply.code(problem.status).send(problemBody(problem, reply.request.id))
}
