/**
 * The session handoff contract between the gateway and an upstream app (`fastify-sticky/upstream`), version 1:
 * names, paths and message shapes, shared by both sides so they cannot drift. Framework-free.
 *
 * A planned move of one session from upstream X to upstream Y:
 * 1. `export` at X: X freezes the session (its new requests wait, not served), waits for the session's requests in
 *    flight at X to finish, and answers the app's `exportSession(session)`;
 * 2. `import` at Y: Y's `importSession(session, state)`;
 * 3. `commit` at X: X forgets the session (`dropSession`), and answers every request of it still held, or arriving
 *    later, with 421 and {@link HANDOFF_MOVED_HEADER}, which a gateway retries on the session's new upstream;
 * 4. the gateway rebinds the session to Y in the shared store (compare-and-set; every gateway follows).
 * Any failure before 3 sends `abort` to X instead: the held requests are served by X, as if nothing happened. A
 * frozen session is released by X itself after the `holdMs` the export named, so a gateway that died mid-move
 * cannot leave it frozen; a commit after that is answered 409 `expired`, and the move is given up (X served the
 * held requests from its copy, which stays the session's).
 */

/** The protocol version this package speaks. */
export const HANDOFF_VERSION = 1

/** Request header naming the session (the binding's key id) on every request the gateway forwards on a sticky route. */
export const SESSION_HEADER = 'x-sticky-session'

/** Response header of an upstream's 421 for a request of a session that moved away (the gateway retries elsewhere). */
export const HANDOFF_MOVED_HEADER = 'x-sticky-moved'

/** Where an upstream serves the handoff endpoints unless told otherwise; the gateway never forwards a client there. */
export const DEFAULT_HANDOFF_PATH = '/.well-known/sticky-handoff'

/** What a session handle looks like (a key id: a keyed hash, nothing a client can choose). */
export const SESSION_HANDLE_RE = /^[A-Za-z0-9_-]{8,64}$/

/** Shortest shared secret between gateways and upstreams, in characters. */
export const MIN_HANDOFF_SECRET_LENGTH = 32

/**
 * Whether a request target reaches an upstream's handoff endpoints, which a gateway must never forward a client to
 * (their secret guards them too). Compared decoded and case-folded, as an upstream's router might.
 * @param target - the path (and query) to forward
 * @param path - the handoff path
 */
export function isHandoffTarget (target: string, path: string): boolean {
  // As the request will be sent: dot segments resolved (`/./`, `/%2e/`), as an HTTP client and most routers do; then
  // decoded, case-folded and with repeated slashes collapsed, as a lenient upstream router might read it.
  let pathname: string
  try {
    // Slashes collapsed first: `//x/…` would otherwise parse as a host named x.
    pathname = new URL(target.replace(/\/{2,}/g, '/'), 'http://gateway.invalid').pathname
  } catch {
    pathname = target
  }
  let decoded = pathname
  try { decoded = decodeURIComponent(pathname) } catch { /* a malformed escape is compared as sent */ }
  const seen = decoded.toLowerCase().replace(/\/+/g, '/')
  const base = path.toLowerCase()
  return seen === base || seen.startsWith(base + '/')
}

/** The steps, as path segments under the handoff path. */
export type HandoffStep = 'export' | 'import' | 'commit' | 'abort'

/** `POST <path>/export` body. */
export interface ExportRequest {
  readonly v: typeof HANDOFF_VERSION
  readonly session: string
  /** How long the session may stay frozen at the old upstream before it releases it itself, ms. */
  readonly holdMs: number
}

/**
 * `POST <path>/export` answer (200); 404 `unknown-session` when the app has no such session, 409 `busy` when its
 * requests stayed in flight past the hold, 409 `moved` when it was handed over elsewhere in the last minute, 413
 * `too-large`.
 */
export interface ExportResponse {
  readonly v: typeof HANDOFF_VERSION
  readonly session: string
  /** What `exportSession` returned: any JSON value. */
  readonly state: unknown
}

/** `POST <path>/import` body (answer: 204). */
export interface ImportRequest {
  readonly v: typeof HANDOFF_VERSION
  readonly session: string
  readonly state: unknown
}

/** `POST <path>/commit` and `POST <path>/abort` body (answer: 204; 409 for a commit after the hold expired). */
export interface SessionRequest {
  readonly v: typeof HANDOFF_VERSION
  readonly session: string
}

/** Any error answer of a handoff endpoint. */
export interface HandoffError {
  readonly v: typeof HANDOFF_VERSION
  /** `unauthorized`, `bad-request`, `unsupported-version`, `unknown-session`, `busy`, `moved`, `too-large`, `expired`, `failed`. */
  readonly error: string
  /** With `unsupported-version`: the versions the upstream speaks. */
  readonly supported?: readonly number[]
}
