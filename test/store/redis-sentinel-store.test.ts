import t, { type Test } from 'tap'
import Redis from 'ioredis'
import { request } from 'undici'
import { NearCacheStore } from '../../lib/store/near-cache'
import { RedisBindingStore } from '../../lib/store/redis-store'
import { startGateway } from '../support/gateway'
import { uniquePrefix } from '../support/redis'
import { startRedisSentinel } from '../support/redis-sentinel'
import { startUpstreams } from '../support/upstreams'
import { sharedStoreContract } from './binding-store.contract'
import { eventually } from '../support/eventually'
import { openStore } from '../support/stores'

t.test('Redis behind Sentinel (one master, one replica, real redis-sentinel)', async (t) => {
  const setup = await startRedisSentinel(t)

  // A caller-owned ioredis client created with `{ sentinels, name }` is an ordinary Redis instance to the store.
  t.test('contract, caller-owned sentinel client', async (t) => {
    const client = new Redis({ sentinels: [...setup.sentinels], name: setup.name })
    t.teardown(() => client.disconnect())
    const open = async (t: Test, prefix: string): Promise<RedisBindingStore> => {
      const store = await openStore(t, new RedisBindingStore({ redis: client, prefix }))
      return store
    }
    sharedStoreContract(t, open)
  })

  t.test('a master failover under light traffic: no 5xx, cookie clients keep their upstream, bindings intact', async (t) => {
    const upstreams = await startUpstreams(t)
    const store = await openStore(t, new NearCacheStore(new RedisBindingStore({ redis: { sentinels: setup.sentinels, name: setup.name }, prefix: uniquePrefix() })))
    t.ok(await eventually(() => store.live), 'near cache live')
    // Counts the keys touched: touch batches go out from a timer, within a second.
    let touched = 0
    const touch = store.touch.bind(store)
    store.touch = async (requests) => {
      await touch(requests)
      touched += requests.length
    }
    const gateway = await startGateway(t, { upstreams, store })
    const clients: Array<{ cookie: string, upstream: string }> = []
    for (let i = 0; i < 30; i++) {
      const first = await request(`${gateway.url}/bind`)
      const { upstream } = await first.body.json() as { upstream: string }
      const cookie = String(first.headers['set-cookie']).split(';')[0]
      await (await request(`${gateway.url}/bind`, { headers: { cookie } })).body.dump()
      clients.push({ cookie, upstream })
    }
    const direct = new Redis(setup.master.port, '127.0.0.1')
    t.teardown(() => direct.disconnect())
    // Failover loses what the replica has not received yet: make sure it has the bindings (and their touches).
    t.ok(await eventually(() => touched >= clients.length, 3000), `every client's binding touched (${touched})`)
    t.equal(Number(await direct.call('WAIT', '1', '2000')), 1, 'the replica acknowledged every write')
    const before = await gateway.app.sticky.sessionCounts('shop')
    const total = (counts: Record<string, number>): number => Object.values(counts).reduce((a, b) => a + b, 0)
    t.equal(total(before), 30, '30 live sessions before')

    const statuses = new Map<number, number>()
    let strays = 0
    let requests = 0
    let newClients = 0
    let stop = false
    const traffic = (async () => {
      for (let i = 0; !stop && i < 100_000; i++) {
        const client = clients[i % clients.length]
        const fresh = i % 10 === 9
        const response = await request(`${gateway.url}/cart/${i}`, fresh ? {} : { headers: { cookie: client.cookie } })
        const body = await response.body.json().catch(() => null) as { upstream?: string } | null
        statuses.set(response.statusCode, (statuses.get(response.statusCode) ?? 0) + 1)
        requests++
        if (fresh) newClients++
        else if (body?.upstream !== client.upstream) strays++
        await new Promise((resolve) => setTimeout(resolve, 5))
      }
    })()
    await new Promise((resolve) => setTimeout(resolve, 300))
    const degradedBefore = gateway.app.sticky.stats.degraded
    const took = await setup.failover()
    t.equal(await setup.masterPort(), setup.replica.port, `the replica is master now (failover took ${took} ms)`)
    // Until the store answers again through the new master, and the near cache trusts itself again.
    t.ok(await eventually(async () => {
      try {
        return store.live && total(await store.sessionCounts('shop', ['a', 'b', 'c'])) >= 30
      } catch {
        return false
      }
    }, 20_000), 'the store works again through the new master')
    await new Promise((resolve) => setTimeout(resolve, 500))
    stop = true
    await traffic
    const degraded = gateway.app.sticky.stats.degraded - degradedBefore
    t.comment(`${requests} requests during the failover: statuses ${JSON.stringify(Object.fromEntries(statuses))}, ${degraded} routed degraded, ${newClients} new clients`)
    t.same([...statuses.keys()], [200], 'every request answered 200: degraded mode covers the gap')
    t.equal(strays, 0, 'every cookie client stayed on its upstream throughout')

    const after = await gateway.app.sticky.sessionCounts('shop')
    for (const id of ['a', 'b', 'c']) t.ok(after[id] >= before[id], `sessions on ${id} kept (${before[id]} → ${after[id]})`)
    const hitsBefore = gateway.app.sticky.stats.hit
    const newBefore = gateway.app.sticky.stats.new
    for (const client of clients) {
      const response = await request(`${gateway.url}/after`, { headers: { cookie: client.cookie } })
      const body = await response.body.json() as { upstream: string }
      t.equal(body.upstream, client.upstream, 'same upstream after the failover', { diagnostic: false })
    }
    t.equal(gateway.app.sticky.stats.hit - hitsBefore, 30, 'every old client found its binding in the new master (a hit)')
    t.equal(gateway.app.sticky.stats.new - newBefore, 0, 'none had to be bound again')
  })
})
