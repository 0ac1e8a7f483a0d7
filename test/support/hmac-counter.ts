/**
 * Counts HMAC-SHA256 computations while installed: a `crypto.createHmac` call (@fastify/cookie's signer, and ours for
 * a non-ASCII secret), or the outer hash of our signer's own construction (lib/affinity/cookie-signer.ts: one
 * `crypto.hash` of a 96-byte buffer per HMAC; key ids hash strings, so they are not counted).
 */
import crypto from 'node:crypto'

/** A running count; `restore()` puts the originals back. */
export interface HmacCounter {
  readonly count: number
  restore (): void
}

/** @returns a counter, counting from now until `restore()` */
export function countHmacs (): HmacCounter {
  const { createHmac, hash } = crypto
  let count = 0
  crypto.createHmac = ((...args: Parameters<typeof crypto.createHmac>) => {
    count++
    return createHmac(...args)
  }) as typeof crypto.createHmac
  crypto.hash = ((...args: Parameters<typeof crypto.hash>) => {
    if (Buffer.isBuffer(args[1]) && args[1].length === 96) count++
    return hash(...args)
  }) as typeof crypto.hash
  return {
    get count () { return count },
    restore () {
      crypto.createHmac = createHmac
      crypto.hash = hash
    }
  }
}
