/**
 * The key-id salt every gateway on one Redis prefix shares: written once with SET NX (the first gateway's wins),
 * read back by the others, and put back whenever Redis lost it (restarted empty, flushed). When another gateway's
 * salt got there first, this one adopts it and says so, since key ids must then be derived anew.
 */
import { randomBytes } from 'node:crypto'
import type Redis from 'ioredis'
import type { Cluster } from 'ioredis'

/** How often the shared salt is checked (and written back if Redis lost it). */
const SALT_CHECK_INTERVAL_MS = 10_000

/** The shared salt under one key, kept in agreement with Redis on every reconnect and every few seconds. */
export class SharedSalt {
  readonly #client: Redis | Cluster
  readonly #key: string
  readonly #listeners = new Set<(salt: string) => void>()
  readonly #onReady = (): void => { void this.#reassert() }
  #salt: string | undefined
  #timer: NodeJS.Timeout | undefined

  /**
   * Starts re-asserting the salt on every 'ready' of the client.
   * @param client - the store's client
   * @param key - the salt's key
   */
  constructor (client: Redis | Cluster, key: string) {
    this.#client = client
    this.#key = key
    // Redis restarted empty, or flushed: put our salt back, or adopt the one another gateway wrote first.
    this.#client.on('ready', this.#onReady)
  }

  /** Also re-asserts the salt every {@link SALT_CHECK_INTERVAL_MS} (a flush does not reconnect). Idempotent. */
  startChecks (): void {
    this.#timer ??= setInterval(() => { void this.#reassert() }, SALT_CHECK_INTERVAL_MS)
    this.#timer.unref()
  }

  /**
   * Listens for a change of the salt (after Redis lost it and another gateway wrote a new one first).
   * @returns a function that unsubscribes
   */
  onChange (listener: (salt: string) => void): () => void {
    this.#listeners.add(listener)
    return () => { this.#listeners.delete(listener) }
  }

  /**
   * The salt: the one already known, or else the one in Redis, written first when there is none.
   * @returns the salt
   */
  async get (): Promise<string> {
    if (this.#salt !== undefined) return this.#salt
    const candidate = randomBytes(24).toString('base64url')
    // SET NX GET: one round trip; the first gateway's salt wins and every later one reads it back.
    const previous = await this.#client.set(this.#key, candidate, 'NX', 'GET') as string | null
    this.#salt = previous ?? candidate
    return this.#salt
  }

  /** Stops the checks and forgets the listeners. */
  close (): void {
    clearInterval(this.#timer)
    this.#client.off('ready', this.#onReady)
    this.#listeners.clear()
  }

  async #reassert (): Promise<void> {
    const salt = this.#salt
    if (salt === undefined) return
    try {
      const current = await this.#client.set(this.#key, salt, 'NX', 'GET') as string | null
      if (current !== null && current !== salt) {
        this.#salt = current
        for (const listener of this.#listeners) listener(current)
      }
    } catch {
      // Unreachable now; the next 'ready' or check tries again.
    }
  }
}
