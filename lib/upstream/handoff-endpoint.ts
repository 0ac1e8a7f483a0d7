/**
 * The upstream side of the session handoff (version 1 of lib/core/handoff-protocol.ts), framework-free: the four
 * endpoints as functions from a parsed body to an answer, the tracking and holding of the requests of sessions
 * being moved, and a node:http / Express middleware over both. The Fastify plugin (./index.ts) is a door over the
 * same functions.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import {
  HANDOFF_VERSION, SESSION_HANDLE_RE, SESSION_HEADER, type HandoffError, type HandoffStep
} from '../core/handoff-protocol'
import { createBearerCheck } from '../admin/bearer-auth'
import { isRecord } from '../options/checks'
import { resolveUpstreamOptions, type ResolvedUpstreamOptions, type StickyUpstreamOptions } from './options'
import { SessionTracker, type Admission } from './session-tracker'
import { NOT_JSON, TOO_LARGE, endClosed, readJsonBody, writeAnswer, writeMoved, type HandoffAnswer } from './node-http-io'

export { MOVED_BODY, writeMoved, type HandoffAnswer } from './node-http-io'

/** Where a callback of the app failed (for logging). */
export interface HandoffFailure {
  readonly step: HandoffStep
  readonly session: string
  /** What went wrong: the callback threw or rejected, timed out, or returned something that is not JSON. */
  readonly reason: 'threw' | 'timeout' | 'not-json'
}

/** Hooks of {@link createHandoffEndpoint} beyond the options. */
export interface HandoffEndpointHooks {
  /**
   * Told of every failure of the app's callbacks (which become 500 `failed`, or are ignored for `dropSession`) and
   * of every hold that expired; it must not throw.
   * @defaultValue nothing is logged
   */
  onFailure? (failure: HandoffFailure, error: unknown): void
  /** Told when a session's hold ran out without commit or abort (its held requests are then served here). */
  onExpired? (session: string): void
}

/** `next` of an Express middleware. */
export type NextFunction = (error?: unknown) => void

/** The upstream side of the handoff, for any HTTP framework (see {@link createHandoffEndpoint}). */
export interface HandoffEndpoint {
  /** The resolved options. */
  readonly options: ResolvedUpstreamOptions
  /** Largest handoff request body accepted, bytes: `maxStateBytes` plus 4 KiB for the envelope. */
  readonly bodyLimit: number
  /**
   * @param authorization - the request's `Authorization` header
   * @returns `true` only for `Bearer <secret>`
   */
  authorize (authorization: string | undefined): boolean
  /**
   * Serves one handoff step, the request being authorised already.
   * @param step - the path segment
   * @param body - the parsed JSON body
   * @returns the answer; never rejects
   */
  handle (step: HandoffStep, body: unknown): Promise<HandoffAnswer>
  /**
   * Decides a request that is not a handoff call: served now, held while its session is frozen, or answered "moved".
   * @param session - the request's session handle (see {@link HandoffEndpoint.sessionOf}); `null`: served, untracked
   * @param response - its response, whose `'close'` ends the request's count
   * @returns the admission, synchronously unless the request is held
   */
  admit (session: string | null, response: ServerResponse): Admission | Promise<Admission>
  /**
   * @param request - any request
   * @returns its `x-sticky-session` handle, or `null` when absent, malformed or on a handoff call
   */
  sessionOf (request: IncomingMessage): string | null
  /**
   * @param url - a request target
   * @returns the handoff step it names, `null` for another path under the handoff path, `undefined` outside it
   */
  stepOf (url: string | undefined): HandoffStep | null | undefined
  /** The tracker (in-flight counts, freezes), for diagnostics and tests. */
  readonly tracker: SessionTracker
  /**
   * A node:http / Express middleware: serves the handoff endpoints itself, and otherwise tracks and holds the
   * request and calls `next()` (or answers 421 when its session moved away). Mount it before any body parser.
   */
  readonly middleware: (request: IncomingMessage, response: ServerResponse, next: NextFunction) => void
  /** Releases every frozen session (its held requests are served) and stops the hold timers. */
  close (): void
}

