/**
 * Keeps a pool's membership in step with what DNS discovery finds: a new address is added (least-sessions fills it),
 * a vanished one is drained (its bound sessions stay while it answers) and removed once it has none left, and one
 * that comes back is the same upstream again (its id is derived from its address). Every gateway on one store
 * derives the same ids from the same addresses, so their changes agree.
 */
import { createHmac } from 'node:crypto'
import type { CoreLogger } from '../core/logger'
import type { StickyPool } from '../core/sticky-api'
import type { ResolvedUpstream } from '../options'
import { fail } from '../options/checks'
import { canonicalAddress, type DiscoveredAddress } from './dns-discovery'

/** What a discovered upstream's id looks like: `d` and 12 characters of a keyed hash. */
export const DISCOVERED_ID_RE = /^d[A-Za-z0-9_-]{12}$/

/**
 * The id of a discovered upstream: the same for the same address on every gateway sharing the store, and for an
 * address that vanished and came back; it reveals neither the address nor the port (it goes into routing cookies).
 * @param salt - the store's shared salt (`app.sticky.store.sharedSalt()`), the key of the hash
 * @param pool - the pool's name (one address in two pools is two upstreams)
 * @param address - an IP address (any textual form; IPv6 with or without brackets)
 * @param port - its port
 * @returns `d` + 12 base64url characters of HMAC-SHA256(salt, `pool|address|port`)
 * @throws TypeError for an empty salt or a port that is not 1-65535
 */
export function discoveredUpstreamId (salt: string, pool: string, address: string, port: number): string {
  if (typeof salt !== 'string' || salt === '') throw new TypeError('discoveredUpstreamId: the salt must be a non-empty string')
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new TypeError(`discoveredUpstreamId: the port must be 1-65535, got ${String(port)}`)
  const mac = createHmac('sha256', salt).update(`${pool}|${canonicalAddress(address)}|${port}`).digest('base64url')
  return `d${mac.slice(0, 12)}`
}

/** Options of {@link DiscoveredPool}. */
export interface DiscoveredPoolOptions {
  /** The weight every discovered upstream is added with. @defaultValue 1 */
  readonly weight?: number
  /**
   * How long a discovered member this gateway has never seen in its own DNS answers must stay unseen before it is
   * drained: another gateway may have seen a new address first, and this one's next lookup may be up to a refresh
   * interval away. Give it at least twice the longest refresh interval.
   * @defaultValue {@link DEFAULT_UNSEEN_GRACE_MS}
   */
  readonly unseenGraceMs?: number
}

/** Default {@link DiscoveredPoolOptions.unseenGraceMs}: two of the longest default refresh intervals, and some. */
export const DEFAULT_UNSEEN_GRACE_MS = 75_000

// Codes that only say another gateway (or an operator) got there first: the wanted state holds anyway.
const ALREADY_DONE = new Set(['FST_STICKY_UPSTREAM_EXISTS', 'FST_STICKY_UNKNOWN_UPSTREAM'])

/**
 * Applies discovered address sets to one pool through its public view, so every change is validated, logged and
 * shared through the store like an operator's. Only members it can prove are discovered (the id is the one
 * {@link discoveredUpstreamId} gives for the member's own URL) are ever drained or removed: static upstreams in the
 * same pool are left alone.
 *
 * Rules, on each apply and each sweep (against the last set applied):
 * - an address that is not a member is added (another gateway adding it first is fine);
 * - a discovered member absent from the set is "vanished": at once when this gateway saw it in an earlier set, else
 *   once it has stayed absent for `unseenGraceMs` (another gateway may have found it first, and this one's DNS may
 *   lag; a member left by a gateway that restarted is cleaned up this way too);
 * - a vanished member that is active (or down) is drained, and remembered as drained by discovery;
 * - a vanished member that is not active and has no live session left is removed, whoever drained it (the gateway
 *   that did may have restarted: its memory is local);
 * - an address drained by discovery that comes back is undrained; one an operator drained stays drained.
 *
 * A store error stops the pass (logged as a warning); the next apply or sweep starts again from the pool as it is
 * then. Passes never throw and run one at a time; a set given while one runs replaces any set still waiting (the
 * latest wins).
 */
