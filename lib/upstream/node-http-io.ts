/**
 * The node:http side of the upstream's handoff endpoints: reading a bounded JSON body, and writing the answers (an
 * endpoint's, a moved session's 421, a held request whose client left). Kept apart from the endpoint logic so that
 * the Fastify door, which writes through its reply, shares only what it needs (MOVED_BODY).
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { HANDOFF_MOVED_HEADER } from '../core/handoff-protocol'

/** What a handoff endpoint answers: a status and, unless 204, a JSON body (already serialised). */
export interface HandoffAnswer {
  readonly status: number
  readonly body?: string
  /** Extra response headers (`www-authenticate` on a 401). */
  readonly headers?: Readonly<Record<string, string>>
}

/** The body of the 421 a request of a session that moved away gets. */
export const MOVED_BODY = JSON.stringify({
  statusCode: 421,
  code: 'FST_STICKY_SESSION_MOVED',
  message: 'this session moved to another upstream; the gateway retries there'
})

/** Status of a held request whose client went away (nginx's "client closed request"): nobody reads it, logs do. */
export const CLIENT_CLOSED_STATUS = 499

/** What {@link readJsonBody} resolves with for a body over its limit. */
export const TOO_LARGE = Symbol('too large')
/** What {@link readJsonBody} resolves with for a body that is not JSON. */
export const NOT_JSON = Symbol('not JSON')

/**
 * Reads a JSON body itself, unless a body parser mounted earlier read it already (then its result is taken).
 * @returns the parsed body, {@link TOO_LARGE} or {@link NOT_JSON}
 */
export function readJsonBody (request: IncomingMessage, limit: number): Promise<unknown> {
  if (request.readableEnded) return Promise.resolve((request as IncomingMessage & { body?: unknown }).body ?? NOT_JSON)
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    const onData = (chunk: Buffer): void => {
      size += chunk.length
      if (size > limit) {
        request.off('data', onData)
        // Read on without keeping it, so the 413 can be written to a connection still in a state to take it.
        request.resume()
        resolve(TOO_LARGE)
        return
      }
      chunks.push(chunk)
    }
    request.on('data', onData)
    request.once('error', reject)
    request.once('end', () => {
      if (size > limit) return
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')))
      } catch {
        resolve(NOT_JSON)
      }
    })
  })
}

/** Writes an endpoint's answer (nothing when the response has started or its connection is gone). */
export function writeAnswer (response: ServerResponse, answer: HandoffAnswer): void {
  if (response.headersSent || response.destroyed) return
  const headers: Record<string, string> = { 'cache-control': 'no-store', ...answer.headers }
  if (answer.body !== undefined) {
    headers['content-type'] = 'application/json; charset=utf-8'
    headers['content-length'] = String(Buffer.byteLength(answer.body))
  }
  response.writeHead(answer.status, headers)
  response.end(answer.body)
}

/**
 * Answers a request of a session that moved away: 421, {@link HANDOFF_MOVED_HEADER}, {@link MOVED_BODY}.
 * @param response - the request's response (not started)
 */
export function writeMoved (response: ServerResponse): void {
  if (response.headersSent || response.destroyed) return
  response.writeHead(421, {
    [HANDOFF_MOVED_HEADER]: '1',
    'content-type': 'application/json',
    'content-length': String(Buffer.byteLength(MOVED_BODY))
  })
  response.end(MOVED_BODY)
}

/** Ends a held request whose client went away (its status is for logs only). */
export function endClosed (response: ServerResponse): void {
  if (response.headersSent || response.destroyed) return
  response.statusCode = CLIENT_CLOSED_STATUS
  response.end()
}
