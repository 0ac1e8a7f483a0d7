/**
 * DNS discovery of a pool's upstreams: resolves a name (A and AAAA records with a fixed port, or SRV records whose
 * targets are resolved in turn) again whenever the answer's TTL runs out, clamped to a minimum and a maximum and
 * jittered, and reports the address set each time it changes. A failed lookup keeps the last good set.
 * Framework-free: node:dns only.
 */
import type { RecordWithTtl, SrvRecord } from 'node:dns'
import { Resolver } from 'node:dns/promises'
import net from 'node:net'
import type { CoreLogger } from '../core/logger'
import { fail } from '../options/checks'

/** The resolver methods discovery uses: `dns.promises.Resolver` has them; tests point one at a local server. */
export interface DnsResolverLike {
  resolve4 (hostname: string, options: { ttl: true }): Promise<RecordWithTtl[]>
  resolve6 (hostname: string, options: { ttl: true }): Promise<RecordWithTtl[]>
  resolveSrv (hostname: string): Promise<SrvRecord[]>
}

/** What {@link DnsDiscovery} resolves, and how often. */
export interface DnsDiscoveryOptions {
  /** The DNS name, e.g. `shop.default.svc.cluster.local` or `_http._tcp.shop.default.svc.cluster.local`. */
  readonly name: string
  /** `'A'`: A and AAAA records, each address with {@link DnsDiscoveryOptions.port}; `'SRV'`: SRV records, each target's A/AAAA addresses with the record's port. */
  readonly type: 'A' | 'SRV'
  /** The upstreams' port: required for `'A'`, ignored for `'SRV'`. */
  readonly port: number | undefined
  /** The scheme of the upstream URLs. */
  readonly scheme: 'http' | 'https'
  /** The shortest wait between two lookups, ms (a TTL below it is raised to it; the retry delay after a failure). */
  readonly minRefreshMs: number
  /** The longest wait between two lookups, ms (a TTL above it is lowered to it). */
  readonly maxRefreshMs: number
  /** @defaultValue `new dns.promises.Resolver({ timeout: 2000, tries: 2 })`, using the system's name servers */
  readonly resolver?: DnsResolverLike
}

/** One discovered upstream address. */
export interface DiscoveredAddress {
  /** The IP address in its canonical text form (IPv6 without brackets). */
  readonly address: string
  readonly port: number
  /** `scheme://address:port`, IPv6 in brackets. */
  readonly url: string
}

/** Called with the whole discovered set each time it changes (sorted by URL; never empty). */
export type DnsDiscoveryListener = (addresses: readonly DiscoveredAddress[]) => void | Promise<void>

// The system resolver's defaults (5 s, 4 tries, per server) could hold a refresh for a minute and more.
const DEFAULT_RESOLVER_TIMEOUT_MS = 2_000
const DEFAULT_RESOLVER_TRIES = 2
/** Each wait is moved by up to this fraction either way, so gateways started together do not ask together. */
export const REFRESH_JITTER = 0.1
// "This name has no such records" (NXDOMAIN, NODATA), as opposed to "the lookup did not work".
const NO_RECORDS = new Set(['ENOTFOUND', 'ENODATA'])

/**
 * The wait before the next lookup: the TTL clamped to `[minMs, maxMs]`, then moved by up to ±{@link REFRESH_JITTER}.
 * @param ttlMs - the smallest TTL of the answer, ms (`undefined`: none known, the minimum is used)
 * @param minMs - the shortest wait
 * @param maxMs - the longest wait
 * @param random - a source of numbers in [0, 1)
 * @returns the wait in ms (at least 1)
 */
export function refreshDelayMs (ttlMs: number | undefined, minMs: number, maxMs: number, random: () => number = Math.random): number {
  const clamped = Math.min(maxMs, Math.max(minMs, ttlMs ?? minMs))
  return Math.max(1, Math.round(clamped * (1 + REFRESH_JITTER * (2 * random() - 1))))
}

/**
 * The canonical text form of an IP address, so one address always has one spelling (`::0:1` and `::1` are one
 * upstream).
 * @param address - an IPv4 or IPv6 address (IPv6 with or without brackets)
 * @returns the canonical form (IPv6 compressed, lower case, without brackets); anything else lower-cased
 */
