import t from 'tap'
import { createKeyIdDeriver, KEY_ID_LENGTH } from '../../lib/affinity/key-id'

t.test('key ids: stable per salt, different across salts, never the raw key', async (t) => {
  const salt = 'a-shared-salt-of-at-least-32-characters'
  const one = createKeyIdDeriver(salt)
  const two = createKeyIdDeriver(salt)
  const other = createKeyIdDeriver(salt + 'x')
  const raw = '203.0.113.7'
  t.equal(one(raw), two(raw), 'every gateway with the same salt derives the same id')
  t.not(one(raw), other(raw), 'another salt, another id')
  t.not(one(raw), one('203.0.113.8'))
  t.match(one(raw), new RegExp(`^[A-Za-z0-9_-]{${KEY_ID_LENGTH}}$`))
  t.notOk(one(raw).includes('203'), 'not the raw key')
  const ids = new Set(Array.from({ length: 10_000 }, (_, i) => one('client-' + i)))
  t.equal(ids.size, 10_000, 'no collisions over 10k keys')
})
