/**
 * Binding reads of one event-loop turn sent as one `MGET`: the hit path's Redis cost is mostly not Redis but the
 * client's, one command object, one timer and one socket write per request (a CPU profile of the hit path puts
 * ioredis's `sendCommand` at ~13 % of all samples). Requests that arrive together (a gateway under load reads
 * several client sockets per turn) share all three. Not ioredis's auto-pipelining: that sends one batch at a time
 * and starts a command's timeout only when its batch goes out, so behind a stalled Redis a read could wait twice
 * the command timeout; here each batch is written at once, with the client's own timeout, and no batch waits for
 * another.
 */

/** Sends the reads of a batch: one reply per key, in order (`null` for a missing key). */
export type MultiGet = (keys: string[]) => Promise<Array<string | null>>

interface PendingRead {
  readonly resolve: (value: string | null) => void
  readonly reject: (error: unknown) => void
}

/** Most keys in one `MGET`: beyond it a turn's reads go as several (a huge reply would hold Redis up for others). */
export const MAX_BATCH_KEYS = 128

/** Collects `GET`s until the event loop's check phase, then sends them as one `MGET` (one command for one key). */
export class ReadBatch {
  readonly #send: MultiGet
  readonly #single: (key: string) => Promise<string | null>
  #keys: string[] = []
  #pending: PendingRead[] = []
  #scheduled = false
  // Off from the start on a Cluster client; off for good once the server refuses a batch across hash slots: a
  // cluster-mode Redis reached through a plain client (a managed "serverless" Redis, a one-node cluster), where
  // each binding's shard is a slot of its own.
  #batching: boolean
  // A batch sent early because it was full leaves this flush scheduled: it then sends what came after.
  readonly #flush = (): void => {
    this.#scheduled = false
    this.#sendAll()
  }

  /**
   * @param send - sends several keys as one command
   * @param single - sends one key (a batch of one is a plain `GET`, as it always was)
   * @param batching - `false` sends every read alone (a Cluster client: the keys of a batch live in different slots)
   */
  constructor (send: MultiGet, single: (key: string) => Promise<string | null>, batching = true) {
    this.#send = send
    this.#single = single
    this.#batching = batching
  }

  /** @returns the key's value, read with the other reads of this turn */
  get (key: string): Promise<string | null> {
    if (!this.#batching) return this.#single(key)
    return new Promise((resolve, reject) => {
      this.#keys.push(key)
      this.#pending.push({ resolve, reject })
      if (this.#keys.length >= MAX_BATCH_KEYS) {
        this.#sendAll()
        return
      }
      if (!this.#scheduled) {
        this.#scheduled = true
        // The check phase comes after the poll phase has read every socket that was ready: one batch per turn.
        setImmediate(this.#flush)
      }
    })
  }

  #sendAll (): void {
    const keys = this.#keys
    const pending = this.#pending
    this.#keys = []
    this.#pending = []
    if (keys.length === 0) return
    if (keys.length === 1) {
      this.#single(keys[0]).then(pending[0].resolve, pending[0].reject)
      return
    }
    this.#send(keys).then((values) => {
      for (let i = 0; i < pending.length; i++) pending[i].resolve(values[i] ?? null)
    }, (error: unknown) => {
      if (isCrossSlot(error)) {
        this.#batching = false
        for (let i = 0; i < pending.length; i++) this.#single(keys[i]).then(pending[i].resolve, pending[i].reject)
        return
      }
      for (const read of pending) read.reject(error)
    })
  }
}

function isCrossSlot (error: unknown): boolean {
  const message = (error as { message?: unknown } | null)?.message
  return typeof message === 'string' && message.startsWith('CROSSSLOT')
}