export function canonicalAddress (address: string): string {
  const bare = address.replace(/^\[(.*)\]$/, '$1')
  if (net.isIPv6(bare)) {
    try {
      return new URL(`http://[${bare}]`).hostname.slice(1, -1)
    } catch {
      // A zone id (fe80::1%eth0) is valid for net but not in a URL: no URL can name it, keep it as written.
      return bare.toLowerCase()
    }
  }
  return bare.toLowerCase()
}

/** One lookup's answer: its addresses and the smallest TTL among the records this lookup actually got. */
interface LookupResult {
  readonly addresses: readonly DiscoveredAddress[]
  readonly ttlMs: number | undefined
  /** Why a part of it failed (that part's last good addresses were used instead), or undefined. */
  readonly partialError: string | undefined
}

/** What one host's A and AAAA lookups gave. */
interface HostAnswer {
  readonly addresses: DiscoveredAddress[]
  /** TTLs of the records actually received (not of kept ones), ms. */
  readonly ttlsMs: number[]
  /** Families whose lookup failed (their last good addresses are in `addresses`). */
  readonly errors: string[]
  /** Each family's addresses, by part key, for the next lookup to fall back on. */
  readonly parts: Array<[string, readonly DiscoveredAddress[]]>
  /** Codes of families the name has no records of (NXDOMAIN, NODATA). */
  readonly noRecords: string[]
  /** Lookups that got an answer (records or an authoritative "none"). */
  answered: number
}

/**
 * Resolves one DNS name on its TTL and reports changes of the address set. A failed lookup (timeout, SERVFAIL,
 * refused) keeps the last good set and is retried after `minRefreshMs`. So does an answer with no addresses at all
 * (NXDOMAIN, NODATA, every SRV target gone): an empty pool routes nothing, and a name that is briefly missing
 * (a misconfigured zone, a Service recreated) must not drain every upstream; health checks judge the old ones.
 * When only part of a lookup fails (AAAA times out but A answers; the SRV records answer but a target's lookup
 * times out), the lookup counts as a success and the failed part keeps its last good addresses; the next lookup
 * comes after `minRefreshMs`.
 */
export class DnsDiscovery {
  readonly #options: DnsDiscoveryOptions
  readonly #onChange: DnsDiscoveryListener
  readonly #log: CoreLogger
  readonly #resolver: DnsResolverLike
  #timer: NodeJS.Timeout | undefined
  #started = false
  // Bumped by stop(): a lookup that began before it neither reports nor schedules.
  #generation = 0
  #inFlight: Promise<boolean> | undefined
  #addresses: readonly DiscoveredAddress[] = []
  #delivered: string | undefined
  // Last good addresses per part of a lookup (`A`, `AAAA`, `<target>|A`…), for a part that fails next time.
  #parts = new Map<string, readonly DiscoveredAddress[]>()
  #lastError: string | undefined
  #lastSuccessAt: number | undefined

  /**
   * @param options - the name, record type, port, scheme and refresh bounds
   * @param onChange - called with the new set whenever it differs from the last one delivered (the first good
   *   lookup always delivers); awaited before the next lookup, and a throw is logged and delivered again later
   * @param log - where failures (a warning per failure streak) and recoveries go
   * @throws FST_STICKY_INVALID_OPTION for a bad option (an `'A'` lookup without a port, min above max...)
   */
  constructor (options: DnsDiscoveryOptions, onChange: DnsDiscoveryListener, log: CoreLogger) {
    const { name, type, port, scheme, minRefreshMs, maxRefreshMs } = options
    if (typeof name !== 'string' || name.trim() === '' || name.length > 253) fail('dns.name', 'a DNS name', name)
    if (type !== 'A' && type !== 'SRV') fail('dns.type', "'A' or 'SRV'", type)
    if (type === 'A' && !isPort(port)) fail('dns.port', 'a port number (1-65535) for A/AAAA discovery', port)
    if (scheme !== 'http' && scheme !== 'https') fail('dns.scheme', "'http' or 'https'", scheme)
    if (!(Number.isFinite(minRefreshMs) && minRefreshMs > 0)) fail('dns.minRefresh', 'a positive number of ms', minRefreshMs)
    if (!(Number.isFinite(maxRefreshMs) && maxRefreshMs >= minRefreshMs)) fail('dns.maxRefresh', `a number of ms not below minRefresh (${minRefreshMs})`, maxRefreshMs)
    this.#options = Object.freeze({ ...options })
    this.#onChange = onChange
    this.#log = log
    this.#resolver = options.resolver ?? new Resolver({ timeout: DEFAULT_RESOLVER_TIMEOUT_MS, tries: DEFAULT_RESOLVER_TRIES })
  }

