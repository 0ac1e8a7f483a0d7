/**
 * The routing cookie's signature: HMAC-SHA256 of the value, base64 without padding, after a dot — the format of
 * @fastify/cookie's signer, so cookies signed before keep verifying. Its own code for one reason: that signer hands
 * the secret string to `createHmac` on every call, and Node turns it into a key object each time, a quarter of the
 * cost of a signature here; these key objects are made once.
 */
import { createHmac, createSecretKey, timingSafeEqual, type KeyObject } from 'node:crypto'

/** What {@link CookieSigner.unsign} found. */
export interface UnsignResult {
  readonly valid: boolean
  /** Signed with a secret other than the first (re-issue it with the first). */
  readonly renew: boolean
  /** The value without its signature, `null` when not valid. */
  readonly value: string | null
}

/** Signs with the first secret, verifies with every one. */
export interface CookieSigner {
  sign (value: string): string
  unsign (signed: string): UnsignResult
}

const INVALID: UnsignResult = Object.freeze({ valid: false, renew: false, value: null })

function signature (key: KeyObject, value: string): string {
  const digest = createHmac('sha256', key).update(value).digest('base64')
  // Base64 of 32 bytes ends in exactly one '=', which has a meaning of its own in cookies.
  return digest.slice(0, digest.indexOf('='))
}

/** @param secrets - newest first, at least one */
export function createCookieSigner (secrets: readonly string[]): CookieSigner {
  const keys = secrets.map((secret) => createSecretKey(Buffer.from(secret, 'utf8')))
  return {
    sign: (value) => value + '.' + signature(keys[0], value),
    unsign (signed) {
      const dot = signed.lastIndexOf('.')
      if (dot === -1 || dot === signed.length - 1) return INVALID
      const value = signed.slice(0, dot)
      const actual = Buffer.from(signed.slice(dot + 1))
      for (let i = 0; i < keys.length; i++) {
        const expected = Buffer.from(signature(keys[i], value))
        if (expected.length === actual.length && timingSafeEqual(expected, actual)) return { valid: true, renew: i > 0, value }
      }
      return INVALID
    }
  }
}
