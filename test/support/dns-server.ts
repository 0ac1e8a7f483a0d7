/**
 * A tiny authoritative DNS server over UDP on 127.0.0.1, for tests of DNS discovery: it answers A, AAAA and SRV
 * questions from a table the test changes at will, and can be told to stop answering (resolver timeouts) or to
 * answer SERVFAIL. No tap import: the owner is anything with a `teardown`.
 */
import dgram from 'node:dgram'
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import type { TeardownOwner } from './teardown-owner'

/** One SRV record's data (RFC 2782). */
export interface DnsSrvRecord {
  readonly priority: number
  readonly weight: number
  readonly port: number
  /** A host name, answered by this server's table like any other (its A/AAAA records). */
  readonly target: string
}

/** What the server holds for one name; a type left out (or empty) is answered with no records (NODATA). */
export interface DnsZoneEntry {
  a?: string[]
  aaaa?: string[]
  srv?: DnsSrvRecord[]
  /** TTL of every record of this name, in seconds. @defaultValue 0 */
  ttl?: number
  /** How questions about this name are answered, over the server's modes (e.g. `'silent'`: only it times out). */
  mode?: DnsServerMode
}

/** How the server answers: normally, not at all (clients time out), or SERVFAIL to every question. */
export type DnsServerMode = 'answer' | 'silent' | 'servfail'

/** One question the server received, in arrival order. */
export interface DnsQueryRecord {
  /** The name asked for, lower case, without a trailing dot. */
  readonly name: string
  /** `A`, `AAAA`, `SRV` or `TYPE<n>` for any other type. */
  readonly type: string
  /** `Date.now()` when it arrived. */
  readonly at: number
}

/** A running test DNS server (see {@link startDnsServer}). */
export interface TestDnsServer {
  /** The UDP port on 127.0.0.1. */
  readonly port: number
  /** `127.0.0.1:<port>`, ready for `resolver.setServers([server.address])`. */
  readonly address: string
  /**
   * The zone, by name (lower case, no trailing dot). Change it freely: every question reads it afresh. A name not in
   * it is answered NXDOMAIN.
   */
  readonly zone: Map<string, DnsZoneEntry>
  /** How it answers from now on. @defaultValue `'answer'` */
  mode: DnsServerMode
  /** How it answers questions of one type, over `mode` (e.g. `{ AAAA: 'silent' }`: only AAAA lookups time out). */
  readonly typeModes: Partial<Record<'A' | 'AAAA' | 'SRV', DnsServerMode>>
  /** Every question received so far (tests may empty it). */
  readonly queries: DnsQueryRecord[]
  /** Closes the socket; safe to call twice (teardown calls it too). */
  close (): Promise<void>
}

const TYPE_A = 1
const TYPE_AAAA = 28
const TYPE_SRV = 33
const CLASS_IN = 1
const RCODE_FORMERR = 1
const RCODE_SERVFAIL = 2
const RCODE_NXDOMAIN = 3
const RCODE_NOTIMP = 4
const HEADER_BYTES = 12
// RFC 1035 §4.1.4: the two top bits of a length byte mark a compression pointer.
const POINTER_MASK = 0xc0
const TYPE_NAMES: Record<number, string> = { [TYPE_A]: 'A', [TYPE_AAAA]: 'AAAA', [TYPE_SRV]: 'SRV' }

/**
 * Starts a DNS server on 127.0.0.1 (a free UDP port), closed at `t` teardown.
 * @param t - the test that owns the server
 * @param zone - the initial records, by name (copied; change `server.zone` afterwards)
 * @returns the running server
 * @example
 * const dns = await startDnsServer(t, { 'api.test': { a: ['127.0.0.1'], ttl: 0 } })
 * const resolver = new Resolver({ timeout: 200, tries: 1 })
 * resolver.setServers([dns.address])
 */
