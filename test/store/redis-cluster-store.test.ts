import t, { type Test } from 'tap'
import Redis, { Cluster } from 'ioredis'
import { createKeyIdDeriver } from '../../lib/affinity/key-id'
import { NearCacheStore } from '../../lib/store/near-cache'
import { RedisBindingStore } from '../../lib/store/redis-store'
import { startRedisCluster } from '../support/redis-cluster'
import { uniquePrefix } from '../support/redis'
import { sharedStoreContract } from './binding-store.contract'
import { eventually } from '../support/eventually'
import { openStore } from '../support/stores'

t.test('redis store on a real 3-master Redis Cluster', async (t) => {
  const cluster = await startRedisCluster(t)
  const client = new Cluster(cluster.startupNodes.map((node) => ({ ...node })))
  client.on('error', () => {}) // the last test stops a node
  t.teardown(() => client.disconnect())

  // A caller-owned ioredis Cluster: the form of the `redis` option most deployments use.
  t.test('contract, caller-owned Cluster instance', async (t) => {
    const open = async (t: Test, prefix: string): Promise<RedisBindingStore> => {
      const store = await openStore(t, new RedisBindingStore({ redis: client, prefix }))
      return store
    }
    sharedStoreContract(t, open)
  })

  // The store creates and owns a fail-fast Cluster client from the node list; with a near cache in front.
  t.test('contract, node list, behind a near cache', async (t) => {
    const open = async (t: Test, prefix: string): Promise<NearCacheStore> => {
      const store = await openStore(t, new NearCacheStore(new RedisBindingStore({ redis: { cluster: cluster.startupNodes }, prefix })))
      // Subscribed before the contract publishes anything (a subscription still on its way misses the messages).
      t.ok(await eventually(() => store.live), 'near cache live')
      return store
    }
    sharedStoreContract(t, open)
  })

  t.test('bindings spread over the three masters; counts add up across slots', async (t) => {
    const prefix = uniquePrefix()
    const store = await openStore(t, new RedisBindingStore({ redis: client, prefix }))
    const derive = createKeyIdDeriver(await store.sharedSalt())
    const keys = Array.from({ length: 300 }, (_, i) => derive('client-' + i))
    await Promise.all(keys.map((key, i) => store.bindIfAbsent('shop', key, ['a', 'b', 'c'][i % 3], 60_000)))
    const perNode: number[] = []
    for (const node of cluster.nodes) {
      const direct = new Redis(node.port, '127.0.0.1')
      t.teardown(() => direct.disconnect())
      let cursor = '0'
      let bindings = 0
      for (let i = 0; i < 1000; i++) {
        const [next, found] = await direct.scan(cursor, 'MATCH', prefix + '*:b:*', 'COUNT', 1000)
        bindings += found.length
        cursor = next
        if (cursor === '0') break
      }
      perNode.push(bindings)
    }
    t.equal(perNode.reduce((a, b) => a + b, 0), 300, 'every binding is on exactly one master')
    t.ok(perNode.every((n) => n >= 30), `each master holds a share (${perNode.join(', ')})`)
    t.same(await store.sessionCounts('shop', ['a', 'b', 'c']), { a: 100, b: 100, c: 100 }, 'counts aggregate the 16 shards on 3 nodes')
  })

  t.test('invalidations reach a store subscribed through another node', async (t) => {
    const prefix = uniquePrefix()
    const stores = await Promise.all(Array.from({ length: 4 }, async () => {
      const store = await openStore(t, new RedisBindingStore({ redis: { cluster: cluster.startupNodes }, prefix }))
      return store
    }))
    const seen = stores.map(() => 0)
    stores.forEach((store, i) => store.onInvalidate(() => { seen[i]++ }))
    await Promise.all(stores.map((store) => store.invalidationsReady()))
    const derive = createKeyIdDeriver(await stores[0].sharedSalt())
    for (let i = 0; i < 20; i++) {
      const key = derive('k' + i)
      await stores[0].bindIfAbsent('p', key, 'a', 60_000)
      await stores[0].rebind('p', key, 'a', 'b')
    }
    t.ok(await eventually(() => seen.every((n) => n === 20)), `every store heard all 20 moves (${seen.join(', ')})`)
  })

  // Last: it stops a node.
  t.test('the Cluster subscriber: a dropped subscription is seen, and it moves off a node that is gone', async (t) => {
    const prefix = uniquePrefix()
    const inner = new RedisBindingStore({ redis: { cluster: cluster.startupNodes }, prefix })
    const near = await openStore(t, new NearCacheStore(inner))
    // A fail-fast client of the store's own (not the caller-owned `client`, whose default retries keep a command
    // for a slot on the stopped node waiting for tens of seconds): such a key fails at once and the next is tried.
    const peer = await openStore(t, new RedisBindingStore({ redis: { cluster: cluster.startupNodes }, prefix }))
    t.ok(await eventually(() => near.live), 'live')
    const states: boolean[] = []
    inner.onInvalidationsLive((live) => states.push(live))
    const admins = cluster.nodes.map((node) => {
      const admin = new Redis(node.port, '127.0.0.1')
      admin.on('error', () => {}) // one of the nodes is stopped below
      t.teardown(() => admin.disconnect())
      return admin
    })
    const killed = await Promise.all(admins.map(async (admin) => Number(await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub'))))
    t.equal(killed.reduce((a, b) => a + b, 0), 1, 'one subscriber connection, on one node')
    t.ok(await eventually(() => states.length >= 2 && near.live, 3000), `dropped, then live again (${states.join(' → ')})`)

    const lists = await Promise.all(admins.map(async (admin) => String(await admin.call('CLIENT', 'LIST', 'TYPE', 'pubsub'))))
    const holder = lists.findIndex((list) => list.includes('sub=1'))
    t.ok(holder >= 0, `the subscriber is on node ${holder}`)
    states.length = 0
    await cluster.nodes[holder].stop()
    t.ok(await eventually(() => states[0] === false && near.live, 5000), `moved to another node (${states.join(' → ')})`)
    const lists2 = await Promise.all(admins.filter((_, i) => i !== holder).map(async (admin) => String(await admin.call('CLIENT', 'LIST', 'TYPE', 'pubsub'))))
    t.ok(lists2.some((list) => list.includes('sub=1')), 'subscribed on a node still up')
    // A key whose slot lives on a master still up: a move there reaches the near cache again.
    const derive = createKeyIdDeriver(await peer.sharedSalt())
    let moved = false
    for (let i = 0; i < 50 && !moved; i++) {
      const key = derive('after-' + i)
      const made = await peer.bindIfAbsent('p', key, 'a', 60_000).catch(() => null)
      if (made === null) continue // its slot was on the stopped node
      t.equal((await near.get('p', key))?.upstreamId, 'a')
      if (await peer.rebind('p', key, 'a', 'b').then(() => false, () => true)) continue
      moved = await eventually(async () => (await near.get('p', key))?.upstreamId === 'b', 1000)
    }
    t.ok(moved, 'invalidations flow through the new node')
  })
})
