/**
 * Hostile input, pure functions: 10,000 random and adversarial cases per input (issue 11), each checked against
 * an oracle where one exists. These are the functions every request's untrusted bytes go through before any
 * store or upstream is touched: the routing cookie codec, the Cookie header parser and the routing cookie
 * stripper, key extraction, the client address prefixer, and the learn-mode Set-Cookie reader.
 */
import net from 'node:net'
import fastifyCookie from '@fastify/cookie'
import Fastify from 'fastify'
import fc from 'fast-check'
import t, { type Test } from 'tap'
import { extractKey, ipPrefixKey, MAX_KEY_LENGTH, resolveKeySources, type KeyInput, type ResolvedKeySource } from '../../lib/affinity/keys'
import { parseSetCookie } from '../../lib/affinity/set-cookie'
import { trimOws } from '../../lib/affinity/cookie-text'
import { createRoutingCookieCodec, MAX_ROUTING_COOKIE_LENGTH, newBindingId } from '../../lib/affinity/routing-cookie'
import { readRoutingCookie, removeCookies } from '../../lib/core/routing-cookie-header'
import { aroundLimit, cookieHeader, headerChar, headerValue, mutationOf, setCookieAttribute } from './arbitraries'
import { countHmacs as countHmacsFromNow } from '../support/hmac-counter'

const RUNS = 10_000
const S1 = 'hardening-secret-one-0123456789abcdefgh'
const S2 = 'hardening-secret-two-0123456789abcdefgh'
const S3 = 'hardening-secret-three-0123456789abcdef'
const fail = (path: string, message: string): never => { throw new Error(`${path} ${message}`) }
const one = (source: unknown): Exclude<ResolvedKeySource, { kind: 'cookie' }> =>
  (resolveKeySources(source, fail) as ResolvedKeySource[])[0] as Exclude<ResolvedKeySource, { kind: 'cookie' }>
const input = (over: Partial<KeyInput>): KeyInput => ({ ip: undefined, headers: {}, query: {}, cookies: {}, request: {}, ...over })

// The Cookie header parser the plugin uses: @fastify/cookie's, as decorated on an instance.
async function cookieParser (t: Test): Promise<(header: string) => Record<string, unknown>> {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(fastifyCookie)
  await app.ready()
  return (header) => app.parseCookie(header) as Record<string, unknown>
}

const token = fc.record({
  bindingId: fc.constant(null).map(() => newBindingId()),
  upstreamId: fc.stringMatching(/^[A-Za-z0-9_-]{1,32}$/),
  createdAt: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER })
})

// Counts the HMACs one piece of work computes.
function countHmacs<T> (work: () => T): { result: T, hmacs: number } {
  const counter = countHmacsFromNow()
  try {
    return { result: work(), hmacs: counter.count }
  } finally {
    counter.restore()
  }
}

t.test('routing cookie codec: any string is refused cleanly; oversized ones cost no HMAC', async (t) => {
  const codec = createRoutingCookieCodec([S3, S2, S1])
  const reasons = new Set(['oversized', 'bad-signature', 'garbled'])
  let oversized = 0
  fc.assert(fc.property(fc.oneof(
    fc.string({ unit: 'binary', maxLength: 600 }),
    fc.string({ unit: headerChar, minLength: 200, maxLength: 320 }),
    fc.string({ unit: fc.constantFrom('.', 'a', '1', '-', '_', '=', '+', '/'), maxLength: 300 })
  ), (value) => {
    const { result, hmacs } = countHmacs(() => codec.verify(value))
    if (result.ok) return false
    if (!reasons.has(result.reason)) return false
    if (value.length > MAX_ROUTING_COOKIE_LENGTH) {
      oversized++
      return result.reason === 'oversized' && hmacs === 0
    }
    return hmacs <= 3
  }), { numRuns: RUNS })
  t.ok(oversized > 1000, `${oversized} of ${RUNS} cases were oversized (refused before any HMAC)`)
})

t.test('routing cookie codec: tokens round-trip; every mutation of a signed value is refused', async (t) => {
  const codec = createRoutingCookieCodec([S3, S2, S1])
  fc.assert(fc.property(token, (tok) => {
    const check = codec.verify(codec.sign(tok))
    return check.ok && !check.renew && check.token.bindingId === tok.bindingId && check.token.upstreamId === tok.upstreamId &&
      check.token.createdAt === tok.createdAt
  }), { numRuns: RUNS })
  const signed = codec.sign({ bindingId: newBindingId(), upstreamId: 'shop-a', createdAt: Date.now() })
  t.ok(signed.length <= MAX_ROUTING_COOKIE_LENGTH, 'a real cookie fits the limit')
  fc.assert(fc.property(mutationOf(signed), (mutated) => !codec.verify(mutated).ok), { numRuns: RUNS })
  // Forging needs the secret: values signed by any other secret are refused.
  fc.assert(fc.property(token, fc.string({ minLength: 32, maxLength: 64 }).filter((s) => ![S1, S2, S3].includes(s)), (tok, other) => {
    const forged = createRoutingCookieCodec([other]).sign(tok)
    const check = codec.verify(forged)
    return !check.ok && check.reason === 'bad-signature'
  }), { numRuns: RUNS })
})

