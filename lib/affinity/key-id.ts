/**
 * Key ids: what the store sees instead of a raw affinity key. A keyed hash (HMAC-SHA256 under the store's
 * shared salt), so raw keys never reach Redis and every gateway derives the same id from the same key.
 */
import { createHmac } from 'node:crypto'

/** Characters of a key id: 16 base64url characters carry 96 bits, enough to make collisions negligible. */
export const KEY_ID_LENGTH = 16

/** Derives key ids from raw keys. */
export type KeyIdDeriver = (rawKey: string) => string

/**
 * @param salt - the store's shared salt
 * @returns a function mapping a raw key to its key id
 */
export function createKeyIdDeriver (salt: string): KeyIdDeriver {
  return (rawKey) => createHmac('sha256', salt).update(rawKey).digest('base64url').slice(0, KEY_ID_LENGTH)
}
