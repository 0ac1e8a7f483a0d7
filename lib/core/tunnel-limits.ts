/**
 * Caps on WebSocket tunnels: each open (or opening) tunnel holds two sockets and a file descriptor each for up to
 * its idle timeout, so one client must not be able to hold them all. Counted from the upgrade's first attempt to
 * the client socket's close, retries on other upstreams included.
 */

/** Why a tunnel was refused. */
export type TunnelRefusal = 'gateway' | 'client'

/** Counts open tunnels, in all and per client address. */
export class TunnelLimits {
  readonly #max: number
  readonly #maxPerClient: number
  readonly #perClient = new Map<string, number>()
  #open = 0

  constructor (max: number, maxPerClient: number) {
    this.#max = max
    this.#maxPerClient = maxPerClient
  }

  /** Tunnels open or opening now. */
  get open (): number {
    return this.#open
  }

  /**
   * Takes a place for one tunnel of `client`.
   * @returns a release function (idempotent) to call when the client socket closes, or why there is no place
   */
  acquire (client: string): (() => void) | TunnelRefusal {
    if (this.#open >= this.#max) return 'gateway'
    const held = this.#perClient.get(client) ?? 0
    if (held >= this.#maxPerClient) return 'client'
    this.#open++
    this.#perClient.set(client, held + 1)
    let released = false
    return () => {
      if (released) return
      released = true
      this.#open--
      const left = (this.#perClient.get(client) ?? 1) - 1
      // Entries exist only while a client holds tunnels: the map is bounded by the gateway cap.
      if (left <= 0) this.#perClient.delete(client)
      else this.#perClient.set(client, left)
    }
  }
}
