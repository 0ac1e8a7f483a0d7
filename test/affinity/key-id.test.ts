import t from 'tap'
import { createKeyIdDeriver, KEY_ID_LENGTH, StoreKeyIds } from '../../lib/affinity/key-id'
import { LruMap } from '../../lib/lru-map'

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

t.test('StoreKeyIds: no id before the salt is known; remembered ids follow a salt change', async (t) => {
  let salt = 'the-first-salt-of-at-least-32-characters'
  let loads = 0
  const keyIds = new StoreKeyIds(async () => { loads++; return salt }, 2)
  t.equal(keyIds.derive('client-1'), undefined, 'no salt yet: no id (a load starts)')
  await keyIds.load()
  const first = createKeyIdDeriver(salt)
  t.equal(keyIds.derive('client-1'), first('client-1'))
  t.equal(keyIds.derive('client-1'), first('client-1'), 'the remembered id is the same')
  const long = 'k'.repeat(2_000)
  t.equal(keyIds.derive(long), first(long), 'long keys are derived (and not remembered)')
  t.equal(keyIds.derive('fresh-binding-id', false), first('fresh-binding-id'), 'a key not to remember is derived the same')
  salt = 'the-second-salt-of-at-least-32-characters'
  keyIds.useSalt(salt)
  t.equal(keyIds.derive('client-1'), createKeyIdDeriver(salt)('client-1'), 'a new salt: the remembered id is not used')
  t.ok(loads >= 1)
})

t.test('LruMap: bounded, forgets the least recently used', async (t) => {
  const map = new LruMap<string, number>(2)
  map.set('a', 1)
  map.set('b', 2)
  t.equal(map.get('a'), 1, 'a is now the most recent')
  map.set('c', 3)
  t.equal(map.get('b'), undefined, 'b was the least recently used')
  t.equal(map.get('a'), 1)
  t.equal(map.get('c'), 3)
  map.set('c', 4)
  t.equal(map.size, 2, 'setting a held key evicts nothing')
  t.equal(map.get('a'), 1)
  map.clear()
  t.equal(map.size, 0)
  const none = new LruMap<string, number>(0)
  none.set('a', 1)
  t.equal(none.get('a'), undefined, 'capacity 0 keeps nothing')
})