export async function startDnsServer (t: TeardownOwner, zone: Record<string, DnsZoneEntry> = {}): Promise<TestDnsServer> {
  const socket = dgram.createSocket('udp4')
  let closing: Promise<void> | undefined
  const server: TestDnsServer = {
    port: 0,
    address: '',
    zone: new Map(Object.entries(zone).map(([name, entry]) => [canonicalName(name), entry])),
    mode: 'answer',
    typeModes: {},
    queries: [],
    close () {
      closing ??= new Promise<void>((resolve) => socket.close(() => resolve()))
      return closing
    }
  }
  t.teardown(() => server.close())
  socket.on('message', (message, peer) => {
    const reply = answer(server, message)
    if (reply !== undefined) socket.send(reply, peer.port, peer.address)
  })
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject)
    socket.bind(0, '127.0.0.1', () => {
      socket.off('error', reject)
      resolve()
    })
  })
  // A malformed datagram must not take the test process down with an unhandled 'error'.
  socket.on('error', () => {})
  const { port } = socket.address() as AddressInfo
  Object.assign(server, { port, address: `127.0.0.1:${port}` })
  return server
}

/** One parsed question. */
interface Question {
  readonly name: string
  readonly type: number
  readonly qclass: number
  /** Offset just past the question (its raw bytes are copied into the reply). */
  readonly end: number
}

// `undefined`: send nothing (silent mode, or a datagram too broken to even carry an id to answer).
function answer (server: TestDnsServer, message: Buffer): Buffer | undefined {
  if (message.length < HEADER_BYTES) return undefined
  const flags = message.readUInt16BE(2)
  if ((flags & 0x8000) !== 0) return undefined // a response, not a question: never answer those (loops)
  let question: Question | undefined
  try {
    question = message.readUInt16BE(4) === 1 ? readQuestion(message, HEADER_BYTES) : undefined
  } catch {
    question = undefined
  }
  const typeName = question === undefined ? undefined : TYPE_NAMES[question.type] ?? `TYPE${question.type}`
  if (question !== undefined) server.queries.push({ name: question.name, type: typeName as string, at: Date.now() })
  const mode = (question === undefined ? undefined : server.zone.get(question.name)?.mode) ?? server.typeModes[typeName as 'A' | 'AAAA' | 'SRV'] ?? server.mode
  if (mode === 'silent') return undefined
  if (question === undefined) return reply(message, flags, undefined, RCODE_FORMERR, [])
  const opcode = (flags >> 11) & 0xf
  if (opcode !== 0) return reply(message, flags, question, RCODE_NOTIMP, [])
  if (mode === 'servfail') return reply(message, flags, question, RCODE_SERVFAIL, [])
  const entry = server.zone.get(question.name)
  if (entry === undefined) return reply(message, flags, question, RCODE_NXDOMAIN, [])
  if (question.qclass !== CLASS_IN) return reply(message, flags, question, 0, [])
  const ttl = entry.ttl ?? 0
  const records: Buffer[] = []
  if (question.type === TYPE_A) for (const ip of entry.a ?? []) records.push(record(TYPE_A, ttl, ipv4Bytes(ip)))
  if (question.type === TYPE_AAAA) for (const ip of entry.aaaa ?? []) records.push(record(TYPE_AAAA, ttl, ipv6Bytes(ip)))
  if (question.type === TYPE_SRV) {
    for (const srv of entry.srv ?? []) {
      const fixed = Buffer.alloc(6)
      fixed.writeUInt16BE(srv.priority, 0)
      fixed.writeUInt16BE(srv.weight, 2)
      fixed.writeUInt16BE(srv.port, 4)
      records.push(record(TYPE_SRV, ttl, Buffer.concat([fixed, encodeName(srv.target)])))
    }
  }
  return reply(message, flags, question, 0, records)
}

// Header + the question copied verbatim (resolvers check it matches theirs, case included) + answers.
function reply (query: Buffer, queryFlags: number, question: Question | undefined, rcode: number, answers: Buffer[]): Buffer {
  const header = Buffer.alloc(HEADER_BYTES)
  header.writeUInt16BE(query.readUInt16BE(0), 0)
  // QR, the query's opcode and RD, AA (we are the authority for our table), RA, and the response code.
  header.writeUInt16BE(0x8000 | (queryFlags & 0x7800) | 0x0400 | (queryFlags & 0x0100) | 0x0080 | rcode, 2)
  header.writeUInt16BE(question === undefined ? 0 : 1, 4)
  header.writeUInt16BE(answers.length, 6)
  return Buffer.concat([header, question === undefined ? Buffer.alloc(0) : query.subarray(HEADER_BYTES, question.end), ...answers])
}

