/**
 * The budget of new bindings: token buckets per client address and per gateway process. A binding costs store memory
 * for as long as its client keeps it alive, and a client makes a new one with any request without a cookie (or with
 * a fresh header value), so the rate at which they are written is bounded here; over budget, a request is served
 * without a stored binding. Framework-free: it is given the client address the front door computed.
 */
import net from 'node:net'
import type { ResolvedBindingRate, ResolvedNewBindings } from '../options/new-bindings'
import { ipPrefixKey } from './keys'
import { LruMap } from '../lru-map'

/**
 * Client addresses whose buckets are remembered. A bucket left alone refills and is then the same as none, so the
 * table needs only the clients of the last window; an attacker rotating through more addresses than this gets fresh
 * buckets, and meets the per-gateway budget instead. About 2 MB when full (~180 bytes a client).
 */
export const TRACKED_CLIENTS = 10_000

/** Which budget refused a new binding. */
export type BudgetRefusal = 'client' | 'gateway'

// Addresses that are not IP addresses (a custom front door, a garbled forwarded header behind a trusting proxy) share
// one bucket: real clients have real addresses, so only junk is held together.
const NOT_AN_ADDRESS = 'other'

interface Bucket {
  tokens: number
  at: number
  /** When this bucket last refused a binding (`-Infinity`: never). */
  refusedAt: number
}

function refill (bucket: Bucket, rate: ResolvedBindingRate, now: number): void {
  if (now > bucket.at) bucket.tokens = Math.min(rate.burst, bucket.tokens + (now - bucket.at) * rate.rate / rate.perMs)
  bucket.at = now
}

/**
 * The client of a request as the budget counts it: its IPv4 address, or its IPv6 /64 (one site or device, whose
 * interface ids rotate), IPv4-mapped IPv6 counted as IPv4.
 * @param address - the client address (`request.ip`), if any
 * @returns the bucket key, or `undefined` when there is no address (then only the gateway budget applies)
 */
export function budgetClientKey (address: string | undefined): string | undefined {
  if (address === undefined || address === '') return undefined
  // A valid dotted quad is already its own /32 (no leading zeros pass isIP): skip the masking on the common path.
  if (net.isIP(address) === 4) return '4:' + address + '/32'
  return ipPrefixKey(address, 32, 64) ?? NOT_AN_ADDRESS
}

/** Token buckets of new bindings; one instance per plugin registration (so per gateway process). */
export class NewBindingBudget {
  /** How long a new binding on probation counts against its upstream before its client returns, in ms. */
  readonly probationHoldMs: number
  readonly #perClient: ResolvedBindingRate | false
  readonly #perGateway: ResolvedBindingRate | false
  readonly #clients: LruMap<string, Bucket>
  readonly #gateway: Bucket
  // When any client's bucket last refused: lets refusedWithin() answer most requests without computing a key.
  #clientRefusedAt = -Infinity

  /**
   * @param options - the resolved `newBindings` option
   * @param trackedClients - client buckets kept at most (least recently used dropped first)
   */
  constructor (options: ResolvedNewBindings, trackedClients = TRACKED_CLIENTS) {
    this.probationHoldMs = options.probationHoldMs
    this.#perClient = options.perClient
    this.#perGateway = options.perGateway
    this.#clients = new LruMap(options.perClient === false ? 0 : trackedClients)
    this.#gateway = { tokens: options.perGateway === false ? 0 : options.perGateway.burst, at: Date.now(), refusedAt: -Infinity }
  }

  /** Client buckets held now (bounded by the table's size). */
  get trackedClients (): number {
    return this.#clients.size
  }

  /**
   * Takes one new binding from the client's bucket and the gateway's, or from neither when either is empty (a refused
   * binding costs nothing, so a client held back by the gateway keeps its own budget).
   * @param client - the client address as the front door computed it (`request.ip`), if any
   * @param now - the time, in ms since the epoch
   * @returns `undefined` when the binding may be made, or which budget refused it
   */
  take (client: string | undefined, now = Date.now()): BudgetRefusal | undefined {
    let bucket: Bucket | undefined
    if (this.#perClient !== false) {
      const key = budgetClientKey(client)
      if (key !== undefined) {
        bucket = this.#clients.get(key)
        if (bucket === undefined) {
          bucket = { tokens: this.#perClient.burst, at: now, refusedAt: -Infinity }
          this.#clients.set(key, bucket)
        } else {
          refill(bucket, this.#perClient, now)
        }
        if (bucket.tokens < 1) {
          bucket.refusedAt = now
          this.#clientRefusedAt = now
          return 'client'
        }
      }
    }
    if (this.#perGateway !== false) {
      refill(this.#gateway, this.#perGateway, now)
      if (this.#gateway.tokens < 1) {
        this.#gateway.refusedAt = now
        return 'gateway'
      }
      this.#gateway.tokens--
    }
    if (bucket !== undefined) bucket.tokens--
    return undefined
  }

  /**
   * Whether a binding of this client may have been refused lately (its own budget, or the gateway's, refused one
   * within `windowMs`): a key served unbound then must be bound later where it was served, not where the balancer
   * would put a new one. Does not take or look at tokens.
   * @param client - the client address, as given to {@link NewBindingBudget.take}
   * @param windowMs - how far back to look (the route's idle timeout: an unbound key may be back that late)
   * @param now - the time, in ms since the epoch
   */
  refusedWithin (client: string | undefined, windowMs: number, now = Date.now()): boolean {
    if (now - this.#gateway.refusedAt < windowMs) return true
    if (now - this.#clientRefusedAt >= windowMs) return false
    const key = budgetClientKey(client)
    if (key === undefined) return false
    const bucket = this.#clients.get(key)
    return bucket !== undefined && now - bucket.refusedAt < windowMs
  }
}