  /** The last good set (empty before the first good lookup), sorted by URL. */
  get addresses (): readonly DiscoveredAddress[] {
    return this.#addresses
  }

  /** Why the last lookup failed, wholly or in part; `undefined` after a lookup that fully worked. */
  get lastError (): string | undefined {
    return this.#lastError
  }

  /** When a lookup last succeeded (`Date.now()`), or `undefined` when none has yet. */
  get lastSuccessAt (): number | undefined {
    return this.#lastSuccessAt
  }

  /**
   * Resolves the name once and keeps resolving it on its TTL (timers unref'd) until {@link DnsDiscovery.stop}.
   * @returns whether the first lookup succeeded (it never throws: a failure is retried after `minRefreshMs`)
   */
  async start (): Promise<boolean> {
    this.#started = true
    return this.refreshNow()
  }

  /** Stops the lookups: the timer is cleared and a lookup under way reports nothing. */
  stop (): void {
    this.#started = false
    this.#generation++
    clearTimeout(this.#timer)
    this.#timer = undefined
  }

  /**
   * Resolves the name now (joining a lookup under way), then, when started, schedules the next one from its result.
   * @returns whether the lookup succeeded (never throws)
   */
  refreshNow (): Promise<boolean> {
    this.#inFlight ??= this.#refresh().finally(() => { this.#inFlight = undefined })
    return this.#inFlight
  }

  async #refresh (): Promise<boolean> {
    const generation = this.#generation
    const { minRefreshMs, maxRefreshMs } = this.#options
    let delayMs: number
    let ok: boolean
    try {
      const result = await this.#lookup()
      if (generation !== this.#generation) return true
      ok = true
      this.#lastSuccessAt = Date.now()
      this.#noteOutcome(result.partialError)
      this.#addresses = result.addresses
      await this.#deliver(result.addresses)
      delayMs = result.partialError === undefined ? refreshDelayMs(result.ttlMs, minRefreshMs, maxRefreshMs) : refreshDelayMs(minRefreshMs, minRefreshMs, minRefreshMs)
    } catch (error) {
      if (generation !== this.#generation) return false
      ok = false
      this.#noteOutcome(describe(error))
      delayMs = refreshDelayMs(minRefreshMs, minRefreshMs, minRefreshMs)
    }
    if (this.#started && generation === this.#generation) {
      clearTimeout(this.#timer)
      this.#timer = setTimeout(() => { void this.refreshNow() }, delayMs)
      this.#timer.unref()
    }
    return ok
  }

  // One warning per failure streak (a name failing every 50 ms must not flood the log), one line on recovery.
  #noteOutcome (error: string | undefined): void {
    const { name, type } = this.#options
    if (error !== undefined && this.#lastError === undefined) {
      this.#log.warn({ dns: name, type, err: error, kept: this.#addresses.length }, 'fastify-sticky: DNS discovery failed; keeping the last good upstreams')
    } else if (error === undefined && this.#lastError !== undefined) {
      this.#log.info({ dns: name, type }, 'fastify-sticky: DNS discovery works again')
    }
    this.#lastError = error
  }

  async #deliver (addresses: readonly DiscoveredAddress[]): Promise<void> {
    const key = addresses.map((a) => a.url).join(' ')
    if (key === this.#delivered) return
    try {
      await this.#onChange(addresses)
      this.#delivered = key
    } catch (error) {
      // Not marked delivered: the same set is offered again after the next lookup.
      this.#log.warn({ dns: this.#options.name, err: describe(error) }, 'fastify-sticky: DNS discovery listener failed')
    }
  }

  async #lookup (): Promise<LookupResult> {
    const { name, type, port } = this.#options
    let hosts: HostAnswer[]
    if (type === 'A') {
      hosts = [await this.#lookupHost(name, port as number, name)]
    } else {
      // No TTL comes with SRV answers in node: the targets' TTLs stand for the set's.
      const records = await this.#resolver.resolveSrv(name)
      const targets = new Map<string, { host: string, port: number }>()
      for (const { name: target, port: srvPort } of records) {
        const host = target.replace(/\.$/, '').toLowerCase()
        // RFC 2782: a target of "." means the service is decidedly not available at this name.
        if (host !== '' && isPort(srvPort)) targets.set(`${host}|${srvPort}`, { host, port: srvPort })
      }
      hosts = await Promise.all([...targets].map(([key, target]) => this.#lookupHost(target.host, target.port, key)))
    }
    const errors = hosts.flatMap((h) => h.errors)
    // Nothing answered (every lookup failed): a failure, even though kept parts would give a set.
    if (type === 'A' && hosts.every((h) => h.answered === 0)) throw new Error(errors.join('; '))
    const addresses = dedupe(hosts.flatMap((h) => h.addresses))
    if (addresses.length === 0) {
      const codes = [...new Set(hosts.flatMap((h) => h.noRecords))].join(', ')
      throw new Error(errors.length > 0 ? errors.join('; ') : `${type === 'A' ? 'A/AAAA' : 'SRV'} lookup of ${name} gave no addresses${codes === '' ? '' : ` (${codes})`}`)
    }
    // Rebuilt from this lookup only, so parts of targets that left the answer are forgotten.
    this.#parts = new Map(hosts.flatMap((h) => h.parts))
    const ttls = hosts.flatMap((h) => h.ttlsMs)
    return { addresses, ttlMs: ttls.length > 0 ? Math.min(...ttls) : undefined, partialError: errors.length > 0 ? errors.join('; ') : undefined }
  }

  // A and AAAA of one host: a family with no records is empty; a family whose lookup failed keeps what it had.
  async #lookupHost (host: string, port: number, partKey: string): Promise<HostAnswer> {
    const answer: HostAnswer = { addresses: [], ttlsMs: [], errors: [], parts: [], noRecords: [], answered: 0 }
    if (net.isIP(host) !== 0) {
      answer.answered++
      const literal = this.#address(host, port)
      if (literal !== undefined) answer.addresses.push(literal)
      return answer
    }
    const [v4, v6] = await Promise.allSettled([this.#resolver.resolve4(host, { ttl: true }), this.#resolver.resolve6(host, { ttl: true })])
    for (const [family, outcome] of [['A', v4], ['AAAA', v6]] as const) {
      const key = `${partKey}|${family}`
      if (outcome.status === 'rejected') {
        const code = (outcome.reason as NodeJS.ErrnoException).code ?? ''
        if (NO_RECORDS.has(code)) {
          answer.answered++
          answer.noRecords.push(code)
          answer.parts.push([key, []])
          continue
        }
        answer.errors.push(`${family} ${host}: ${describe(outcome.reason)}`)
        const kept = this.#parts.get(key) ?? []
        answer.parts.push([key, kept])
        answer.addresses.push(...kept)
        continue
      }
      answer.answered++
      const addresses: DiscoveredAddress[] = []
      for (const record of outcome.value) {
        const address = this.#address(record.address, port)
        if (address === undefined) continue
        addresses.push(address)
        answer.ttlsMs.push(record.ttl * 1000)
      }
      answer.parts.push([key, addresses])
      answer.addresses.push(...addresses)
    }
    return answer
  }

  #address (raw: string, port: number): DiscoveredAddress | undefined {
    const address = canonicalAddress(raw)
    const host = net.isIPv6(address) ? `[${address}]` : address
    // Checked by URL because that is what the pool will do with it (an IPv6 zone id cannot be an upstream URL).
    if (!URL.canParse(`${this.#options.scheme}://${host}:${port}`)) {
      this.#log.debug({ dns: this.#options.name, address: raw }, 'fastify-sticky: DNS discovery skipped an address no URL can name')
      return undefined
    }
    return Object.freeze({ address, port, url: `${this.#options.scheme}://${host}:${port}` })
  }
}

function isPort (value: unknown): value is number {
  return Number.isInteger(value) && (value as number) >= 1 && (value as number) <= 65535
}

function dedupe (addresses: readonly DiscoveredAddress[]): DiscoveredAddress[] {
  const byUrl = new Map<string, DiscoveredAddress>()
  for (const address of addresses) byUrl.set(address.url, address)
  return [...byUrl.values()].sort((a, b) => a.url < b.url ? -1 : a.url > b.url ? 1 : 0)
}

function describe (error: unknown): string {
  if (error instanceof Error) {
    const code = (error as NodeJS.ErrnoException).code
    return code === undefined ? error.message : `${code} (${error.message})`
  }
  return String(error)
}
