/**
 * Where a route's affinity key comes from, and how it is read from a request. Framework-free: extractors read a
 * small {@link KeyInput}, so HTTP and upgrade requests share them.
 */
import net from 'node:net'

/** Longest key value accepted from a header, query parameter, app cookie or function; longer is junk. */
export const MAX_KEY_LENGTH = 1024

/** Options of the `ip` key: how many leading bits of an address make the key (clients in one prefix share a binding). */
export interface IpKeyOptions {
  /** @defaultValue 32 (each IPv4 address on its own) */
  ipv4Prefix?: number
  /** @defaultValue 64 (one IPv6 /64: one site or device, whose interface ids rotate) */
  ipv6Prefix?: number
}

/**
 * One source of affinity keys:
 * - `'cookie'`: the plugin's signed routing cookie (always yields: a client without one gets one);
 * - `'ip'` or `{ ip: { ipv4Prefix, ipv6Prefix } }`: the client address as Fastify computes it through `trustProxy`;
 * - `{ header: 'x-tenant' }`, `{ query: 'room' }`: the value is the key;
 * - `{ learn: 'JSESSIONID' }`: the app's own session cookie, bound when an upstream's response sets it;
 * - a function of the request returning the key, or `undefined` for none.
 */
export type StickyKeySource<Request = never> =
  | 'cookie'
  | 'ip'
  | { ip: IpKeyOptions }
  | { header: string }
  | { query: string }
  | { learn: string }
  | ((request: Request) => string | undefined)

/** A validated key source. */
export type ResolvedKeySource =
  | { readonly kind: 'cookie' }
  | { readonly kind: 'ip', readonly ipv4Prefix: number, readonly ipv6Prefix: number, readonly namespace: string }
  | { readonly kind: 'header', readonly name: string, readonly namespace: string }
  | { readonly kind: 'query', readonly name: string, readonly namespace: string }
  | { readonly kind: 'learn', readonly cookie: string, readonly namespace: string }
  | { readonly kind: 'function', readonly fn: (request: unknown) => string | undefined, readonly namespace: string }

/** What extractors read from a request. */
export interface KeyInput {
  /** The client address as the framework computed it (proxy-aware). */
  readonly ip: string | undefined
  readonly headers: Record<string, string | string[] | undefined>
  readonly query: unknown
  readonly cookies: Record<string, string | undefined>
  /** The framework's request, for function keys. */
  readonly request: unknown
}

/** A key read from a request, or why a present value was refused. */
export type ExtractedKey =
  | { readonly ok: true, readonly raw: string }
  | { readonly ok: false, readonly junk: boolean }

const NONE: ExtractedKey = Object.freeze({ ok: false, junk: false })
const JUNK: ExtractedKey = Object.freeze({ ok: false, junk: true })
const HEADER_NAME_RE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}$/

function accept (value: unknown): ExtractedKey {
  if (Array.isArray(value)) value = value[0]
  if (typeof value !== 'string' || value === '') return NONE
  return value.length > MAX_KEY_LENGTH ? JUNK : { ok: true, raw: value }
}

/**
 * Reads one source's key from a request (never the routing cookie: that one is the resolver's).
 * @returns the raw key, or why there is none (`junk`: a value was there but refused)
 */
export function extractKey (source: Exclude<ResolvedKeySource, { kind: 'cookie' }>, input: KeyInput): ExtractedKey {
  switch (source.kind) {
    case 'ip': {
      if (input.ip === undefined) return NONE
      const key = ipPrefixKey(input.ip, source.ipv4Prefix, source.ipv6Prefix)
      return key === undefined ? JUNK : { ok: true, raw: key }
    }
    case 'header':
      return accept(input.headers[source.name])
    case 'query':
      return typeof input.query === 'object' && input.query !== null ? accept((input.query as Record<string, unknown>)[source.name]) : NONE
    case 'learn':
      return accept(input.cookies[source.cookie])
    case 'function': {
      try {
        return accept(source.fn(input.request))
      } catch {
        return JUNK
      }
    }
  }
}

// Expands an IPv6 address to eight 16-bit groups; an embedded IPv4 tail counts as two groups.
function ipv6Groups (address: string): number[] | undefined {
  let text = address
  const zone = text.indexOf('%')
  if (zone >= 0) text = text.slice(0, zone)
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text)
  if (v4 !== null) {
    const [a, b, c, d] = v4[1].split('.').map(Number)
    text = text.slice(0, v4.index) + ((a << 8) | b).toString(16) + ':' + ((c << 8) | d).toString(16)
  }
  const halves = text.split('::')
  if (halves.length > 2) return undefined
  const head = halves[0] === '' ? [] : halves[0].split(':')
  const tail = halves.length === 2 && halves[1] !== '' ? halves[1].split(':') : []
  const missing = 8 - head.length - tail.length
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined
  const groups = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill('0'), ...tail].map((g) => parseInt(g, 16))
  return groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff) ? groups : undefined
}

/**
 * The key of a client address: the address masked to its prefix, IPv4-mapped IPv6 addresses counted as IPv4.
 * @returns e.g. `4:203.0.113.7/32` or `6:2001:db8:0:0::/64`, or `undefined` when it is not an IP address
 */