// The envelope around the state in an import body (`{"v":1,"session":"...","state":...}`), with room to spare.
const ENVELOPE_BYTES = 4096
/** The protocol's steps, each an endpoint under the handoff path. */
export const HANDOFF_STEPS: readonly HandoffStep[] = ['export', 'import', 'commit', 'abort']
const STEPS: ReadonlySet<string> = new Set(HANDOFF_STEPS)

/** An error answer in the protocol's shape, `{ v, error, ... }`. */
export function errorAnswer (status: number, error: string, extra?: Omit<HandoffError, 'v' | 'error'>): HandoffAnswer {
  return { status, body: JSON.stringify({ v: HANDOFF_VERSION, error, ...extra }) }
}

const NO_CONTENT: HandoffAnswer = { status: 204 }
/** The 401 of a call without the shared secret: nothing else is said. */
export const UNAUTHORIZED: HandoffAnswer = { ...errorAnswer(401, 'unauthorized'), headers: { 'www-authenticate': 'Bearer' } }
const BAD_REQUEST = errorAnswer(400, 'bad-request')
const UNSUPPORTED_VERSION = errorAnswer(400, 'unsupported-version', { supported: [HANDOFF_VERSION] })

type Outcome<T> = { ok: true, value: T } | { ok: false, reason: 'threw' | 'timeout', error: unknown }

// Runs one of the app's callbacks: a synchronous throw, a rejection and a hang all end as a failed outcome, so no
// callback can crash the process or keep a session frozen.
async function runBounded<T> (callback: () => T, timeoutMs: number): Promise<Outcome<Awaited<T>>> {
  let timer: NodeJS.Timeout | undefined
  const timedOut = new Promise<Outcome<Awaited<T>>>((resolve) => {
    timer = setTimeout(() => resolve({ ok: false, reason: 'timeout', error: new Error(`no answer within ${timeoutMs} ms`) }), timeoutMs)
    timer.unref()
  })
  const settled = (async (): Promise<Outcome<Awaited<T>>> => {
    try {
      return { ok: true, value: await callback() }
    } catch (error) {
      return { ok: false, reason: 'threw', error }
    }
  })()
  try {
    return await Promise.race([settled, timedOut])
  } finally {
    clearTimeout(timer)
  }
}

/**
 * Creates the upstream side of the handoff.
 * @param input - the options
 * @param hooks - failure and expiry notifications (logging)
 * @returns the endpoint functions and a node:http / Express middleware over them
 * @throws FST_STICKY_INVALID_OPTION naming the bad option
 * @example
 * const handoff = createHandoffEndpoint({
 *   secret: process.env.HANDOFF_SECRET!,
 *   exportSession: (session) => carts.get(session),
 *   importSession: (session, state) => { carts.set(session, state as Cart) },
 *   dropSession: (session) => { carts.delete(session) }
 * })
 * app.use(handoff.middleware)   // before express.json()
 */