// Every answer names the question's name through a pointer to offset 12, where the copied question starts.
function record (type: number, ttl: number, data: Buffer): Buffer {
  const fixed = Buffer.alloc(12)
  fixed.writeUInt16BE(POINTER_MASK << 8 | HEADER_BYTES, 0)
  fixed.writeUInt16BE(type, 2)
  fixed.writeUInt16BE(CLASS_IN, 4)
  fixed.writeUInt32BE(ttl, 6)
  fixed.writeUInt16BE(data.length, 10)
  return Buffer.concat([fixed, data])
}

function readQuestion (message: Buffer, offset: number): Question {
  const { name, end } = readName(message, offset)
  if (end + 4 > message.length) throw new RangeError('question cut short')
  return { name, type: message.readUInt16BE(end), qclass: message.readUInt16BE(end + 2), end: end + 4 }
}

// RFC 1035 §4.1.2/§4.1.4: labels, possibly ending in a pointer to an earlier name; pointers must go backwards,
// which also bounds the walk.
function readName (message: Buffer, start: number): { name: string, end: number } {
  const labels: string[] = []
  let offset = start
  let end: number | undefined
  let floor = start
  for (;;) {
    if (offset >= message.length) throw new RangeError('name runs past the message')
    const length = message[offset]
    if ((length & POINTER_MASK) === POINTER_MASK) {
      if (offset + 1 >= message.length) throw new RangeError('pointer cut short')
      const target = ((length & ~POINTER_MASK) << 8) | message[offset + 1]
      end ??= offset + 2
      if (target >= floor) throw new RangeError('pointer does not go backwards')
      floor = target
      offset = target
      continue
    }
    if ((length & POINTER_MASK) !== 0) throw new RangeError('reserved label type')
    if (length === 0) {
      end ??= offset + 1
      break
    }
    if (offset + 1 + length > message.length) throw new RangeError('label runs past the message')
    labels.push(message.toString('latin1', offset + 1, offset + 1 + length))
    offset += 1 + length
  }
  return { name: canonicalName(labels.join('.')), end }
}

function encodeName (name: string): Buffer {
  const labels = canonicalName(name).split('.').filter((label) => label !== '')
  const parts: Buffer[] = []
  for (const label of labels) {
    const bytes = Buffer.from(label, 'latin1')
    if (bytes.length > 63) throw new RangeError(`DNS label longer than 63 bytes: ${label}`)
    parts.push(Buffer.from([bytes.length]), bytes)
  }
  parts.push(Buffer.from([0]))
  return Buffer.concat(parts)
}

function canonicalName (name: string): string {
  return name.toLowerCase().replace(/\.$/, '')
}

function ipv4Bytes (ip: string): Buffer {
  if (!net.isIPv4(ip)) throw new TypeError(`not an IPv4 address: ${ip}`)
  return Buffer.from(ip.split('.').map(Number))
}

function ipv6Bytes (ip: string): Buffer {
  if (!net.isIPv6(ip)) throw new TypeError(`not an IPv6 address: ${ip}`)
  let text = ip
  // A dotted IPv4 tail (::ffff:1.2.3.4) is the last two groups.
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text)
  if (dotted !== null) {
    const [a, b, c, d] = dotted[1].split('.').map(Number)
    text = text.slice(0, dotted.index) + ((a << 8) | b).toString(16) + ':' + ((c << 8) | d).toString(16)
  }
  const [head, tail] = text.split('::')
  const groups = (part: string | undefined): string[] => part === undefined || part === '' ? [] : part.split(':')
  const left = groups(head)
  const right = groups(tail)
  const middle = tail === undefined ? [] : Array<string>(8 - left.length - right.length).fill('0')
  const all = [...left, ...middle, ...right]
  const bytes = Buffer.alloc(16)
  all.forEach((group, i) => bytes.writeUInt16BE(parseInt(group, 16), i * 2))
  return bytes
}
