/**
 * The `handoff` option: planned session moves that carry a session's state from one upstream to another through
 * the upstream apps' `fastify-sticky/upstream` endpoints. Errors name the dotted option path.
 */
import { DEFAULT_HANDOFF_PATH, MIN_HANDOFF_SECRET_LENGTH } from '../core/handoff-protocol'
import type { Duration } from '../duration'
import { checkKeys, duration, fail, isRecord, positiveInteger } from './checks'

/** Default longest wait for one handoff step (export, import, commit) at an upstream. */
export const DEFAULT_HANDOFF_TIMEOUT_MS = 5_000
/** Default longest time a moving session's requests are held at its old upstream before it serves them itself. */
export const DEFAULT_HANDOFF_HOLD_MS = 500
/** Default number of sessions an evacuation or a rebalance moves at once. */
export const DEFAULT_HANDOFF_CONCURRENCY = 8
/** Default largest session state taken from an export, in bytes. */
export const DEFAULT_HANDOFF_MAX_STATE_BYTES = 1024 * 1024

/** Session handoff between upstreams (see docs/handoff.md). */
export interface StickyHandoffOptions {
  /** Shared with every upstream's `fastify-sticky/upstream`, at least 32 characters (sent as a bearer token). */
  secret: string
  /** Where the upstreams serve the handoff endpoints; the gateway never forwards a client there. @defaultValue `'/.well-known/sticky-handoff'` */
  path?: string
  /** Longest wait for one step at an upstream. @defaultValue `'5s'` */
  timeout?: Duration
  /** Longest a moving session's requests wait at its old upstream; past it, the move is given up. @defaultValue `'500ms'` */
  hold?: Duration
  /** Sessions an evacuation or a rebalance moves at once. @defaultValue 8 */
  concurrency?: number
  /** Largest session state accepted from an export, in bytes. @defaultValue 1 MiB */
  maxStateBytes?: number
}

/** `handoff` after validation. */
export interface ResolvedHandoff {
  readonly secret: string
  readonly path: string
  readonly timeoutMs: number
  readonly holdMs: number
  readonly concurrency: number
  readonly maxStateBytes: number
}

const HANDOFF_KEYS = ['secret', 'path', 'timeout', 'hold', 'concurrency', 'maxStateBytes']

/**
 * @returns the validated settings, or `undefined` when handoff is off
 * @throws FST_STICKY_INVALID_OPTION naming `handoff.…` (never echoing the secret)
 */
export function resolveHandoff (input: unknown): ResolvedHandoff | undefined {
  if (input === undefined || input === false) return undefined
  if (!isRecord(input)) fail('handoff', 'an object { secret, path?, timeout?, hold?, concurrency?, maxStateBytes? }', input)
  checkKeys('handoff', input, HANDOFF_KEYS, (p) => fail(p, `absent (known: ${HANDOFF_KEYS.join(', ')})`, input[p.slice(8)]))
  const secret = input.secret
  if (typeof secret !== 'string' || secret.length < MIN_HANDOFF_SECRET_LENGTH) {
    fail('handoff.secret', `a string of at least ${MIN_HANDOFF_SECRET_LENGTH} characters`, typeof secret === 'string' ? `${secret.length} characters` : typeof secret)
  }
  const path = input.path ?? DEFAULT_HANDOFF_PATH
  if (typeof path !== 'string' || !/^(\/[A-Za-z0-9._~-]+)+$/.test(path)) fail('handoff.path', 'a path like "/.well-known/sticky-handoff"', path)
  const timeoutMs = duration('handoff.timeout', input.timeout, DEFAULT_HANDOFF_TIMEOUT_MS)
  const holdMs = duration('handoff.hold', input.hold, DEFAULT_HANDOFF_HOLD_MS)
  if (holdMs > timeoutMs) fail('handoff.hold', `at most handoff.timeout (${timeoutMs} ms)`, input.hold)
  const concurrency = positiveInteger('handoff.concurrency', input.concurrency, DEFAULT_HANDOFF_CONCURRENCY)
  if (concurrency > 256) fail('handoff.concurrency', 'at most 256', concurrency)
  const maxStateBytes = positiveInteger('handoff.maxStateBytes', input.maxStateBytes, DEFAULT_HANDOFF_MAX_STATE_BYTES)
  return Object.freeze({ secret, path, timeoutMs, holdMs, concurrency, maxStateBytes })
}
