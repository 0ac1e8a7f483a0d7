/**
 * Every answer the gateway makes itself, built in one place: a status, a stable `FST_STICKY_*` code, a short JSON
 * body that never names an upstream's address, and `Retry-After` where waiting helps. Front doors only write it.
 * Codes and messages come from `lib/errors.ts`, the one home of `FST_STICKY_*` codes. Framework-free.
 */
import { BadGatewayError, BadRequestTargetError, NoUpstreamError, SessionMovedError, TunnelLimitError, UpstreamTimeoutError } from '../errors'

/** An answer the gateway makes itself. */
export interface StickyProblem {
  readonly status: 400 | 502 | 503 | 504
  readonly code: string
  readonly error: string
  readonly message: string
  /** Seconds for `Retry-After`, when set. */
  readonly retryAfterSeconds?: number
  /** What caused it, for the log only (never sent). */
  readonly cause?: unknown
}

/** The JSON body of a problem answer. */
export interface StickyProblemBody {
  readonly statusCode: number
  readonly code: string
  readonly error: string
  readonly message: string
  readonly requestId: string | undefined
}

const TEXT = {
  400: 'Bad Request',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout'
} as const

/** @returns a request target (or header) that cannot be forwarded as sent */
export function badRequestTarget (cause?: unknown): StickyProblem {
  const e = new BadRequestTargetError()
  return { status: 400, code: e.code, error: TEXT[400], message: e.message, cause }
}

/** @returns the upstream did not answer properly (refused everywhere, reset, garbage) */
export function badGateway (cause?: unknown): StickyProblem {
  const e = new BadGatewayError()
  return { status: 502, code: e.code, error: TEXT[502], message: e.message, cause }
}

/** @returns the upstream did not connect or answer in time */
export function upstreamTimeout (cause?: unknown): StickyProblem {
  const e = new UpstreamTimeoutError()
  return { status: 504, code: e.code, error: TEXT[504], message: e.message, cause }
}

/**
 * @param strictDown - the session's upstream is down on a strict route (else: no upstream can take it)
 * @param retryAfterSeconds - when to try again (the health check interval, or the cool-down)
 */
export function noUpstream (pool: string, strictDown: boolean, retryAfterSeconds: number): StickyProblem {
  const e = new NoUpstreamError(pool)
  return {
    status: 503,
    code: e.code,
    error: TEXT[503],
    message: strictDown ? 'Service Unavailable: the upstream this session is bound to is down' : e.message,
    retryAfterSeconds
  }
}

/**
 * A request of a session that moved to another upstream while it was on its way, which cannot be sent again (its
 * body was streamed): the client may retry at once.
 */
export function sessionMoved (): StickyProblem {
  const e = new SessionMovedError()
  return { status: 503, code: e.code, error: TEXT[503], message: e.message, retryAfterSeconds: 0 }
}

/** @param scope - which cap: the gateway's or this client's */
export function tunnelLimit (scope: 'gateway' | 'client'): StickyProblem {
  const e = new TunnelLimitError(scope === 'gateway' ? 'on this gateway' : 'for this client')
  return { status: 503, code: e.code, error: TEXT[503], message: e.message, retryAfterSeconds: 5 }
}

/** @returns the JSON body to send for a problem */
export function problemBody (problem: StickyProblem, requestId: string | undefined): StickyProblemBody {
  return { statusCode: problem.status, code: problem.code, error: problem.error, message: problem.message, requestId }
}