export function createHandoffEndpoint (input: StickyUpstreamOptions, hooks: HandoffEndpointHooks = {}): HandoffEndpoint {
  const options = resolveUpstreamOptions(input)
  const { timeoutMs, maxStateBytes } = options
  const tracker = new SessionTracker()
  const prefix = `${options.path}/`
  const bodyLimit = maxStateBytes + ENVELOPE_BYTES

  function reportFailure (failure: HandoffFailure, error: unknown): void {
    try {
      hooks.onFailure?.(failure, error)
    } catch {
      // A logger that throws must not turn an answered failure into an unanswered request.
    }
  }

  // The admin API's check: digests compared in constant time, so neither the secret nor its length leaks.
  const authorize = createBearerCheck(options.secret)

  async function exportStep (session: string, holdMs: number): Promise<HandoffAnswer> {
    // Its state left with another move a moment ago: not "nothing to carry" (404), which would move it without state.
    if (tracker.isMoved(session)) return errorAnswer(409, 'moved')
    const freeze = tracker.freeze(session)
    if (freeze === undefined) return errorAnswer(409, 'busy')
    // The hold bounds the whole freeze, draining included: a session's new requests wait at most holdMs here.
    const holdBudget = Math.min(Math.max(holdMs, 1), timeoutMs)
    const frozenAt = Date.now()
    if (!await tracker.drain(freeze, holdBudget)) {
      tracker.release(freeze, 'proceed')
      return errorAnswer(409, 'busy')
    }
    const outcome = await runBounded(() => options.exportSession(session), timeoutMs)
    // An abort may have come while the app was answering: the gateway no longer waits for this export.
    if (tracker.frozen(session) !== freeze) return errorAnswer(409, 'busy')
    if (!outcome.ok) {
      tracker.release(freeze, 'proceed')
      reportFailure({ step: 'export', session, reason: outcome.reason }, outcome.error)
      return errorAnswer(500, 'failed')
    }
    if (outcome.value === null || outcome.value === undefined) {
      tracker.release(freeze, 'proceed')
      return errorAnswer(404, 'unknown-session')
    }
    let state: string | undefined
    try {
      state = JSON.stringify(outcome.value)
    } catch (error) {
      tracker.release(freeze, 'proceed')
      reportFailure({ step: 'export', session, reason: 'not-json' }, error)
      return errorAnswer(500, 'failed')
    }
    if (state === undefined) {
      // A function or a symbol: JSON has no value for it.
      tracker.release(freeze, 'proceed')
      reportFailure({ step: 'export', session, reason: 'not-json' }, new TypeError(`exportSession returned ${typeof outcome.value}`))
      return errorAnswer(500, 'failed')
    }
    if (Buffer.byteLength(state) > maxStateBytes) {
      tracker.release(freeze, 'proceed')
      return errorAnswer(413, 'too-large')
    }
    tracker.hold(freeze, Math.max(1, holdBudget - (Date.now() - frozenAt)), () => {
      try {
        hooks.onExpired?.(session)
      } catch {
        // Logging only.
      }
    })
    // The state goes out as serialised above: measured and sent are the same bytes.
    return { status: 200, body: `{"v":${HANDOFF_VERSION},"session":${JSON.stringify(session)},"state":${state}}` }
  }

  async function importStep (session: string, state: unknown): Promise<HandoffAnswer> {
    let size: number
    try {
      size = Buffer.byteLength(JSON.stringify(state))
    } catch {
      return BAD_REQUEST
    }
    if (size > maxStateBytes) return errorAnswer(413, 'too-large')
    const outcome = await runBounded(() => options.importSession(session, state), timeoutMs)
    if (!outcome.ok) {
      reportFailure({ step: 'import', session, reason: outcome.reason }, outcome.error)
      return errorAnswer(500, 'failed')
    }
    // The session may be coming back within a minute of leaving: its requests are served here again.
    tracker.clearMoved(session)
    return NO_CONTENT
  }

  async function commitStep (session: string): Promise<HandoffAnswer> {
    const freeze = tracker.frozen(session)
    if (freeze === undefined || freeze.phase !== 'exported') {
      // A retried commit finds the session moved already; anything else committed nothing.
      return tracker.isMoved(session) ? NO_CONTENT : errorAnswer(409, 'expired')
    }
    // Held requests are answered first (421: the gateway follows them to the new upstream), and the commit at once:
    // the gateway rebinds only after it, so the app's dropSession must not hold the followers up.
    tracker.release(freeze, 'moved')
    const drop = options.dropSession
    if (drop !== undefined) {
      void runBounded(() => drop(session), timeoutMs).then((outcome) => {
        if (!outcome.ok) reportFailure({ step: 'commit', session, reason: outcome.reason }, outcome.error)
      })
    }
    return NO_CONTENT
  }

  function abortStep (session: string): HandoffAnswer {
    const freeze = tracker.frozen(session)
    if (freeze !== undefined) tracker.release(freeze, 'proceed')
    return NO_CONTENT
  }

  async function handle (step: HandoffStep, body: unknown): Promise<HandoffAnswer> {
    if (!isRecord(body)) return BAD_REQUEST
    if (body.v !== HANDOFF_VERSION) return UNSUPPORTED_VERSION
    const session = body.session
    if (typeof session !== 'string' || !SESSION_HANDLE_RE.test(session)) return BAD_REQUEST
    try {
      switch (step) {
        case 'export': {
          const holdMs = body.holdMs
          if (typeof holdMs !== 'number' || !Number.isFinite(holdMs)) return BAD_REQUEST
          return await exportStep(session, holdMs)
        }
        case 'import':
          if (!Object.hasOwn(body, 'state')) return BAD_REQUEST
          return await importStep(session, body.state)
        case 'commit':
          return await commitStep(session)
        case 'abort':
          return abortStep(session)
        default:
          return errorAnswer(404, 'bad-request')
      }
    } catch (error) {
      // Unreachable by design (every callback runs bounded); kept so no bug here can leave a request unanswered.
      reportFailure({ step, session, reason: 'threw' }, error)
      const freeze = tracker.frozen(session)
      if (freeze !== undefined && freeze.phase === 'draining') tracker.release(freeze, 'proceed')
      return errorAnswer(500, 'failed')
    }
  }

  function stepOf (url: string | undefined): HandoffStep | null | undefined {
    if (url === undefined || !url.startsWith(prefix)) return undefined
    const end = url.search(/[?#]/)
    const step = url.slice(prefix.length, end === -1 ? undefined : end)
    return STEPS.has(step) ? step as HandoffStep : null
  }

  function sessionOf (request: IncomingMessage): string | null {
    if (stepOf(request.url) !== undefined) return null
    const value = request.headers[SESSION_HEADER]
    return typeof value === 'string' && SESSION_HANDLE_RE.test(value) ? value : null
  }

  function admit (session: string | null, response: ServerResponse): Admission | Promise<Admission> {
    return session === null ? 'proceed' : tracker.admit(session, response)
  }

  function middleware (request: IncomingMessage, response: ServerResponse, next: NextFunction): void {
    const step = stepOf(request.url)
    if (step !== undefined) {
      serveHandoff(request, response, step)
      return
    }
    const admission = admit(sessionOf(request), response)
    const settle = (decided: Admission): void => {
      if (decided === 'proceed') next()
      else if (decided === 'moved') writeMoved(response)
      else endClosed(response)
    }
    if (typeof admission === 'string') settle(admission)
    else void admission.then(settle)
  }

  function serveHandoff (request: IncomingMessage, response: ServerResponse, step: HandoffStep | null): void {
    if (!authorize(request.headers.authorization)) {
      writeAnswer(response, UNAUTHORIZED)
      request.resume()
      return
    }
    if (step === null || request.method !== 'POST') {
      writeAnswer(response, step === null ? errorAnswer(404, 'bad-request') : { ...errorAnswer(405, 'bad-request'), headers: { allow: 'POST' } })
      request.resume()
      return
    }
    readJsonBody(request, bodyLimit).then(
      async (body) => {
        writeAnswer(response, body === TOO_LARGE ? errorAnswer(413, 'too-large') : body === NOT_JSON ? BAD_REQUEST : await handle(step, body))
      },
      () => { response.destroy() }
    )
  }

  return {
    options,
    bodyLimit,
    authorize,
    handle,
    admit,
    sessionOf,
    stepOf,
    tracker,
    middleware,
    close: () => tracker.close()
  }
}