export function ipPrefixKey (address: string, ipv4Prefix: number, ipv6Prefix: number): string | undefined {
  const family = net.isIP(address)
  if (family === 4) return '4:' + maskV4(address, ipv4Prefix) + '/' + ipv4Prefix
  if (family !== 6) return undefined
  const groups = ipv6Groups(address)
  if (groups === undefined) return undefined
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    const v4 = `${groups[6] >> 8}.${groups[6] & 0xff}.${groups[7] >> 8}.${groups[7] & 0xff}`
    return '4:' + maskV4(v4, ipv4Prefix) + '/' + ipv4Prefix
  }
  const masked = groups.map((g, i) => {
    const bits = Math.min(16, Math.max(0, ipv6Prefix - i * 16))
    return bits === 0 ? 0 : g & (0xffff << (16 - bits)) & 0xffff
  })
  return '6:' + masked.map((g) => g.toString(16)).join(':') + '/' + ipv6Prefix
}

function maskV4 (address: string, prefix: number): string {
  const n = address.split('.').reduce((acc, part) => acc * 256 + Number(part), 0)
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0
  const masked = (n & mask) >>> 0
  return [masked >>> 24, (masked >>> 16) & 0xff, (masked >>> 8) & 0xff, masked & 0xff].join('.')
}

/**
 * The prefix a named source puts before its raw key, so a header and a query parameter with the same value are
 * different keys (`app.sticky.bindings` builds the same to find a binding by value).
 */
export function keyNamespace (kind: 'header' | 'query' | 'learn', name: string): string {
  return kind === 'learn' ? 'learn:' + name + '\0' : kind + ':' + name.toLowerCase() + '\0'
}

/** The prefix of `ip` keys (the masked address follows). */
export const IP_KEY_NAMESPACE = 'ip\0'

/**
 * Validates a route's `key` option into an ordered list of sources (first that yields a key wins).
 * @param onError - reports a problem with the dotted path below `key` and a message; never returns
 * @returns the sources, or `false` for no affinity
 */
export function resolveKeySources (input: unknown, onError: (path: string, message: string) => never): false | readonly ResolvedKeySource[] {
  if (input === false) return false
  const list = Array.isArray(input) ? input : [input]
  if (list.length === 0) onError('key', 'must name at least one key source')
  const sources = list.map((entry: unknown, i): ResolvedKeySource => {
    const path = Array.isArray(input) ? `key[${i}]` : 'key'
    if (entry === 'cookie') return Object.freeze({ kind: 'cookie' })
    if (entry === 'ip') return Object.freeze({ kind: 'ip', ipv4Prefix: 32, ipv6Prefix: 64, namespace: IP_KEY_NAMESPACE })
    if (typeof entry === 'function') return Object.freeze({ kind: 'function', fn: entry as (request: unknown) => string | undefined, namespace: 'fn' + i + '\0' })
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry) || Object.keys(entry).length !== 1) {
      onError(path, "must be 'cookie', 'ip', { ip }, { header }, { query }, { learn }, a function, or a list of them")
    }
    const [kind, value] = Object.entries(entry)[0]
    if (kind === 'ip') {
      if (typeof value !== 'object' || value === null) onError(`${path}.ip`, 'must be an object { ipv4Prefix?, ipv6Prefix? }')
      const { ipv4Prefix = 32, ipv6Prefix = 64, ...rest } = value as IpKeyOptions
      if (Object.keys(rest).length > 0) onError(`${path}.ip.${Object.keys(rest)[0]}`, 'is not a known option (known: ipv4Prefix, ipv6Prefix)')
      if (!Number.isInteger(ipv4Prefix) || ipv4Prefix < 0 || ipv4Prefix > 32) onError(`${path}.ip.ipv4Prefix`, 'must be a whole number from 0 to 32')
      if (!Number.isInteger(ipv6Prefix) || ipv6Prefix < 0 || ipv6Prefix > 128) onError(`${path}.ip.ipv6Prefix`, 'must be a whole number from 0 to 128')
      return Object.freeze({ kind: 'ip', ipv4Prefix, ipv6Prefix, namespace: IP_KEY_NAMESPACE })
    }
    if (kind === 'header' || kind === 'query' || kind === 'learn') {
      const valid = typeof value === 'string' && (kind === 'query' ? value.length > 0 && value.length <= 64 : HEADER_NAME_RE.test(value))
      if (!valid) onError(`${path}.${kind}`, `must be a ${kind === 'query' ? 'query parameter' : kind === 'learn' ? 'cookie' : 'header'} name`)
      const name = value as string
      if (kind === 'learn') return Object.freeze({ kind, cookie: name, namespace: keyNamespace(kind, name) })
      return Object.freeze({ kind, name: kind === 'header' ? name.toLowerCase() : name, namespace: keyNamespace(kind, name) })
    }
    return onError(path, `has an unknown key source "${kind}" (known: cookie, ip, header, query, learn, a function)`)
  })
  const cookieAt = sources.findIndex((s) => s.kind === 'cookie')
  if (cookieAt >= 0 && cookieAt !== sources.length - 1) {
    onError(`key[${cookieAt}]`, "'cookie' always yields a key (a client without one gets one), so it must come last")
  }
  if (sources.filter((s) => s.kind === 'learn').length > 1) onError('key', 'may learn one app cookie only')
  return Object.freeze(sources)
}
