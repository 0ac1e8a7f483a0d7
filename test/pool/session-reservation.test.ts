// The pool's session counts are kept only through reservations: a reserved slot is counted at once (so new
// sessions arriving together spread), a released one is taken back exactly once, and a store-wide count read while
// reservations are in flight keeps them on top.
import t from 'tap'
import { resolveOptions } from '../../lib/options'
import { UpstreamPool } from '../../lib/pool/upstream-pool'
import { MemoryBindingStore } from '../../lib/store/memory-store'

const config = resolveOptions({
  secret: 'test-secret-0123456789-abcdefghijklmnop',
  pools: { shop: { upstreams: [{ id: 'a', url: 'http://127.0.0.1:9' }, { id: 'b', url: 'http://127.0.0.1:10' }] } }
}).pools.shop

t.test('a reservation counts at once and is released once', async (t) => {
  const store = new MemoryBindingStore({})
  t.teardown(() => store.close())
  await store.init()
  const pool = new UpstreamPool('shop', config, store)
  const first = pool.pickForNewSession('k1')
  t.ok(first)
  if (first === undefined) return
  const reservation = pool.reserve(first.id)
  t.not(pool.pickForNewSession('k2')?.id, first.id, 'the next new session goes to the other upstream')
  reservation.release()
  reservation.release()
  const other = pool.reserve(first.id === 'a' ? 'b' : 'a')
  t.not(pool.pickForNewSession('k3')?.id, other.upstreamId, 'released twice, taken back once: the first is empty again')
  other.release()
})

t.test('a store-wide count read meanwhile keeps in-flight reservations on top', async (t) => {
  const store = new MemoryBindingStore({})
  t.teardown(() => store.close())
  await store.init()
  await store.bindIfAbsent('shop', 'bound-elsewhere', 'a', 60_000)
  const pool = new UpstreamPool('shop', config, store)
  const reading = pool.refreshCounts()
  const onB = pool.reserve('b')
  const onB2 = pool.reserve('b')
  await reading
  // Store: a=1, b=0; plus two in flight on b → b=2 > a=1.
  t.equal(pool.pickForNewSession('k')?.id, 'a', 'the reservations made during the read still count')
  onB.release()
  onB2.release()
  t.equal(pool.pickForNewSession('k')?.id, 'b', 'and are taken back: b is empty again')
})
