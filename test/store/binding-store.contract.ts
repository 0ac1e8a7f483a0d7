import type { Test } from 'tap'
import type { BindingStore, Invalidation } from '../../lib/store/binding-store'
import { eventually } from '../support/eventually'
import { uniquePrefix } from '../support/redis'

let counter = 0
function keyId (): string {
  counter++
  return ('k' + counter.toString(36) + Math.random().toString(36).slice(2)).padEnd(16, 'x').slice(0, 16)
}

/**
 * The contract over a shared store (Redis): each store opened on a fresh key prefix, and its peer on the same prefix,
 * as another gateway on the same Redis would be.
 * @param open - opens an initialised store on a prefix
 */
export function sharedStoreContract (t: Test, open: (t: Test, prefix: string) => Promise<BindingStore>): void {
  const prefixes = new WeakMap<BindingStore, string>()
  bindingStoreContract(t, async (t) => {
    const prefix = uniquePrefix()
    const store = await open(t, prefix)
    prefixes.set(store, prefix)
    return store
  }, async (t, first) => open(t, prefixes.get(first) as string))
}

/**
 * The behaviour every BindingStore must show. `makeStore` returns a fresh, initialised store on its own
 * namespace; `makePeer` (optional) a second store on the same namespace, as another gateway would have.
 */
