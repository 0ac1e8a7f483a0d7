/**
 * fastify-sticky/upstream: the upstream app's side of the session handoff. A gateway moving a session away from
 * this app (drain, scale-in, rebalancing) asks it to export the session's state, another upstream imports it, and
 * this one answers the session's later requests with 421 so the gateway retries them there. The Fastify plugin
 * here; `createHandoffEndpoint` for node:http and Express. Both speak version 1 of lib/core/handoff-protocol.ts.
 *
 * @packageDocumentation
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { HANDOFF_MOVED_HEADER } from '../core/handoff-protocol'
import { createHandoffEndpoint, errorAnswer, HANDOFF_STEPS, MOVED_BODY, UNAUTHORIZED, type HandoffAnswer } from './handoff-endpoint'
import { CLIENT_CLOSED_STATUS } from './node-http-io'
import type { StickyUpstreamOptions } from './options'
import type { Admission } from './session-tracker'

export {
  HANDOFF_MOVED_HEADER, HANDOFF_VERSION, SESSION_HEADER, DEFAULT_HANDOFF_PATH, SESSION_HANDLE_RE, MIN_HANDOFF_SECRET_LENGTH
} from '../core/handoff-protocol'
export type {
  HandoffStep, ExportRequest, ExportResponse, ImportRequest, SessionRequest, HandoffError
} from '../core/handoff-protocol'
export {
  createHandoffEndpoint, writeMoved, MOVED_BODY, type HandoffEndpoint, type HandoffEndpointHooks, type HandoffAnswer,
  type HandoffFailure, type NextFunction
} from './handoff-endpoint'
export {
  resolveUpstreamOptions, DEFAULT_MAX_STATE_BYTES, DEFAULT_HANDOFF_TIMEOUT_MS, type StickyUpstreamOptions,
  type ResolvedUpstreamOptions
} from './options'
export { SessionTracker, MOVED_ANSWER_MS, type Admission, type TrackedResponse, type Freeze } from './session-tracker'
export type { Duration } from '../duration'

declare module 'fastify' {
  interface FastifyRequest {
    /** The request's `x-sticky-session` handle (fastify-sticky/upstream); `null` when absent or malformed. */
    stickySession: string | null
  }
}


function sendAnswer (reply: FastifyReply, answer: HandoffAnswer): FastifyReply {
  reply.code(answer.status).header('cache-control', 'no-store')
  if (answer.headers !== undefined) reply.headers(answer.headers)
  if (answer.body === undefined) return reply.send()
  return reply.type('application/json; charset=utf-8').send(answer.body)
}

function sendMoved (reply: FastifyReply): FastifyReply {
  return reply.code(421).header(HANDOFF_MOVED_HEADER, '1').type('application/json').send(MOVED_BODY)
}

// Async, so an options error thrown here rejects register()/ready() instead of escaping avvio as an uncaught exception.
async function stickyUpstreamPlugin (app: FastifyInstance, options: StickyUpstreamOptions): Promise<void> {
  // Fastify hands a plugin its own register options too; they are not ours to check.
  const { prefix: _prefix, logLevel: _logLevel, logSerializers: _logSerializers, ...own } =
    options as StickyUpstreamOptions & { prefix?: unknown, logLevel?: unknown, logSerializers?: unknown }
  const endpoint = createHandoffEndpoint(own, {
    onFailure: (failure, error) => app.log.error({ err: error, ...failure }, 'fastify-sticky/upstream: %s of a session failed', failure.step),
    onExpired: (session) => app.log.warn({ session }, 'fastify-sticky/upstream: a handoff hold expired; the session stays here')
  })

  app.decorateRequest('stickySession', null)

  app.addHook('onRequest', function stickyUpstreamHold (request, reply, hookDone) {
    const session = endpoint.sessionOf(request.raw)
    request.stickySession = session
    const settle = (admission: Admission): void => {
      if (admission === 'proceed') hookDone()
      else if (admission === 'moved') sendMoved(reply)
      // Not the app's to serve: the client is gone, and the session may have moved meanwhile.
      else reply.code(CLIENT_CLOSED_STATUS).send()
    }
    const admission = endpoint.admit(session, reply.raw)
    if (typeof admission === 'string') settle(admission)
    else void admission.then(settle)
  })

  // Before the body is read: a caller without the secret learns nothing, not even whether its body parses.
  const authorize = function stickyHandoffAuth (request: FastifyRequest, reply: FastifyReply, hookDone: () => void): void {
    if (endpoint.authorize(request.headers.authorization)) hookDone()
    else sendAnswer(reply, UNAUTHORIZED)
  }
  // Body parser errors in the protocol's shape, on these routes only (the app's error handler stays the app's).
  const errorHandler = (error: FastifyError, _request: FastifyRequest, reply: FastifyReply): FastifyReply => {
    const status = error.statusCode ?? 500
    const [code, problem] = status === 413 ? [413, 'too-large'] : status < 500 ? [400, 'bad-request'] : [500, 'failed']
    return sendAnswer(reply, errorAnswer(code, problem))
  }

  for (const step of HANDOFF_STEPS) {
    app.post(`${endpoint.options.path}/${step}`, {
      bodyLimit: endpoint.bodyLimit,
      onRequest: authorize,
      errorHandler,
      handler: async (request, reply) => sendAnswer(reply, await endpoint.handle(step, request.body))
    })
  }

  app.addHook('onClose', (_instance, hookDone) => {
    endpoint.close()
    hookDone()
  })
}

/**
 * The fastify-sticky/upstream plugin: serves the handoff endpoints under `path` and holds the requests of sessions
 * being moved (app-wide, through fastify-plugin). Register it before the app's routes.
 * @example
 * import Fastify from 'fastify'
 * import stickyUpstream from 'fastify-sticky/upstream'
 * const carts = new Map<string, Cart>()
 * const app = Fastify()
 * await app.register(stickyUpstream, {
 *   secret: process.env.HANDOFF_SECRET!,
 *   exportSession: (session) => carts.get(session),
 *   importSession: (session, state) => { carts.set(session, state as Cart) },
 *   dropSession: (session) => { carts.delete(session) }
 * })
 * app.get('/cart', (request) => carts.get(request.stickySession ?? '') ?? [])
 */
const stickyUpstream = fp(stickyUpstreamPlugin, { fastify: '5.x', name: 'fastify-sticky-upstream' })

export default stickyUpstream
export { stickyUpstream }
