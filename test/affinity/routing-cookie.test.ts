import { signerFactory } from '@fastify/cookie'
import t from 'tap'
import { base36, createRoutingCookieCodec, MAX_ROUTING_COOKIE_LENGTH, newBindingId } from '../../lib/affinity/routing-cookie'

const OLD = 'old-secret-0123456789-abcdefghijklmnopq'
const NEW = 'new-secret-0123456789-abcdefghijklmnopq'

t.test('sign and verify a token', async (t) => {
  const codec = createRoutingCookieCodec([NEW])
  const token = { bindingId: newBindingId(), upstreamId: 'shop-a', createdAt: 1_700_000_000_000 }
  const value = codec.sign(token)
  t.same(codec.verify(value), { ok: true, token, renew: false })
  t.match(value, /^1\.[A-Za-z0-9_-]{22}\.shop-a\.[0-9a-z]+\./, 'version.bindingId.upstream.time.signature')
})

t.test('rotation over three generations: newest signs, all verify, older ones are renewed', async (t) => {
  const oldest = 'oldest-secret-0123456789-abcdefghijklmn'
  const token = { bindingId: newBindingId(), upstreamId: 'a', createdAt: 1_700_000_000_000 }
  const fromOldest = createRoutingCookieCodec([oldest]).sign(token)
  const fromOld = createRoutingCookieCodec([OLD, oldest]).sign(token)
  const current = createRoutingCookieCodec([NEW, OLD, oldest])
  t.same(current.verify(fromOldest), { ok: true, token, renew: true })
  t.same(current.verify(fromOld), { ok: true, token, renew: true })
  t.same(current.verify(current.sign(token)), { ok: true, token, renew: false })
  t.same(createRoutingCookieCodec([NEW]).verify(fromOld), { ok: false, reason: 'bad-signature' }, 'a retired secret no longer verifies')
})

t.test('refuses bad input without throwing', async (t) => {
  const codec = createRoutingCookieCodec([NEW])
  const good = codec.sign({ bindingId: newBindingId(), upstreamId: 'a', createdAt: 1_700_000_000_000 })
  t.same(codec.verify('x'.repeat(MAX_ROUTING_COOKIE_LENGTH + 1)), { ok: false, reason: 'oversized' })
  t.same(codec.verify(''), { ok: false, reason: 'bad-signature' })
  t.same(codec.verify('no-dot-at-all'), { ok: false, reason: 'bad-signature' })
  t.same(codec.verify(good.slice(0, -1)), { ok: false, reason: 'bad-signature' }, 'truncated signature')
  t.same(codec.verify(good.replace('.a.', '.b.')), { ok: false, reason: 'bad-signature' }, 'tampered upstream')
  // Signed with our secret but not a token of this version: refused as garbled.
  const raw = signerFactory([NEW])
  for (const payload of ['2.' + newBindingId() + '.a.abc', '1.short.a.abc', '1.' + newBindingId() + '..abc', '1.' + newBindingId() + '.a', '1.' + newBindingId() + '.a.!!']) {
    t.same(codec.verify(raw.sign(payload)), { ok: false, reason: 'garbled' }, payload)
  }
})

t.test('binding ids are random 128-bit base64url', async (t) => {
  const ids = new Set(Array.from({ length: 1000 }, newBindingId))
  t.equal(ids.size, 1000)
  t.ok([...ids].every((id) => /^[A-Za-z0-9_-]{22}$/.test(id)), 'all 22 base64url characters')
})

t.test('verified values are remembered (bounded); forged ones never are', async (t) => {
  const codec = createRoutingCookieCodec([NEW], 2)
  const values = ['a', 'b', 'c'].map((upstreamId) => codec.sign({ bindingId: newBindingId(), upstreamId, createdAt: 1_700_000_000_000 }))
  const first = codec.verify(values[0])
  t.equal(codec.verify(values[0]), first, 'the second check of one value is the remembered answer')
  codec.verify(values[1])
  codec.verify(values[2])
  t.not(codec.verify(values[0]), first, 'past the bound the oldest is forgotten (verified again, a new answer)')
  t.same(codec.verify(values[0]), first, 'with the same content')
  const forged = values[1].slice(0, -2) + 'xx'
  t.same(codec.verify(forged), { ok: false, reason: 'bad-signature' })
  t.same(codec.verify(forged), { ok: false, reason: 'bad-signature' }, 'forged values are checked every time')
})

t.test('base36 writes what Number#toString(36) writes, so cookies keep their format', async (t) => {
  const cases = [0, 1, 35, 36, 37, 1_295, 1_296, 1_700_000_000_000, Date.now(), Number.MAX_SAFE_INTEGER]
  // Random safe integers, and the ones just below a multiple of 36 (where a rounded-up quotient would show).
  for (let i = 0; i < 20_000; i++) {
    cases.push(Math.floor(Math.random() * 2 ** 53))
    cases.push(Math.ceil(Math.random() * 2 ** 53 / 36) * 36 - 1)
  }
  const wrong = cases.filter((n) => base36(n) !== n.toString(36))
  t.same(wrong, [])
  t.equal(base36(1_700_000_000_000), 'loyw3v28')
})

t.test('a signed token carries its creation time in base 36', async (t) => {
  const codec = createRoutingCookieCodec([NEW])
  const value = codec.sign({ bindingId: newBindingId(), upstreamId: 'a', createdAt: 1_700_000_000_123.7 })
  t.equal(value.split('.')[3], (1_700_000_000_123).toString(36))
  t.match(codec.verify(value), { ok: true, token: { createdAt: 1_700_000_000_123 } })
})
