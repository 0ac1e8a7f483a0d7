/**
 * The `newBindings` option: how many new bindings clients may make (token buckets per client address and per
 * gateway), and how long a binding whose client has not come back counts against its upstream. Errors name the
 * dotted option path.
 */
import { parseDuration, type Duration } from '../duration'
import { checkKeys, fail, isRecord } from './checks'

/**
 * Default per-client budget: 30 new bindings a minute per address (IPv6: per /64). A browser makes one per pool and
 * keeps it; only a client that drops its cookies on every request (a script, a bot) or a large NAT comes near it.
 */
export const DEFAULT_NEW_BINDINGS_PER_CLIENT = Object.freeze({ rate: 30, perMs: 60_000, burst: 30 })
/**
 * Default per-gateway budget: 1,000 new bindings a second per gateway process, above what one process serves in new
 * sessions in practice; it bounds what many addresses together can write (see docs/choices-and-limits.md "What a binding costs").
 */
export const DEFAULT_NEW_BINDINGS_PER_GATEWAY = Object.freeze({ rate: 1000, perMs: 1000, burst: 1000 })
/**
 * Default time a new binding counts against its upstream's `maxSessions` (and in least-sessions balancing) before
 * its client comes back: longer than a browser takes for its next request, short against the probation TTL.
 */
export const DEFAULT_PROBATION_HOLD_MS = 10_000

/** A token bucket: `rate` new bindings per `per` on average, at most `burst` at once. */
export interface StickyBindingRateOptions {
  /** New bindings allowed per `per` (a positive integer). */
  rate: number
  /** The window `rate` is counted over. @defaultValue `'1m'` per client, `'1s'` per gateway */
  per?: Duration
  /** Most new bindings at once, after a quiet spell (the bucket's size). @defaultValue `rate` */
  burst?: number
}

/**
 * How many new bindings may be made. Over a budget, a request is still served (the routing cookie still names its
 * upstream, other keys are placed by rendezvous hashing) but nothing is written to the store. `false` turns both
 * budgets off.
 */
export interface StickyNewBindingsOptions {
  /**
   * Per client address (`request.ip`, so `trustProxy` decides which address that is; IPv6 grouped by /64).
   * @defaultValue `{ rate: 30, per: '1m' }`
   */
  perClient?: StickyBindingRateOptions | false
  /**
   * Per gateway process, all clients together.
   * @defaultValue `{ rate: 1000, per: '1s' }`
   */
  perGateway?: StickyBindingRateOptions | false
  /**
   * How long a new binding whose client has not come back yet counts against its upstream's `maxSessions` and in
   * least-sessions balancing (it still routes its client for the 60 s probation); its client's return counts it
   * again. One-off clients therefore hold at most (new bindings a second) × this of the slots. `0`: not at all.
   * @defaultValue `'10s'`
   */
  probationHold?: Duration | 0
}

/** A token bucket after validation. */
export interface ResolvedBindingRate {
  readonly rate: number
  readonly perMs: number
  readonly burst: number
}

/** `newBindings` after validation. */
export interface ResolvedNewBindings {
  readonly perClient: ResolvedBindingRate | false
  readonly perGateway: ResolvedBindingRate | false
  readonly probationHoldMs: number
}

const KEYS = ['perClient', 'perGateway', 'probationHold']
const RATE_KEYS = ['rate', 'per', 'burst']

function resolveRate (path: string, input: unknown, fallback: ResolvedBindingRate): ResolvedBindingRate | false {
  if (input === undefined) return fallback
  if (input === false) return false
  if (!isRecord(input)) fail(path, 'false or an object { rate, per?, burst? }', input)
  checkKeys(path, input, RATE_KEYS, (p) => fail(p, `absent (known: ${RATE_KEYS.join(', ')})`, input[p.slice(path.length + 1)]))
  const rate = input.rate
  if (!Number.isSafeInteger(rate) || (rate as number) < 1) fail(`${path}.rate`, 'a positive integer', rate)
  const perMs = input.per === undefined ? fallback.perMs : parseDuration(input.per)
  if (perMs === undefined) fail(`${path}.per`, "a positive duration (ms as a number, or a string like '1s', '1m')", input.per)
  const burst = input.burst ?? rate
  if (!Number.isSafeInteger(burst) || (burst as number) < 1) fail(`${path}.burst`, 'a positive integer', burst)
  return Object.freeze({ rate: rate as number, perMs, burst: burst as number })
}

/**
 * Validates `newBindings`.
 * @param input - the option as given (`undefined`: the defaults)
 * @returns frozen budgets and probation hold
 * @throws FST_STICKY_INVALID_OPTION naming `newBindings` or the key below it
 */
export function resolveNewBindings (input: unknown): ResolvedNewBindings {
  if (input === false) return Object.freeze({ perClient: false, perGateway: false, probationHoldMs: DEFAULT_PROBATION_HOLD_MS })
  const options = input ?? {}
  if (!isRecord(options)) fail('newBindings', `false or an object { ${KEYS.join(', ')} }`, input)
  checkKeys('newBindings', options, KEYS, (p) => fail(p, `absent (known: ${KEYS.join(', ')})`, options[p.slice(12)]))
  const hold = options.probationHold
  const probationHoldMs = hold === undefined ? DEFAULT_PROBATION_HOLD_MS : hold === 0 ? 0 : parseDuration(hold)
  if (probationHoldMs === undefined) fail('newBindings.probationHold', "0 or a positive duration (ms as a number, or a string like '10s')", hold)
  return Object.freeze({
    perClient: resolveRate('newBindings.perClient', options.perClient, DEFAULT_NEW_BINDINGS_PER_CLIENT),
    perGateway: resolveRate('newBindings.perGateway', options.perGateway, DEFAULT_NEW_BINDINGS_PER_GATEWAY),
    probationHoldMs
  })
}