export function bindingStoreContract (
  t: Test,
  makeStore: (t: Test) => Promise<BindingStore>,
  makePeer?: (t: Test, first: BindingStore) => Promise<BindingStore>
): void {
  t.test('matches interface', async (t) => {
    const store = await makeStore(t)
    for (const method of ['init', 'sharedSalt', 'get', 'peek', 'bindIfAbsent', 'rebind', 'touch', 'delete', 'sessionCounts', 'sessionsOf', 'upstreamStates', 'setUpstreamState', 'onInvalidate', 'onSaltChange', 'close']) {
      t.type((store as unknown as Record<string, unknown>)[method], 'function', method)
    }
    const salt = await store.sharedSalt()
    t.ok(salt.length >= 32, 'salt is long enough')
    t.equal(await store.sharedSalt(), salt, 'salt is stable')
  })

  t.test('bind, get, expire', async (t) => {
    const store = await makeStore(t)
    const key = keyId()
    t.equal(await store.get('p', key), null, 'nothing bound yet')
    const before = Date.now()
    const first = await store.bindIfAbsent('p', key, 'a', 300)
    t.same({ upstreamId: first.upstreamId, created: first.created }, { upstreamId: 'a', created: true })
    t.ok(Math.abs(first.createdAt - before) < 2000, 'createdAt is now')
    const second = await store.bindIfAbsent('p', key, 'b', 300)
    t.same({ upstreamId: second.upstreamId, created: second.created, createdAt: second.createdAt },
      { upstreamId: 'a', created: false, createdAt: first.createdAt }, 'the first binding wins')
    t.same(await store.get('p', key), { upstreamId: 'a', createdAt: first.createdAt })
    t.equal(await store.get('other-pool', key), null, 'pools are separate')
    t.ok(await eventually(async () => (await store.get('p', key)) === null), 'expires after its TTL')
    t.same(await store.sessionCounts('p', ['a', 'b']), { a: 0, b: 0 }, 'an expired binding is not counted')
    const again = await store.bindIfAbsent('p', key, 'b', 1000)
    t.same([again.upstreamId, again.created], ['b', true], 'an expired key can be bound anew')
  })

  t.test('peek answers as get does, or leaves it to get', async (t) => {
    const store = await makeStore(t)
    const key = keyId()
    const agrees = async (what: string): Promise<void> => {
      const peeked = store.peek('p', key)
      const got = await store.get('p', key)
      if (peeked !== undefined) t.same(peeked, got, what)
    }
    await agrees('nothing bound yet')
    const first = await store.bindIfAbsent('p', key, 'a', 60_000)
    await agrees('bound')
    t.same(store.peek('p', key) ?? await store.get('p', key), { upstreamId: 'a', createdAt: first.createdAt })
    t.equal(store.peek('other-pool', key) ?? null, null, 'pools are separate')
    await store.rebind('p', key, 'a', 'b')
    await agrees('moved')
    t.equal((store.peek('p', key) ?? await store.get('p', key))?.upstreamId, 'b', 'a move is seen at once')
    await store.delete('p', key)
    await agrees('deleted')
    t.equal(store.peek('p', key) ?? null, null, 'a deleted binding is not peeked')
    const short = keyId()
    await store.bindIfAbsent('p', short, 'a', 200)
    await store.get('p', short)
    t.ok(await eventually(async () => (store.peek('p', short) ?? null) === null && (await store.get('p', short)) === null), 'expires after its TTL')
  })

  t.test('40 concurrent bindIfAbsent: one winner', async (t) => {
    const store = await makeStore(t)
    const peer = makePeer === undefined ? store : await makePeer(t, store)
    const key = keyId()
    const results = await Promise.all(Array.from({ length: 40 }, (_, i) =>
      (i % 2 === 0 ? store : peer).bindIfAbsent('p', key, ['a', 'b', 'c', 'd'][i % 4], 60_000)))
    const winners = new Set(results.map((r) => r.upstreamId))
    t.equal(winners.size, 1, 'every caller sees the same upstream')
    t.equal(results.filter((r) => r.created).length, 1, 'exactly one call created the binding')
    t.same(await store.sessionCounts('p', ['a', 'b', 'c', 'd']),
      Object.fromEntries(['a', 'b', 'c', 'd'].map((u) => [u, winners.has(u) ? 1 : 0])), 'counted once')
  })

  t.test('touch extends only a binding still on the expected upstream', async (t) => {
    const store = await makeStore(t)
    const key = keyId()
    const other = keyId()
    await store.bindIfAbsent('p', key, 'a', 400)
    await store.bindIfAbsent('p', other, 'a', 400)
    await store.touch([{ pool: 'p', keyId: key, upstreamId: 'a', ttlMs: 60_000 }, { pool: 'p', keyId: other, upstreamId: 'b', ttlMs: 60_000 }])
    t.ok(await eventually(async () => (await store.get('p', other)) === null), 'a touch naming another upstream does not extend')
    t.not(await store.get('p', key), null, 'the touched binding is alive past its first TTL')
    t.same(await store.sessionCounts('p', ['a']), { a: 1 }, 'count follows')
    await store.touch([])
  })

  t.test('rebind is a compare-and-set', async (t) => {
    const store = await makeStore(t)
    const key = keyId()
    t.same(await store.rebind('p', key, 'a', 'b'), { upstreamId: null, swapped: false }, 'nothing to move')
    const made = await store.bindIfAbsent('p', key, 'a', 60_000)
    t.same(await store.rebind('p', key, 'c', 'b'), { upstreamId: 'a', swapped: false }, 'wrong expectation: untouched, current reported')
    t.same(await store.rebind('p', key, 'a', 'b'), { upstreamId: 'b', swapped: true }, 'moved')
    t.same(await store.get('p', key), { upstreamId: 'b', createdAt: made.createdAt }, 'creation time survives a move')
    t.same(await store.sessionCounts('p', ['a', 'b']), { a: 0, b: 1 }, 'counts follow the move')
    const racers = await Promise.all(Array.from({ length: 20 }, (_, i) => store.rebind('p', key, 'b', i % 2 === 0 ? 'c' : 'd')))
    t.equal(racers.filter((r) => r.swapped).length, 1, 'of racing moves exactly one wins')
    t.equal(new Set(racers.map((r) => r.upstreamId)).size, 1, 'and every racer learns the same result')
  })

  t.test('delete and counts', async (t) => {
    const store = await makeStore(t)
    const keys = [keyId(), keyId(), keyId()]
    await store.bindIfAbsent('p', keys[0], 'a', 60_000)
    await store.bindIfAbsent('p', keys[1], 'a', 60_000)
    await store.bindIfAbsent('p', keys[2], 'b', 60_000)
    t.same(await store.sessionCounts('p', ['a', 'b', 'c']), { a: 2, b: 1, c: 0 })
    t.equal(await store.delete('p', keys[0]), true)
    t.equal(await store.delete('p', keys[0]), false, 'deleting twice finds nothing')
    t.equal(await store.get('p', keys[0]), null)
    t.same(await store.sessionCounts('p', ['a', 'b']), { a: 1, b: 1 })
    t.same(await store.sessionCounts('p', []), {})
  })

  t.test('sessionsOf lists the live sessions of one upstream, up to a limit, and follows moves and deletes', async (t) => {
    const store = await makeStore(t)
    const onA = Array.from({ length: 5 }, () => keyId())
    const onB = keyId()
    for (const key of onA) await store.bindIfAbsent('p', key, 'a', 60_000)
    await store.bindIfAbsent('p', onB, 'b', 60_000)
    await store.bindIfAbsent('other', keyId(), 'a', 60_000)
    t.same((await store.sessionsOf('p', 'a', 100)).sort(), [...onA].sort(), 'all of them, only this pool\'s')
    t.equal((await store.sessionsOf('p', 'a', 3)).length, 3, 'at most the limit')
    t.same(await store.sessionsOf('p', 'b', 100), [onB])
    await store.rebind('p', onA[0], 'a', 'b')
    await store.delete('p', onA[1])
    t.same((await store.sessionsOf('p', 'a', 100)).sort(), onA.slice(2).sort(), 'a moved and a deleted session are gone')
    t.same((await store.sessionsOf('p', 'b', 100)).sort(), [onA[0], onB].sort(), 'the moved one is listed where it went')
    const short = keyId()
    await store.bindIfAbsent('p', short, 'c', 30)
    await new Promise((resolve) => setTimeout(resolve, 60))
    t.same(await store.sessionsOf('p', 'c', 100), [], 'an expired session is not listed')
  })

  t.test('invalidation on rebind and delete', async (t) => {
    const store = await makeStore(t)
    const peer = makePeer === undefined ? store : await makePeer(t, store)
    const seen: Invalidation[] = []
    const unsubscribe = peer.onInvalidate((change) => seen.push(change))
    const ready = (peer as { invalidationsReady?: () => Promise<void> }).invalidationsReady
    if (ready !== undefined) await ready.call(peer)
    const key = keyId()
    await store.bindIfAbsent('p', key, 'a', 60_000)
    await store.rebind('p', key, 'a', 'b')
    await store.delete('p', key)
    t.ok(await eventually(() => seen.length >= 2), 'both changes delivered')
    t.same(seen, [{ pool: 'p', keyId: key }, { pool: 'p', keyId: key }])
    unsubscribe()
    await store.bindIfAbsent('p', key, 'a', 60_000)
    await store.delete('p', key)
    await new Promise((resolve) => setTimeout(resolve, 100))
    t.equal(seen.length, 2, 'nothing after unsubscribing')
  })

  t.test('shared upstream state', async (t) => {
    const store = await makeStore(t)
    const peer = makePeer === undefined ? store : await makePeer(t, store)
    t.same(await store.upstreamStates('p'), {}, 'nothing recorded: every upstream active and up')
    const drained = await store.setUpstreamState('p', 'a', { admin: 'draining' })
    t.same([drained.admin, drained.down], ['draining', false])
    t.ok(Math.abs(drained.changedAt - Date.now()) < 2000, 'changedAt is now')
    const same = await peer.setUpstreamState('p', 'a', { admin: 'draining' })
    t.equal(same.changedAt, drained.changedAt, 'no change keeps changedAt')
    const down = await peer.setUpstreamState('p', 'a', { down: true })
    t.same([down.admin, down.down], ['draining', true], 'fields not given are kept')
    await peer.setUpstreamState('p', 'b', { down: true })
    const states = await store.upstreamStates('p')
    t.same(Object.keys(states).sort(), ['a', 'b'], 'every gateway sees the same states')
    t.same([states.a.admin, states.a.down, states.b.admin, states.b.down], ['draining', true, 'active', true])
    t.same(await store.upstreamStates('other'), {}, 'pools are separate')
    const back = await store.setUpstreamState('p', 'a', { admin: 'active', down: false })
    t.same([back.admin, back.down], ['active', false])
  })

  t.test('close is idempotent', async (t) => {
    const store = await makeStore(t)
    await store.close()
    await store.close()
    t.pass('closed twice')
  })
}
