/**
 * fast-check arbitraries for hostile input, shared by the hardening tests. Header values are drawn from what
 * Node's HTTP parser lets through (tab, visible ASCII, space, obs-text 0x80–0xff): anything else never reaches
 * Fastify over a real socket, so feeding it through `inject()` would test a request no client can send.
 */
import fc from 'fast-check'

const HEADER_CODES = [9, ...Array.from({ length: 0x7e - 0x20 + 1 }, (_, i) => 0x20 + i), ...Array.from({ length: 0xff - 0x80 + 1 }, (_, i) => 0x80 + i)]

/** One character a header value may hold. */
export const headerChar: fc.Arbitrary<string> = fc.constantFrom(...HEADER_CODES).map((code) => String.fromCharCode(code))

/** Characters an attacker likes in cookies and keys: separators, quotes, escapes, dots, percent signs. */
export const nastyChar: fc.Arbitrary<string> = fc.constantFrom(';', '=', ',', '"', '\\', '.', '%', ' ', '\t', '/', '+', '\xff', '\x80', '$', '{', '}', '[', ']', '%00', '%ZZ', '%E0%A4%A')

/** A header value of any shape, biased towards the characters that break parsers. */
export function headerValue (maxLength: number): fc.Arbitrary<string> {
  return fc.oneof(
    fc.string({ unit: headerChar, maxLength }),
    fc.string({ unit: fc.oneof(headerChar, nastyChar), maxLength: Math.min(maxLength, 200) }),
    fc.string({ unit: 'grapheme-ascii', maxLength })
  ).map((value) => value.slice(0, maxLength).trim())
}

/** A value around (and across) a size limit: just under, at, just over and far over it. */
export function aroundLimit (limit: number): fc.Arbitrary<string> {
  return fc.tuple(fc.integer({ min: -3, max: 3 }), fc.constantFrom('a', '%', '.', 'Z')).map(([delta, ch]) => ch.repeat(Math.max(1, limit + delta)))
}

/** Mutations of a valid string: one character replaced, removed or added, truncation, duplication, case flip. */
export function mutationOf (valid: string): fc.Arbitrary<string> {
  const index = fc.nat({ max: valid.length - 1 })
  return fc.oneof(
    fc.tuple(index, headerChar).map(([i, ch]) => valid.slice(0, i) + ch + valid.slice(i + 1)),
    index.map((i) => valid.slice(0, i) + valid.slice(i + 1)),
    fc.tuple(index, headerChar).map(([i, ch]) => valid.slice(0, i) + ch + valid.slice(i)),
    index.map((i) => valid.slice(0, i)),
    fc.string({ unit: headerChar, minLength: 1, maxLength: 40 }).map((tail) => valid + tail),
    fc.constant(valid + valid),
    fc.constant(valid.toUpperCase()),
    fc.constant(valid.toLowerCase()),
    index.map((i) => valid.slice(i) + valid.slice(0, i))
  ).filter((mutated) => mutated !== valid)
}

/**
 * A Cookie header built from pairs, junk and the given routing cookie name (also padded with spaces, `sticky =v`,
 * which the parser reads as `sticky`), with irregular separators.
 */
export function cookieHeader (routingName: string, extraValues: fc.Arbitrary<string> = headerValue(80)): fc.Arbitrary<string> {
  const names = [routingName, routingName, `${routingName}-other`, `x${routingName}`, routingName.toUpperCase(), 'JSESSIONID', '__proto__', 'constructor', '',
    ` ${routingName}`, `${routingName} `, `\t${routingName} `]
  const name = fc.oneof(
    fc.constantFrom(...names),
    fc.string({ unit: headerChar, maxLength: 12 }).filter((n) => !n.includes(';') && !n.includes('='))
  )
  const pair = fc.oneof(
    fc.tuple(name, extraValues).map(([n, v]) => `${n}=${v.replace(/;/g, '')}`),
    fc.tuple(name, extraValues).map(([n, v]) => `${n}="${v.replace(/[;"]/g, '')}"`),
    fc.string({ unit: headerChar, maxLength: 20 }).map((junk) => junk.replace(/;/g, ''))
  )
  const separator = fc.constantFrom(';', '; ', ';;', ' ; ', ';\t', '; ;')
  return fc.array(fc.tuple(pair, separator), { maxLength: 12 }).map((pairs) => pairs.map(([p, s]) => p + s).join('').trim())
}

