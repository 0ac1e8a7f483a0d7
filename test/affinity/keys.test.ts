import t from 'tap'
import { extractKey, ipPrefixKey, MAX_KEY_LENGTH, resolveKeySources, type KeyInput, type ResolvedKeySource } from '../../lib/affinity/keys'

const fail = (path: string, message: string): never => { throw new Error(`${path} ${message}`) }
const one = (source: unknown): Exclude<ResolvedKeySource, { kind: 'cookie' }> =>
  (resolveKeySources(source, fail) as ResolvedKeySource[])[0] as Exclude<ResolvedKeySource, { kind: 'cookie' }>
const input = (over: Partial<KeyInput>): KeyInput => ({ ip: undefined, headers: {}, query: {}, cookies: {}, request: {}, ...over })

t.test('ip keys: IPv4 per address, IPv6 by /64, mapped IPv4 as IPv4', async (t) => {
  t.equal(ipPrefixKey('203.0.113.7', 32, 64), '4:203.0.113.7/32')
  t.equal(ipPrefixKey('203.0.113.7', 24, 64), '4:203.0.113.0/24')
  t.equal(ipPrefixKey('::ffff:203.0.113.7', 32, 64), '4:203.0.113.7/32', 'IPv4-mapped')
  const a = ipPrefixKey('2001:db8:1:2:aaaa:bbbb:cccc:dddd', 32, 64)
  t.equal(a, '6:2001:db8:1:2:0:0:0:0/64')
  t.equal(ipPrefixKey('2001:db8:1:2::1', 32, 64), a, 'same /64, other interface id: same key')
  t.not(ipPrefixKey('2001:db8:1:3::1', 32, 64), a, 'another /64')
  t.equal(ipPrefixKey('2001:db8:1:2::1', 32, 48), '6:2001:db8:1:0:0:0:0:0/48')
  t.equal(ipPrefixKey('fe80::1%eth0', 32, 64), '6:fe80:0:0:0:0:0:0:0/64', 'zone dropped')
  t.equal(ipPrefixKey('::', 32, 128), '6:0:0:0:0:0:0:0:0/128')
  t.equal(ipPrefixKey('not-an-ip', 32, 64), undefined)
  t.equal(ipPrefixKey('1.2.3.4.5', 32, 64), undefined)
})

t.test('extractors: header, query, app cookie, function, ip; junk is refused', async (t) => {
  t.same(extractKey(one({ header: 'X-Tenant' }), input({ headers: { 'x-tenant': 'acme' } })), { ok: true, raw: 'acme' })
  t.same(extractKey(one({ header: 'x-tenant' }), input({ headers: { 'x-tenant': ['a', 'b'] } })), { ok: true, raw: 'a' }, 'first of repeated values')
  t.same(extractKey(one({ header: 'x-tenant' }), input({ headers: { 'x-tenant': '' } })), { ok: false, junk: false }, 'empty: no key')
  t.same(extractKey(one({ header: 'x-tenant' }), input({})), { ok: false, junk: false }, 'missing: no key')
  t.same(extractKey(one({ header: 'x-tenant' }), input({ headers: { 'x-tenant': 'x'.repeat(MAX_KEY_LENGTH + 1) } })), { ok: false, junk: true }, 'too long: junk')
  t.same(extractKey(one({ query: 'room' }), input({ query: { room: '42' } })), { ok: true, raw: '42' })
  t.same(extractKey(one({ query: 'room' }), input({ query: null })), { ok: false, junk: false })
  t.same(extractKey(one({ learn: 'JSESSIONID' }), input({ cookies: { JSESSIONID: 'abc' } })), { ok: true, raw: 'abc' })
  t.same(extractKey(one((r: { id: string }) => r.id), input({ request: { id: 'r1' } })), { ok: true, raw: 'r1' })
  t.same(extractKey(one(() => { throw new Error('boom') }), input({})), { ok: false, junk: true }, 'a throwing function is junk, not a crash')
  t.same(extractKey(one('ip'), input({ ip: '198.51.100.1' })), { ok: true, raw: '4:198.51.100.1/32' })
  t.same(extractKey(one('ip'), input({ ip: 'garbage' })), { ok: false, junk: true })
  t.same(extractKey(one({ ip: { ipv4Prefix: 16 } }), input({ ip: '198.51.100.1' })), { ok: true, raw: '4:198.51.0.0/16' })
})

t.test('key sources keep apart: one value under two kinds is two keys', async (t) => {
  const sources = resolveKeySources([{ header: 'x-a' }, { query: 'x-a' }, 'ip', 'cookie'], fail) as ResolvedKeySource[]
  const namespaces = sources.filter((s) => s.kind !== 'cookie').map((s) => (s as { namespace: string }).namespace)
  t.equal(new Set(namespaces).size, 3)
  t.equal(resolveKeySources(false, fail), false)
})
