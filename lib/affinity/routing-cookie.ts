/**
 * The routing cookie's value: a signed, opaque token that names a binding and the upstream it was bound to.
 * Format before signing: `1.<bindingId>.<upstreamId>.<issuedAt>` — version, 128 random bits (base64url), the
 * upstream's configured id, and when the binding was first made (ms since the epoch, base 36; it lets
 * `maxLifetime` hold even after the store forgot the binding). Never a host, address, port or URL. Signed in @fastify/cookie's HMAC-SHA256 format (./cookie-signer.ts):
 * the first secret signs, every secret verifies.
 */
import { randomFillSync } from 'node:crypto'
import { LruMap } from '../lru-map'
import { createCookieSigner } from './cookie-signer'

/** Verified cookie values remembered per gateway (a few MB at most), so a returning client costs no HMAC. */
export const VERIFIED_CACHE_SIZE = 10_000
/** Longest cookie value examined; anything longer is rejected before any HMAC is computed. */
export const MAX_ROUTING_COOKIE_LENGTH = 256
const TOKEN_VERSION = '1'
const BINDING_ID_RE = /^[A-Za-z0-9_-]{22}$/

/** The contents of a verified routing cookie. */
export interface RoutingToken {
  /** Random id of the binding (22 base64url characters). */
  readonly bindingId: string
  /** The upstream id the binding pointed to when the cookie was issued. */
  readonly upstreamId: string
  /** When the binding was first made, in ms since the epoch. */
  readonly createdAt: number
}

/** Why a routing cookie was not accepted (for counters and debug logs). */
export type RoutingCookieRejection = 'oversized' | 'bad-signature' | 'garbled'

/** A verified routing cookie, or why it was refused. */
export type RoutingCookieCheck =
  | { readonly ok: true, readonly token: RoutingToken, readonly renew: boolean }
  | { readonly ok: false, readonly reason: RoutingCookieRejection }

/** Signs and verifies routing tokens with a rotating list of secrets. */
export interface RoutingCookieCodec {
  /** @returns the signed cookie value for a token */
  sign (token: RoutingToken): string
  /**
   * Verifies a raw cookie value. `renew` is `true` when an older secret signed it, so it should be re-issued.
   * Never throws.
   */
  verify (value: string): RoutingCookieCheck
}

// Random bytes drawn 4 KiB at a time: a 16-byte randomBytes call costs more in call overhead than in entropy, and
// every new session needs one. Each byte is handed out once.
const ID_BYTES = 16
const idPool = Buffer.alloc(ID_BYTES * 256)
let idPoolOffset = idPool.length

/** @returns a new random binding id (128 bits, base64url) */
export function newBindingId (): string {
  if (idPoolOffset + ID_BYTES > idPool.length) {
    randomFillSync(idPool)
    idPoolOffset = 0
  }
  const id = idPool.toString('base64url', idPoolOffset, idPoolOffset + ID_BYTES)
  idPoolOffset += ID_BYTES
  return id
}

/**
 * Builds a codec over the given secrets.
 * @param secrets - first signs, all verify (newest first)
 * @param cacheSize - how many verified values to remember (0: none)
 */
export function createRoutingCookieCodec (secrets: readonly string[], cacheSize = VERIFIED_CACHE_SIZE): RoutingCookieCodec {
  const signer = createCookieSigner(secrets)
  // Returning clients send the same cookie again and again: remembering exact values that verified spares the
  // HMAC on those requests. Only values that verified are kept, so forged ones cannot fill it.
  const verified = new LruMap<string, RoutingCookieCheck>(cacheSize)
  return {
    // A value signed here is not remembered as verified: a flood of new clients would push returning ones out (its
    // client's next request pays the one HMAC, then is remembered).
    sign (token) {
      return signer.sign(TOKEN_VERSION + '.' + token.bindingId + '.' + token.upstreamId + '.' + base36(Math.floor(token.createdAt)))
    },
    verify (value) {
      const known = verified.get(value)
      if (known !== undefined) return known
      if (value.length > MAX_ROUTING_COOKIE_LENGTH) return { ok: false, reason: 'oversized' }
      const result = signer.unsign(value)
      if (!result.valid || result.value === null) return { ok: false, reason: 'bad-signature' }
      const token = parseToken(result.value)
      if (token === null) return { ok: false, reason: 'garbled' }
      const check: RoutingCookieCheck = Object.freeze({ ok: true, token: Object.freeze(token), renew: result.renew })
      verified.set(value, check)
      return check
    }
  }
}

const BASE36_DIGITS = '0123456789abcdefghijklmnopqrstuvwxyz'

/**
 * `n.toString(36)` for a whole number from 0 to 2^53 - 1: V8 writes any radix but 10 through a double-to-string routine
 * with a floating-point remainder per digit (about 1,600 instructions for a timestamp in ms, counted with callgrind,
 * against about 200 here), and every new session writes one.
 */
export function base36 (n: number): string {
  let text = ''
  do {
    // Exact for safe integers: n / 36 is below 2^48, where half a unit in the last place (2^-6) is less than the
    // 1/36 that the quotient of n = 36k - 1 falls short of k, so it never rounds up to the next whole number.
    const rest = Math.floor(n / 36)
    text = BASE36_DIGITS[n - rest * 36] + text
    n = rest
  } while (n > 0)
  return text
}

// A validly signed token is garbled only if its format changed between versions; checked anyway so a token
// of another version is refused cleanly rather than misread.
function parseToken (payload: string): RoutingToken | null {
  const parts = payload.split('.')
  if (parts.length !== 4 || parts[0] !== TOKEN_VERSION || !BINDING_ID_RE.test(parts[1]) || parts[2].length === 0) return null
  const createdAt = parseInt(parts[3], 36)
  if (!/^[0-9a-z]{1,11}$/.test(parts[3]) || !Number.isSafeInteger(createdAt)) return null
  return { bindingId: parts[1], upstreamId: parts[2], createdAt }
}