t.test('Cookie header parsing: any header parses without throwing and yields strings', async (t) => {
  const parse = await cookieParser(t)
  let withRouting = 0
  fc.assert(fc.property(fc.oneof(cookieHeader('sticky'), fc.string({ unit: headerChar, maxLength: 300 })), (header) => {
    const cookies = parse(header)
    if (typeof cookies.sticky === 'string') withRouting++
    return Object.values(cookies).every((value) => typeof value === 'string')
  }), { numRuns: RUNS })
  t.ok(withRouting > 1000, `${withRouting} of ${RUNS} headers carried a routing cookie`)
})

t.test('the routing cookie read from the raw header is the value the Cookie parser reads; of several copies, the first that verifies', async (t) => {
  const parse = await cookieParser(t)
  let found = 0
  let copies = 0
  fc.assert(fc.property(fc.oneof(cookieHeader('sticky'), fc.string({ unit: headerChar, maxLength: 300 })), (header) => {
    const parsed = parse(header).sticky
    const seen: string[] = []
    // No copy verifies: the first copy, as the parser reads it.
    const value = readRoutingCookie(header, 'sticky', (values) => { seen.push(...values); return undefined })
    if (value !== undefined) found++
    if (value !== parsed) return false
    if (seen.length < 2) return true
    copies++
    // The last copy verifies: that one is read.
    return readRoutingCookie(header, 'sticky', (values) => values[values.length - 1]) === seen[seen.length - 1]
  }), { numRuns: RUNS })
  t.ok(found > 1000, `${found} of ${RUNS} headers carried a routing cookie`)
  t.ok(copies > 100, `${copies} of ${RUNS} headers carried several`)
  t.equal(readRoutingCookie(' sticky = a%20b ;x=1', 'sticky', () => undefined), 'a b')
  t.equal(readRoutingCookie('xsticky=1; sticky-other=2', 'sticky', () => undefined), undefined)
})

t.test('routing cookie stripping (cookie.forward: false): nothing the parser would read as the routing cookie is left', async (t) => {
  const names = ['sticky', 'sticky-models']
  const parse = await cookieParser(t)
  fc.assert(fc.property(cookieHeader('sticky'), (header) => {
    const kept = removeCookies(header, names)
    if (kept === undefined) return true
    const cookies = parse(kept)
    // What survives is a subsequence of the original pairs: stripping never invents or reorders anything.
    const pairs = header.split(';')
    let from = 0
    for (const pair of kept.split(';')) {
      const at = pairs.findIndex((p, i) => i >= from && p.trim() === pair.trim())
      if (at < 0) return false
      from = at + 1
    }
    return names.every((name) => cookies[name] === undefined)
  }), { numRuns: RUNS })
})

t.test('routing cookie stripping walks the header in place and gives what splitting, filtering and joining gave', async (t) => {
  const names = ['sticky', 'sticky-models']
  // The implementation before #17's hot-path work, kept as the reference.
  const reference = (header: string): string | undefined => {
    if (!names.some((name) => header.includes(name))) return header
    const kept = header.split(';').filter((pair) => {
      const eq = pair.indexOf('=')
      return !names.includes(trimOws(eq < 0 ? pair : pair.slice(0, eq)))
    })
    return kept.length === 0 ? undefined : trimOws(kept.join(';'))
  }
  let stripped = 0
  fc.assert(fc.property(fc.oneof(cookieHeader('sticky'), cookieHeader('sticky-models'), fc.string({ unit: headerChar, maxLength: 300 })), (header) => {
    const kept = removeCookies(header, names)
    if (kept !== header) stripped++
    return kept === reference(header)
  }), { numRuns: RUNS })
  t.equal(removeCookies('sticky=1', names), undefined)
  t.equal(removeCookies(' a=1 ; sticky =2;b ;', names), 'a=1 ;b ;')
  t.equal(removeCookies('stickyx=1; sticky', names), 'stickyx=1')
  t.ok(stripped > 1000, `${stripped} of ${RUNS} headers lost a cookie`)
})

