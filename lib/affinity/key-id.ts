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

/**
 * Key ids over a salt that lives in the store. When the store cannot be reached at start the salt is loaded
 * later, in the background, and until then no key id can be derived (requests route degraded meanwhile).
 */
export class StoreKeyIds {
  readonly #loadSalt: () => Promise<string>
  #derive: KeyIdDeriver | undefined
  #loading: Promise<void> | undefined

  /** @param loadSalt - reads (or creates) the store's shared salt */
  constructor (loadSalt: () => Promise<string>) {
    this.#loadSalt = loadSalt
  }

  /** Uses a salt the store reports as changed. */
  useSalt (salt: string): void {
    this.#derive = createKeyIdDeriver(salt)
  }

  /** Loads the salt; concurrent calls share one load; rejects while the store is unreachable. */
  load (): Promise<void> {
    this.#loading ??= this.#loadSalt().then((salt) => { this.#derive = createKeyIdDeriver(salt) })
      .finally(() => { this.#loading = undefined })
    return this.#loading
  }

  /**
   * @returns the key id of a raw key, or `undefined` while the salt is not known yet (a load is started)
   */
  derive (rawKey: string): string | undefined {
    if (this.#derive !== undefined) return this.#derive(rawKey)
    this.load().catch(() => {})
    return undefined
  }
}
