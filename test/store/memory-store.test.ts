import t from 'tap'
import { FORGET_REMOVED_AFTER_MS } from '../../lib/store/binding-store'
import { MemoryBindingStore } from '../../lib/store/memory-store'
import { bindingStoreContract } from './binding-store.contract'
import { eventually } from '../support/eventually'
import { openStore } from '../support/stores'

bindingStoreContract(t, async (t) => {
  const store = await openStore(t, new MemoryBindingStore())
  return store
})

t.test('bounded: the least recently touched binding goes first', async (t) => {
  const store = await openStore(t, new MemoryBindingStore({ maxBindings: 3 }))
  for (const key of ['k1', 'k2', 'k3']) await store.bindIfAbsent('p', key, 'a', 60_000)
  await store.touch([{ pool: 'p', keyId: 'k1', upstreamId: 'a', ttlMs: 60_000 }])
  await store.bindIfAbsent('p', 'k4', 'b', 60_000)
  t.equal(store.size, 3)
  t.equal(await store.get('p', 'k2'), null, 'k2 was the least recently touched')
  t.not(await store.get('p', 'k1'), null, 'k1 survived because it was touched')
  t.same(await store.sessionCounts('p', ['a', 'b']), { a: 2, b: 1 })
})

t.test('sessionsOf lists the least recently touched first (what a rebalance moves), as Redis lists by expiry', async (t) => {
  const store = await openStore(t, new MemoryBindingStore())
  for (const key of ['k1', 'k2', 'k3']) await store.bindIfAbsent('p', key, 'a', 60_000)
  await store.bindIfAbsent('q', 'k0', 'a', 60_000)
  await store.touch([{ pool: 'p', keyId: 'k1', upstreamId: 'a', ttlMs: 60_000 }])
  t.same(await store.sessionsOf('p', 'a', 2), ['k2', 'k3'])
  t.same(await store.sessionsOf('p', 'a', 10), ['k2', 'k3', 'k1'])
})

t.test('the sweep removes expired bindings nobody reads', async (t) => {
  const store = await openStore(t, new MemoryBindingStore())
  await store.bindIfAbsent('p', 'gone', 'a', 50)
  t.ok(await eventually(() => store.size === 0, 3000), 'swept within about a second')
  t.same(await store.sessionCounts('p', ['a']), { a: 0 })
})

t.test('rejects a bad cap', async (t) => {
  t.throws(() => new MemoryBindingStore({ maxBindings: 0 }), /maxBindings must be a positive integer/)
})

t.test('upstreams added at run time and removed long ago are forgotten as the states change; others are kept', async (t) => {
  const store = await openStore(t, new MemoryBindingStore())
  await store.setUpstreamState('p', 'gone', { admin: 'active', url: 'http://10.0.0.7:80', weight: 1 })
  await store.setUpstreamState('p', 'gone', { admin: 'removed' })
  await store.setUpstreamState('p', 'configured', { admin: 'removed' })
  const realNow = Date.now
  // An hour and more later (the store reads the clock synchronously as it writes).
  Date.now = () => realNow() + FORGET_REMOVED_AFTER_MS + 1000
  try {
    await store.setUpstreamState('p', 'recent', { admin: 'active', url: 'http://10.0.0.8:80', weight: 1 })
  } finally {
    Date.now = realNow
  }
  t.same(Object.keys(await store.upstreamStates('p')).sort(), ['configured', 'recent'], 'a configured one (no url) is kept: its config would bring it back')
})
