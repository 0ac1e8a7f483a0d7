/**
 * Key ids: what the store sees instead of a raw affinity key. A keyed hash — SHA-256 over the store's shared
 * secret salt and the key — so raw keys never reach Redis and every gateway derives the same id from the same
 * key. One-shot `crypto.hash` costs about a sixth of an HMAC object here, and the request path already pays for
 * one HMAC (the cookie signature); with a secret salt of fixed length prefixed, it serves the same purpose.
 */
import { hash } from 'node:crypto'
import { LruMap } from '../lru-map'

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
  // Returning clients bring the same key on every request: remembering recent ids spares a hash each time.
  readonly #recent: LruMap<string, string>

  /**
   * @param loadSalt - reads (or creates) the store's shared salt
   * @param cacheSize - how many recent key ids to remember (0: none)
   */
  constructor (loadSalt: () => Promise<string>, cacheSize = RECENT_KEY_IDS) {
    this.#loadSalt = loadSalt
    this.#recent = new LruMap(cacheSize)
  }

  /** Uses a salt the store reports as changed. */
  useSalt (salt: string): void {
    this.#use(createKeyIdDeriver(salt))
  }

  /** Loads the salt; concurrent calls share one load; rejects while the store is unreachable. */
  load (): Promise<void> {
    this.#loading ??= this.#loadSalt().then((salt) => { this.#use(createKeyIdDeriver(salt)) })
      .finally(() => { this.#loading = undefined })
    return this.#loading
  }

  /**
   * @param remember - keep the id for the next request with this key (`false` for keys that will not come back
   *   the same way, such as a brand-new binding id, so a flood of new clients does not push returning ones out)
   * @returns the key id of a raw key, or `undefined` while the salt is not known yet (a load is started)
   */
  derive (rawKey: string, remember = true): string | undefined {
    if (this.#derive === undefined) {
      this.load().catch(() => {})
      return undefined
    }
    let keyId = this.#recent.get(rawKey)
    if (keyId === undefined) {
      keyId = this.#derive(rawKey)
      // Keys of any length reach here (a key source caps them at MAX_KEY_LENGTH); only short ones are kept, so
      // the memory the cache holds stays bounded by its entry count.
      if (remember && rawKey.length <= RECENT_KEY_MAX_LENGTH) this.#recent.set(rawKey, keyId)
    }
    return keyId
  }

  #use (derive: KeyIdDeriver): void {
    this.#derive = derive
    this.#recent.clear()
  }
}

/** Key ids remembered by default (about 2 MB at the longest keys kept). */
const RECENT_KEY_IDS = 10_000
const RECENT_KEY_MAX_LENGTH = 128