t.test('reading and stripping the routing cookie stay linear in the header: 2 MB of pairs without "=" after it', async (t) => {
  // A quadratic walk (searching for '=' from every pair again) would take minutes here, past the test's timeout.
  const header = 'sticky=x' + ';'.repeat(1 << 21)
  t.equal(readRoutingCookie(header, 'sticky', () => undefined), 'x')
  t.equal(removeCookies(header, ['sticky']), ';'.repeat((1 << 21) - 1))
  t.equal(readRoutingCookie(';'.repeat(1 << 21) + 'sticky=y', 'sticky', () => undefined), 'y')
})

t.test('key extraction: any header, query, cookie or function result; > 1024 characters is junk, never a key', async (t) => {
  const header = one({ header: 'x-tenant' })
  const query = one({ query: 'room' })
  const learn = one({ learn: 'JSESSIONID' })
  const valueish = fc.oneof(
    headerValue(60),
    aroundLimit(MAX_KEY_LENGTH),
    fc.tuple(headerValue(8), fc.integer({ min: 1, max: 20_000 })).map(([unit, times]) => unit.repeat(times)),
    fc.array(headerValue(40), { maxLength: 3 }),
    fc.constantFrom(undefined, null, 0, 1, true, {}, [], ['a', 'b'], [[]], { toString: () => 'x' }, Object.create(null))
  )
  const check = (result: ReturnType<typeof extractKey>, value: unknown): boolean => {
    const first = Array.isArray(value) ? value[0] : value
    if (typeof first !== 'string' || first === '') return !result.ok && !result.junk
    if (first.length > MAX_KEY_LENGTH) return !result.ok && result.junk
    return result.ok && result.raw === first
  }
  fc.assert(fc.property(valueish, (value) => check(extractKey(header, input({ headers: { 'x-tenant': value as string } })), value)), { numRuns: RUNS })
  fc.assert(fc.property(valueish, fc.constantFrom('object', 'null-proto', 'null', 'string'), (value, shape) => {
    const q = shape === 'object' ? { room: value, __proto__: { room: 'polluted' } }
      : shape === 'null-proto' ? Object.assign(Object.create(null), { room: value })
        : shape === 'null' ? null : 'room=1'
    const result = extractKey(query, input({ query: q }))
    return shape === 'null' || shape === 'string' ? !result.ok && !result.junk : check(result, value)
  }), { numRuns: RUNS })
  fc.assert(fc.property(valueish, (value) => check(extractKey(learn, input({ cookies: { JSESSIONID: value as string } })), value)), { numRuns: RUNS })
  fc.assert(fc.property(fc.oneof(valueish, fc.constant('throw')), (value) => {
    const fn = one(() => { if (value === 'throw') throw new Error('boom'); return value as string })
    const result = extractKey(fn, input({}))
    return value === 'throw' ? !result.ok && result.junk : check(result, value)
  }), { numRuns: RUNS })
})

// Oracle for address prefixes: the address masked with BigInt arithmetic.
function v4Network (address: string, prefix: number): string {
  const n = address.split('.').reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n)
  const mask = prefix === 0 ? 0n : ((1n << 32n) - 1n) ^ ((1n << BigInt(32 - prefix)) - 1n)
  const masked = n & mask
  return [24n, 16n, 8n, 0n].map((shift) => String((masked >> shift) & 255n)).join('.')
}

function v6Bits (address: string): bigint {
  // Expand through the URL parser, which prints a canonical form with every group present after '::' expansion.
  const canonical = new URL(`http://[${address.replace(/%.*$/, '')}]/`).hostname.slice(1, -1)
  const [head, tail = ''] = canonical.includes('::') ? canonical.split('::') : [canonical, undefined as unknown as string]
  const headGroups = head === '' ? [] : head.split(':')
  const tailGroups = tail === '' ? [] : tail.split(':')
  const groups = canonical.includes('::')
    ? [...headGroups, ...Array<string>(8 - headGroups.length - tailGroups.length).fill('0'), ...tailGroups]
    : headGroups
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n)
}