export class DiscoveredPool {
  readonly #pool: StickyPool
  readonly #idOf: (address: DiscoveredAddress) => string
  readonly #log: CoreLogger
  readonly #weight: number
  readonly #unseenGraceMs: number
  // Local, so lost on restart: it only decides what discovery may undrain, never what it may remove.
  readonly #drainedByDiscovery = new Set<string>()
  // Ids this gateway's own DNS answers named (current members only, so it stays bounded).
  readonly #seen = new Set<string>()
  // Members never seen here, absent from the set: since when.
  readonly #absentSince = new Map<string, number>()
  #latest: ReadonlyMap<string, DiscoveredAddress> | undefined
  #waiting: readonly DiscoveredAddress[] | undefined
  #sweepWanted = false
  #running: Promise<void> | undefined

  /**
   * @param pool - the pool's view (`app.sticky.pool(name)`)
   * @param idOf - the id of an address, e.g. `(a) => discoveredUpstreamId(salt, pool.name, a.address, a.port)`
   * @param log - where changes (info) and store errors (warn) go
   * @param options - the weight of discovered upstreams, the grace for members never seen here
   * @throws FST_STICKY_INVALID_OPTION for a weight that is not above 0 and at most 1000, or a negative grace
   */
  constructor (pool: StickyPool, idOf: (address: DiscoveredAddress) => string, log: CoreLogger, options: DiscoveredPoolOptions = {}) {
    const weight = options.weight ?? 1
    if (typeof weight !== 'number' || !(weight > 0) || weight > 1000) fail('dns.weight', 'a number above 0 and at most 1000', weight)
    const grace = options.unseenGraceMs ?? DEFAULT_UNSEEN_GRACE_MS
    if (typeof grace !== 'number' || !(grace >= 0) || !Number.isFinite(grace)) fail('dns.unseenGrace', 'a number of ms, 0 or more', grace)
    this.#pool = pool
    this.#idOf = idOf
    this.#log = log
    this.#weight = weight
    this.#unseenGraceMs = grace
  }

  /** Ids this gateway drained because their address left DNS (and may undrain when it returns). */
  get drainedByDiscovery (): ReadonlySet<string> {
    return this.#drainedByDiscovery
  }

  /**
   * Brings the pool in line with a discovered set (see the class for the rules).
   * @param addresses - the whole discovered set (as {@link DnsDiscovery} delivers it; never empty in practice, and
   *   an empty set would drain every discovered member)
   * @returns once this set, or a later one, has been applied (never rejects)
   */
  apply (addresses: readonly DiscoveredAddress[]): Promise<void> {
    this.#waiting = addresses
    return this.#schedule()
  }

  /**
   * Applies the last set again: removes vanished members whose sessions have all ended (sessions end without DNS
   * changing), drains members never seen here once their grace is over, and repairs what a store error or a store
   * that lost its data left undone. For the owner to call on a timer; does nothing before the first apply.
   * @returns once done (never rejects)
   */
  sweep (): Promise<void> {
    this.#sweepWanted = true
    return this.#schedule()
  }