/** Things X-Forwarded-For may carry: addresses of both families, zones, ports, junk, empty entries. */
export const forwardedEntry: fc.Arbitrary<string> = fc.oneof(
  fc.ipV4(),
  fc.ipV6(),
  fc.ipV4Extended(),
  fc.tuple(fc.ipV6(), fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 10 })).map(([ip, zone]) => `${ip}%${zone.replace(/[,\s]/g, '')}`),
  fc.tuple(fc.ipV4(), fc.integer({ min: 0, max: 70000 })).map(([ip, port]) => `${ip}:${port}`),
  fc.ipV6().map((ip) => `[${ip}]`),
  fc.ipV4().map((ip) => `::ffff:${ip}`),
  fc.constantFrom('', 'unknown', '_hidden', 'localhost', '999.1.1.1', '1.2.3', '::::', '1:2:3:4:5:6:7:8:9', '-1.0.0.0', '0x7f.1', '127.1'),
  fc.string({ unit: headerChar, maxLength: 30 }).map((s) => s.replace(/,/g, ''))
)

/** An X-Forwarded-For header: a list of entries with irregular separators. */
export const forwardedFor: fc.Arbitrary<string> = fc.array(fc.tuple(forwardedEntry, fc.constantFrom(',', ', ', ' ,', ',,')), { minLength: 1, maxLength: 6 })
  .map((entries) => entries.map(([entry, sep], i) => (i === 0 ? '' : sep) + entry).join(''))

/** A path segment with %-encoding, valid or not, and dot segments in every disguise. */
export const pathSegment: fc.Arbitrary<string> = fc.oneof(
  fc.webSegment(),
  fc.constantFrom('.', '..', '%2e', '%2E', '%2e%2e', '%2E%2E', '.%2e', '%2e.', '..%2f', '%2f..', '%00', '%', '%ZZ', '%C0%AE', '%c0%ae%c0%ae', '%252e%252e', '...', '..;', ';..', '%5c..', '..%5c', '\\..', '~', '@', ':'),
  fc.string({ unit: fc.constantFrom('a', 'Z', '0', '-', '_', '.', '~', '%', '2', 'e', 'f', 'F', '!', '$', '&', "'", '(', ')', '*', '+', ',', ';', '=', ':', '@'), maxLength: 12 })
)

/** A request target in origin-form (what a browser sends), of any shape. */
export const originFormTarget: fc.Arbitrary<string> = fc.tuple(
  fc.array(pathSegment, { maxLength: 8 }),
  fc.constantFrom('/', '//', '/./', '/../'),
  fc.option(fc.webQueryParameters(), { nil: undefined }),
  fc.boolean()
).map(([segments, lead, query, trailing]) => lead + segments.join('/') + (trailing ? '/' : '') + (query === undefined ? '' : '?' + query))

/** Set-Cookie attributes in any order and case, some malformed. */
export const setCookieAttribute: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom('Path=/', 'HttpOnly', 'Secure', 'SameSite=Lax', 'SameSite=None', 'Domain=example.com', 'Partitioned', 'max-age', 'Max-Age=', 'Expires=', 'Expires=never', 'Max-Age=1e3', 'Max-Age=-', 'Max-Age= 5'),
  fc.integer({ min: -1000, max: 100000 }).map((n) => `Max-Age=${n}`),
  fc.mixedCase(fc.constant('max-age')).chain((key) => fc.integer({ min: -5, max: 5 }).map((n) => `${key}=${n}`)),
  fc.integer({ min: -5e11, max: 5e11 }).map((delta) => `Expires=${new Date(Date.now() + delta).toUTCString()}`),
  fc.string({ unit: headerChar, maxLength: 30 }).map((s) => s.replace(/;/g, ''))
)

/** Runs async work with bounded concurrency (fast-check's async runner is sequential; a gateway is not). */
export async function inBatches<T> (items: readonly T[], concurrency: number, work: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < items.length) {
      const index = next++
      await work(items[index], index)
    }
  }))
}

/** A reproducible sample of `count` values (seeded, so a failure can be replayed by its seed). */
export function sample<T> (arbitrary: fc.Arbitrary<T>, count: number, seed: number): T[] {
  return fc.sample(arbitrary, { numRuns: count, seed })
}