t.test('client address keys: masked exactly to the prefix; junk is never a key; nothing throws', async (t) => {
  fc.assert(fc.property(fc.ipV4(), fc.integer({ min: 0, max: 32 }), (address, prefix) =>
    ipPrefixKey(address, prefix, 64) === `4:${v4Network(address, prefix)}/${prefix}`), { numRuns: RUNS })
  fc.assert(fc.property(fc.ipV4(), fc.integer({ min: 0, max: 32 }), (address, prefix) =>
    ipPrefixKey(`::ffff:${address}`, prefix, 64) === `4:${v4Network(address, prefix)}/${prefix}`), { numRuns: RUNS })
  fc.assert(fc.property(fc.ipV6(), fc.integer({ min: 0, max: 128 }), (address, prefix) => {
    const key = ipPrefixKey(address, 32, prefix)
    if (key === undefined) return false
    if (key.startsWith('4:')) return /^::ffff:/i.test(new URL(`http://[${address}]/`).hostname.slice(1, -1))
    const bits = v6Bits(address)
    const mask = prefix === 0 ? 0n : ((1n << 128n) - 1n) ^ ((1n << BigInt(128 - prefix)) - 1n)
    const masked = bits & mask
    const expected = Array.from({ length: 8 }, (_, i) => ((masked >> BigInt(112 - 16 * i)) & 0xffffn).toString(16)).join(':')
    return key === `6:${expected}/${prefix}`
  }), { numRuns: RUNS })
  fc.assert(fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 80 }), fc.string({ unit: fc.constantFrom(':', '.', '1', 'f', '%', 'z', '['), maxLength: 50 }), fc.ipV4Extended()),
    fc.integer({ min: 0, max: 32 }), fc.integer({ min: 0, max: 128 }), (address, p4, p6) => {
      const key = ipPrefixKey(address, p4, p6)
      return net.isIP(address) === 0 ? key === undefined : typeof key === 'string' && key.length < 60
    }), { numRuns: RUNS })
})

t.test('learn mode: any Set-Cookie line is read without throwing, and well-formed ones exactly', async (t) => {
  fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 300 }), fc.constantFrom('JSESSIONID', 'SID', 'a', '__proto__'), (line, name) => {
    const result = parseSetCookie(line, name)
    return result === undefined || (typeof result.value === 'string' && typeof result.deleted === 'boolean')
  }), { numRuns: RUNS })
  // No '%' and no quotes here: those values are read as the client's Cookie header is (next test).
  const value = fc.oneof(headerValue(80), fc.tuple(headerValue(8), fc.integer({ min: 1, max: 300 })).map(([unit, times]) => unit.repeat(times)))
    .map((v) => v.replace(/[;"%]/g, '').trim())
  fc.assert(fc.property(fc.constantFrom('JSESSIONID', 'SID'), value, fc.array(setCookieAttribute, { maxLength: 6 }), (name, raw, attributes) => {
    const line = [`${name}=${raw}`, ...attributes].join('; ')
    const result = parseSetCookie(line, name)
    if (result === undefined || result.value !== raw) return false
    // Oracle (RFC 6265 §5.3): the last valid Max-Age wins over Expires; empty values delete too.
    let maxAge: number | undefined
    let expires: number | undefined
    for (const attribute of attributes) {
      const [key, ...rest] = attribute.split('=')
      const text = rest.join('=').trim()
      if (key.trim().toLowerCase() === 'max-age' && /^-?\d+$/.test(text)) maxAge = Number(text)
      if (key.trim().toLowerCase() === 'expires' && Number.isFinite(Date.parse(text))) expires = Date.parse(text)
    }
    const deleted = raw === '' || (maxAge !== undefined ? maxAge <= 0 : expires !== undefined && expires <= Date.now())
    return result.deleted === deleted && parseSetCookie(line, name === 'SID' ? 'JSESSIONID' : 'SID') === undefined
  }), { numRuns: RUNS })
})

t.test('learn mode: a learnt value is the value the client\'s Cookie header is read back as', async (t) => {
  const parse = await cookieParser(t)
  // What a browser stores from `Set-Cookie: JSESSIONID=<v>` and sends back as `Cookie: JSESSIONID=<v>`: any header
  // characters but ';' (quotes, %-escapes, bytes ≥ 0x80 as a UTF-8 value reads in latin1, padding spaces).
  const value = fc.oneof(headerValue(60), aroundLimit(40), fc.constantFrom('"a"', '%41', '%ZZ', ' a ', 'a\xa0', '\xa0a', 'Ã¿Ã\xa0'))
    .map((v) => v.replace(/;/g, ''))
  fc.assert(fc.property(value, fc.array(setCookieAttribute, { maxLength: 3 }), (raw, attributes) => {
    const learnt = parseSetCookie(['JSESSIONID=' + raw, ...attributes].join('; '), 'JSESSIONID')
    const back = parse('JSESSIONID=' + raw).JSESSIONID ?? ''
    return learnt !== undefined && (learnt.deleted || learnt.value === back)
  }), { numRuns: RUNS })
})
