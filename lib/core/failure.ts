/**
 * The one failure classifier for forwards, HTTP requests and upgrades alike. What a client can provoke (a slow
 * upstream answer it asked for, its own socket closing, its own malformed request) must never count against an
 * upstream: only a failure to connect does, or a broken connection once a fresh one is refused too. Framework-free.
 */

/**
 * What went wrong, by who is at fault:
 * - `unreached`: the upstream could not be connected to (refused, connect timeout, DNS, no route): its fault, and
 *   the request was never sent, so it may go anywhere else;
 * - `reset`: an open connection broke; a stale keep-alive connection looks the same, so the upstream is blamed only
 *   if a fresh connection is refused too, and only idempotent requests are sent again;
 * - `timeout`: connected, but the answer was too slow: a 504 for this request and nothing else (the client may
 *   have asked for something slow on purpose);
 * - `client-gone`: the client closed its side first: nobody to answer, nothing to count;
 * - `bad-request`: the request cannot be forwarded as sent (a header the HTTP client refuses): a 400;
 * - `bad-gateway`: anything else the upstream got wrong: a 502.
 */
export type ForwardFailureKind = 'unreached' | 'reset' | 'timeout' | 'client-gone' | 'bad-request' | 'bad-gateway'

/** A classified forward failure. */
export interface ForwardFailure {
  readonly kind: ForwardFailureKind
  /** The most specific error code found (for logs and the down reason); never an address. */
  readonly code: string | undefined
}

/** Code the tunnel reports when an upstream accepted the connection but did not answer the upgrade in time. */
export const HANDSHAKE_TIMEOUT_CODE = 'FST_STICKY_HANDSHAKE_TIMEOUT'

// Connection-level failures: the request was never sent.
const UNREACHED_CODES = new Set(['ECONNREFUSED', 'UND_ERR_CONNECT_TIMEOUT', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN'])
const RESET_CODES = new Set(['ECONNRESET', 'UND_ERR_SOCKET', 'EPIPE', 'UND_ERR_CLOSED'])
const TIMEOUT_CODES = new Set([
  'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', HANDSHAKE_TIMEOUT_CODE,
  'FST_REPLY_FROM_TIMEOUT', 'FST_REPLY_FROM_GATEWAY_TIMEOUT', 'FST_REPLY_FROM_HTTP_REQUEST_TIMEOUT'
])
// undici refuses what it cannot send (a header it does not allow, a body that does not match its length).
const BAD_REQUEST_CODES = new Set(['UND_ERR_INVALID_ARG', 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH', 'UND_ERR_NOT_SUPPORTED'])
const CLIENT_GONE_CODES = new Set(['UND_ERR_ABORTED', 'ECONNABORTED'])

/**
 * The error codes along an error's `cause` chain, outermost first (reply-from wraps transport errors, sometimes
 * under codes of its own such as `UND_ERR_CONNECT_TIMEOUT` for what is really a connect timeout).
 */
export function errorCodes (error: unknown): string[] {
  const codes: string[] = []
  for (let e = error as { code?: unknown, cause?: unknown } | undefined, depth = 0; e !== undefined && e !== null && depth < 5; e = e.cause as typeof e, depth++) {
    if (typeof e.code === 'string') codes.push(e.code)
  }
  return codes
}

/**
 * Classifies a forward failure.
 * @param error - what the HTTP client or the tunnel reported
 * @param clientGone - whether the client's connection had already closed: a client that hangs up mid-request makes
 *   the forward fail with a reset of its own body stream, which must not look like the upstream's doing
 */
export function classifyForwardFailure (error: unknown, clientGone: boolean): ForwardFailure {
  const codes = errorCodes(error)
  // The innermost code is the transport's own; outer ones are wrappers' guesses.
  const code = codes[codes.length - 1]
  // A failed connect is the upstream's whoever else left: the client cannot make a connection fail.
  if (codes.some((c) => UNREACHED_CODES.has(c)) && !codes.some((c) => TIMEOUT_CODES.has(c))) return { kind: 'unreached', code }
  if (clientGone || codes.some((c) => CLIENT_GONE_CODES.has(c))) return { kind: 'client-gone', code }
  if (codes.some((c) => TIMEOUT_CODES.has(c))) return { kind: 'timeout', code }
  if (codes.some((c) => RESET_CODES.has(c))) return { kind: 'reset', code }
  if (codes.some((c) => BAD_REQUEST_CODES.has(c))) return { kind: 'bad-request', code }
  return { kind: 'bad-gateway', code }
}

/** What the front door does about a failure. */
export interface FailurePlan {
  /** `yes`: mark the upstream down for every gateway; `if-unreachable`: only if a fresh connection fails too. */
  readonly blame: 'yes' | 'if-unreachable' | 'no'
  /** Whether the request may be sent again (to another upstream once the failed one is down). */
  readonly retry: boolean
  /** The answer when there is no retry: the status the gateway sends itself, or `null` (nobody is listening). */
  readonly status: 400 | 502 | 504 | null
}

/** What {@link planFailureResponse} needs to know of the request. */
export interface RetryContext {
  /** Whether the request can be sent again as it was (no body, or a buffered one). */
  readonly replayable: boolean
  /** Whether the method is idempotent. */
  readonly idempotent: boolean
  /** Earlier attempts of this request that were never reached, and whether any other retry happened. */
  readonly unreachedAttempts: number
  readonly retried: boolean
  /** Upstreams in the pool: a never-sent request is tried on each at most once. */
  readonly poolSize: number
}

/**
 * The plan for a classified failure: whom to blame, whether to retry, what to answer.
 *
 * A request that was never sent is retried until every upstream of its pool has refused it (each refusal marks
 * that one down, so each retry goes elsewhere); a broken connection is retried once, for idempotent requests.
 */
export function planFailureResponse (failure: ForwardFailure, context: RetryContext): FailurePlan {
  switch (failure.kind) {
    case 'client-gone': return { blame: 'no', retry: false, status: null }
    case 'timeout': return { blame: 'no', retry: false, status: 504 }
    case 'bad-request': return { blame: 'no', retry: false, status: 400 }
    case 'bad-gateway': return { blame: 'no', retry: false, status: 502 }
    case 'unreached': {
      const retry = context.replayable && context.unreachedAttempts < context.poolSize
      return { blame: 'yes', retry, status: failure.code === 'UND_ERR_CONNECT_TIMEOUT' ? 504 : 502 }
    }
    case 'reset': {
      const retry = context.replayable && context.idempotent && !context.retried
      return { blame: 'if-unreachable', retry, status: 502 }
    }
  }
}
