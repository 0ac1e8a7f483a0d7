/**
 * Key ids: what the store sees instead of a raw affinity key. A keyed hash — SHA-256 over the store's shared
 * secret salt and the key — so raw keys never reach Redis and every gateway derives the same id from the same
 * key. One-shot `crypto.hash` costs about a sixth of an HMAC object here, and the request path already pays for
 * one HMAC (the cookie signature); with a secret salt of fixed length prefixed, it serves the same purpose.
 */
import { hash } from 'node:crypto'

/** Characters of a key id: 16 base64url characters carry 96 bits, enough to make collisions negligible. */
export const KEY_ID_LENGTH = 16

/** Derives key ids from raw keys. */
export type KeyIdDeriver = (rawKey: string) => string

/**
 * @param salt - the store's shared salt
 * @returns a function mapping a raw key to its key id
 */
export function createKeyIdDeriver (salt: string): KeyIdDeriver {
  const prefix = salt + '\0'
  return (rawKey) => hash('sha256', prefix + rawKey, 'base64url').slice(0, KEY_ID_LENGTH)
}
