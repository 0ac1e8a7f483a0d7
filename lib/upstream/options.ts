/**
 * Options of the upstream side of the session handoff (`fastify-sticky/upstream`): the input both doors take, and
 * its resolved form, checked once when the endpoint is created.
 */
import { DEFAULT_HANDOFF_PATH, MIN_HANDOFF_SECRET_LENGTH } from '../core/handoff-protocol'
import { parseDuration, type Duration } from '../duration'
import { InvalidOptionError } from '../errors'

/** Largest JSON-serialised session state an upstream exports or imports unless told otherwise: 1 MiB. */
export const DEFAULT_MAX_STATE_BYTES = 1024 * 1024

/** Longest wait for a session's requests in flight, and for each of the app's callbacks, unless told otherwise. */
export const DEFAULT_HANDOFF_TIMEOUT_MS = 5000

/** Options of `fastify-sticky/upstream` (the Fastify plugin and `createHandoffEndpoint`). */
export interface StickyUpstreamOptions {
  /**
   * The secret shared with the gateways, at least {@link MIN_HANDOFF_SECRET_LENGTH} characters; every handoff
   * call must carry `Authorization: Bearer <secret>`.
   */
  secret: string
  /**
   * Returns the session's state (any JSON value) once its requests here have finished and new ones are held.
   * @param session - the session handle (the gateway's key id)
   * @returns the state, or `null`/`undefined` when the app has no such session
   */
  exportSession (session: string): unknown | Promise<unknown>
  /**
   * Takes a session's state exported by another upstream; the session's requests come here once it resolves.
   * @param session - the session handle
   * @param state - what the other upstream's `exportSession` returned
   */
  importSession (session: string, state: unknown): void | Promise<void>
  /**
   * Forgets a session that moved to another upstream (after the gateway's commit). A failure is logged, not answered:
   * the gateway has already rebound the session.
   * @param session - the session handle
   */
  dropSession? (session: string): void | Promise<void>
  /**
   * Where the handoff endpoints are served (`POST <path>/export`, ...): must match the gateways' setting.
   * @defaultValue `'/.well-known/sticky-handoff'`
   */
  path?: string
  /**
   * Largest JSON-serialised state, in bytes: a bigger export is answered 413 `too-large`, a bigger import body 413.
   * @defaultValue 1048576 (1 MiB)
   */
  maxStateBytes?: number
  /**
   * Longest wait for a session's requests in flight to finish before an export gives up (409 `busy`), for each of
   * the app's callbacks (500 `failed`), and the longest hold an export may ask for: ms, or a string such as `'5s'`.
   * @defaultValue 5000
   */
  timeout?: Duration
}

/** {@link StickyUpstreamOptions} checked, with every default filled in. */
export interface ResolvedUpstreamOptions {
  readonly secret: string
  readonly exportSession: (session: string) => unknown
  readonly importSession: (session: string, state: unknown) => unknown
  readonly dropSession: ((session: string) => unknown) | undefined
  readonly path: string
  readonly maxStateBytes: number
  readonly timeoutMs: number
}

const KNOWN_KEYS = new Set(['secret', 'exportSession', 'importSession', 'dropSession', 'path', 'maxStateBytes', 'timeout'])

// Segments only: no `:` or `*`, which Fastify would read as route parameters, no query, no trailing slash.
const PATH_RE = /^(?:\/[A-Za-z0-9._~-]+)+$/

function describe (value: unknown): string {
  if (typeof value === 'function') return 'a function'
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value)
  if (typeof value === 'bigint' || typeof value === 'symbol') return String(value)
  if (value === undefined) return 'undefined'
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return Object.prototype.toString.call(value)
  }
}

function fail (option: string, expectation: string, got: string): never {
  throw new InvalidOptionError(`upstream.${option} must be ${expectation}, got ${got}`)
}

/**
 * Checks the options of `fastify-sticky/upstream` and fills in the defaults. Never mutates `input`.
 * @param input - the options as given
 * @returns frozen options
 * @throws FST_STICKY_INVALID_OPTION naming the option (`upstream.secret`, ...), the expectation and the value (never
 *   the secret's)
 */
export function resolveUpstreamOptions (input: StickyUpstreamOptions): ResolvedUpstreamOptions {
  if (input === null || typeof input !== 'object') {
    throw new InvalidOptionError(`upstream options must be an object, got ${describe(input)}`)
  }
  for (const key of Object.keys(input)) {
    if (!KNOWN_KEYS.has(key)) throw new InvalidOptionError(`upstream.${key} is not an option (known: ${[...KNOWN_KEYS].join(', ')})`)
  }
  const { secret, exportSession, importSession, dropSession, path, maxStateBytes, timeout } = input
  if (typeof secret !== 'string') fail('secret', `a string of at least ${MIN_HANDOFF_SECRET_LENGTH} characters`, typeof secret)
  if (secret.length < MIN_HANDOFF_SECRET_LENGTH) {
    // The secret's own characters stay out of the message: it lands in logs.
    fail('secret', `a string of at least ${MIN_HANDOFF_SECRET_LENGTH} characters`, `${secret.length} characters`)
  }
  if (typeof exportSession !== 'function') fail('exportSession', 'a function', describe(exportSession))
  if (typeof importSession !== 'function') fail('importSession', 'a function', describe(importSession))
  if (dropSession !== undefined && typeof dropSession !== 'function') fail('dropSession', 'a function', describe(dropSession))
  if (path !== undefined && (typeof path !== 'string' || !PATH_RE.test(path))) {
    fail('path', 'an absolute path of plain segments without a trailing slash (such as "/.well-known/sticky-handoff")', describe(path))
  }
  if (maxStateBytes !== undefined && (typeof maxStateBytes !== 'number' || !Number.isSafeInteger(maxStateBytes) || maxStateBytes <= 0)) {
    fail('maxStateBytes', 'a positive integer (bytes)', describe(maxStateBytes))
  }
  const timeoutMs = timeout === undefined ? DEFAULT_HANDOFF_TIMEOUT_MS : parseDuration(timeout)
  if (timeoutMs === undefined) fail('timeout', 'a positive duration (ms, or a string such as "5s")', describe(timeout))
  return Object.freeze({
    secret,
    exportSession: exportSession.bind(input),
    importSession: importSession.bind(input),
    dropSession: dropSession?.bind(input),
    path: path ?? DEFAULT_HANDOFF_PATH,
    maxStateBytes: maxStateBytes ?? DEFAULT_MAX_STATE_BYTES,
    timeoutMs
  })
}