  #schedule (): Promise<void> {
    // Started from a microtask, so `#running` is set before the loop can finish and clear it.
    this.#running ??= Promise.resolve().then(async () => this.#loop())
    return this.#running
  }

  async #loop (): Promise<void> {
    try {
      for (;;) {
        const waiting = this.#waiting
        if (waiting !== undefined) {
          this.#waiting = undefined
          this.#sweepWanted = false
          this.#latest = this.#wantedOf(waiting)
          await this.#reconcile(this.#latest)
        } else if (this.#sweepWanted) {
          this.#sweepWanted = false
          if (this.#latest !== undefined) await this.#reconcile(this.#latest)
        } else {
          return
        }
      }
    } catch (error) {
      // #reconcile catches store errors itself: this is a bug's last stop, not a path.
      this.#log.warn({ pool: this.#pool.name, err: error }, 'fastify-sticky: DNS discovery could not apply a change')
    } finally {
      // Cleared with no await after the last check, so a later apply() always starts a new loop.
      this.#running = undefined
    }
  }

  #wantedOf (addresses: readonly DiscoveredAddress[]): ReadonlyMap<string, DiscoveredAddress> {
    const wanted = new Map<string, DiscoveredAddress>()
    for (const address of addresses) wanted.set(this.#idOf(address), address)
    return wanted
  }

  // Each step reads the pool afresh; a store error ends the pass (the next one starts over).
  async #reconcile (wanted: ReadonlyMap<string, DiscoveredAddress>): Promise<void> {
    for (const id of wanted.keys()) this.#seen.add(id)
    if (!await this.#addAndUndrain(wanted)) return
    const vanished = this.#vanished(wanted)
    if (!await this.#drain(vanished)) return
    await this.#removeEmpty(vanished)
    // Bounded memory: forget what is neither a member nor wanted any more.
    const members = new Set(this.#pool.upstreams.map((u) => u.id))
    for (const set of [this.#drainedByDiscovery, this.#seen]) {
      for (const id of set) if (!members.has(id) && !wanted.has(id)) set.delete(id)
    }
  }

  async #addAndUndrain (wanted: ReadonlyMap<string, DiscoveredAddress>): Promise<boolean> {
    const members = new Set(this.#pool.upstreams.map((u) => u.id))
    for (const [id, address] of wanted) {
      if (!members.has(id)) {
        if (!await this.#change('added (found in DNS)', id, address.url, () => this.#pool.add({ id, url: address.url, weight: this.#weight }))) return false
        this.#drainedByDiscovery.delete(id)
      } else if (this.#drainedByDiscovery.has(id)) {
        const state = this.#pool.state(id)
        if (state === 'draining' || state === 'down') {
          if (!await this.#change('undrained (back in DNS)', id, address.url, () => this.#pool.undrain(id))) return false
        }
        this.#drainedByDiscovery.delete(id)
      }
    }
    return true
  }

  // Discovered members (provably: see #isDiscovered) absent from the set, seen here before or past their grace.
  #vanished (wanted: ReadonlyMap<string, DiscoveredAddress>): ResolvedUpstream[] {
    const now = Date.now()
    const absent = this.#pool.upstreams.filter((u) => !wanted.has(u.id) && this.#isDiscovered(u))
    const absentIds = new Set(absent.map((u) => u.id))
    for (const id of this.#absentSince.keys()) if (!absentIds.has(id)) this.#absentSince.delete(id)
    return absent.filter((u) => {
      if (this.#seen.has(u.id)) return true
      const since = this.#absentSince.get(u.id) ?? now
      this.#absentSince.set(u.id, since)
      return now - since >= this.#unseenGraceMs
    })
  }

  async #drain (vanished: readonly ResolvedUpstream[]): Promise<boolean> {
    for (const member of vanished) {
      const state = this.#pool.state(member.id)
      // Behind `down` the admin state is not visible: draining it anyway keeps it from new sessions once it is up.
      if (state === 'active' || (state === 'down' && !this.#drainedByDiscovery.has(member.id))) {
        if (!await this.#change('draining (gone from DNS)', member.id, member.url, () => this.#pool.drain(member.id))) return false
        this.#drainedByDiscovery.add(member.id)
      }
    }
    return true
  }

  async #removeEmpty (vanished: readonly ResolvedUpstream[]): Promise<boolean> {
    const members = new Set(this.#pool.upstreams.map((u) => u.id))
    const candidates = vanished.filter((u) => members.has(u.id) && this.#pool.state(u.id) !== 'active')
    if (candidates.length === 0) return true
    let counts: Record<string, number>
    try {
      counts = await this.#pool.sessionCounts()
    } catch (error) {
      this.#log.warn({ pool: this.#pool.name, err: error }, 'fastify-sticky: DNS discovery could not count sessions; will retry')
      return false
    }
    for (const member of candidates) {
      if ((counts[member.id] ?? 0) > 0) continue
      if (!await this.#change('removed (gone from DNS, no sessions left)', member.id, member.url, () => this.#pool.remove(member.id))) return false
      this.#drainedByDiscovery.delete(member.id)
    }
    return true
  }

  // The id shape alone could match a static upstream's name ("dashboard-api"); the hash of its own URL cannot.
  #isDiscovered (member: ResolvedUpstream): boolean {
    if (!DISCOVERED_ID_RE.test(member.id)) return false
    const url = new URL(member.url)
    const port = url.port !== '' ? Number(url.port) : url.protocol === 'https:' ? 443 : 80
    return this.#idOf({ address: canonicalAddress(url.hostname), port, url: member.url }) === member.id
  }

  // @returns false on a store error (logged), true when done or when someone else already did it.
  async #change (what: string, id: string, url: string, run: () => Promise<void>): Promise<boolean> {
    try {
      await run()
      this.#log.info({ pool: this.#pool.name, upstream: id, url }, `fastify-sticky: DNS discovery: upstream ${what}`)
      return true
    } catch (error) {
      if (ALREADY_DONE.has((error as { code?: string }).code ?? '')) return true
      this.#log.warn({ pool: this.#pool.name, upstream: id, err: error }, `fastify-sticky: DNS discovery: upstream not ${what.split(' ')[0]}; will retry`)
      return false
    }
  }
}
