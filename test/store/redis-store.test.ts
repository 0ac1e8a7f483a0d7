import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import Redis from 'ioredis'
import { createKeyIdDeriver } from '../../lib/affinity/key-id'
import { FORGET_REMOVED_AFTER_MS } from '../../lib/store/binding-store'
import { TRIM_EVERY_BINDS } from '../../lib/store/redis-layout'
import { RedisBindingStore } from '../../lib/store/redis-store'
import { readCommandStats, resetCommandStats } from '../../scripts/redis-command-stats'
import { startRedis, uniquePrefix } from '../support/redis'
import { sharedStoreContract } from './binding-store.contract'
import { eventually } from '../support/eventually'
import { openStore } from '../support/stores'

t.test('redis store', async (t) => {
  const redis = await startRedis(t)
  const open = async (t: Test, prefix: string): Promise<RedisBindingStore> => {
    const store = await openStore(t, new RedisBindingStore({ redis: redis.url, prefix }))
    return store
  }
  sharedStoreContract(t, open)

  t.test('key layout: hash tags, values, expiry, no raw data', async (t) => {
    const prefix = uniquePrefix()
    const store = await open(t, prefix)
    const client = new Redis(redis.url)
    t.teardown(() => client.disconnect())
    const made = await store.bindIfAbsent('shop', 'AbCdEfGhIjKlMnOp', 'b', 60_000)
    const key = store.bindingKey('shop', 'AbCdEfGhIjKlMnOp')
    t.match(key, new RegExp(`^${prefix.replace(/[-:]/g, '\\$&')}\\{shop:\\d+\\}:b:AbCdEfGhIjKlMnOp$`), 'binding key carries the pool/shard hash tag')
    t.equal(await client.get(key), `b|${made.createdAt}`, 'value is upstream|createdAt')
    const pttl = await client.pttl(key)
    t.ok(pttl > 50_000 && pttl <= 60_000, 'PX is the TTL')
    const tag = key.slice(0, key.indexOf(':b:'))
    t.ok(Number(await client.zscore(tag + ':z:b', 'AbCdEfGhIjKlMnOp')) > Date.now(), 'live index scored by expiry')
    const keys = await client.keys(prefix + '*')
    t.same(keys.sort(), [key, prefix + 'salt', tag + ':z:b'].sort(), 'only the binding, its index and the salt')
  })

  t.test('a new binding costs at most 3 commands server-side (the script, SET NX GET, ZADD), trims included', async (t) => {
    const store = await open(t, uniquePrefix())
    const admin = new Redis(redis.url)
    t.teardown(() => admin.disconnect())
    await store.bindIfAbsent('shop', 'warm-up-key-000000', 'a', 60_000) // the script is loaded (EVAL → EVALSHA) before counting
    const binds = TRIM_EVERY_BINDS * 4
    await resetCommandStats(admin)
    for (let i = 0; i < binds; i++) await store.bindIfAbsent('shop', `new-session-${String(i).padStart(6, '0')}`, i % 2 === 0 ? 'a' : 'b', 60_000)
    const stats = await readCommandStats(admin)
    t.ok(stats.total / binds <= 3 + 1 / TRIM_EVERY_BINDS, `${(stats.total / binds).toFixed(3)} commands per new binding: ${JSON.stringify(stats.byCommand)}`)
    t.equal(stats.byCommand.get, undefined, 'no GET: SET NX GET reports an earlier winner')
    t.equal(stats.byCommand.time, undefined, 'no TIME')
    t.equal(stats.byCommand.zremrangebyscore, binds / TRIM_EVERY_BINDS, 'one trim in TRIM_EVERY_BINDS binds')
    await resetCommandStats(admin)
    const again = await store.bindIfAbsent('shop', 'new-session-000001', 'a', 60_000)
    t.same([again.created, again.upstreamId], [false, 'b'], 'the earlier winner is reported')
    t.equal((await readCommandStats(admin)).total, 2, 'a lost race costs the script and its SET')
  })

  t.test('reads of one event-loop turn go as one MGET; a lone read is a GET', async (t) => {
    const store = await open(t, uniquePrefix())
    const admin = new Redis(redis.url)
    t.teardown(() => admin.disconnect())
    const bound = []
    for (let i = 0; i < 40; i++) bound.push(await store.bindIfAbsent('shop', `read-batch-${String(i).padStart(4, '0')}`, i % 2 === 0 ? 'a' : 'b', 60_000))
    await resetCommandStats(admin)
    // 40 bound keys and 10 that never were, all asked for in the same turn (as 50 requests read in one poll phase).
    const reads = await Promise.all(Array.from({ length: 50 }, (_, i) => store.get('shop', `read-batch-${String(i).padStart(4, '0')}`)))
    for (let i = 0; i < 40; i++) t.same(reads[i], { upstreamId: bound[i].upstreamId, createdAt: bound[i].createdAt }, `read ${i} is its own binding`)
    t.same(reads.slice(40), Array(10).fill(null), 'unbound keys read as none')
    const batched = await readCommandStats(admin)
    t.same(batched.byCommand, { mget: 1 }, 'one MGET for the whole turn')
    await resetCommandStats(admin)
    t.same(await store.get('shop', 'read-batch-0001'), { upstreamId: bound[1].upstreamId, createdAt: bound[1].createdAt })
    t.same((await readCommandStats(admin)).byCommand, { get: 1 }, 'one read alone: one GET')
  })

  t.test('a cluster-mode Redis behind a plain URL refuses MGET across slots: reads go one by one, none fails', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'sticky-cluster-mode-'))
    t.teardown(() => rmSync(dir, { recursive: true, force: true }))
    const clustered = await startRedis(t, { args: ['--cluster-enabled', 'yes', '--cluster-config-file', join(dir, 'nodes.conf')] })
    const admin = new Redis(clustered.url)
    t.teardown(() => admin.disconnect())
    await admin.call('CLUSTER', 'ADDSLOTSRANGE', '0', '16383')
    t.ok(await eventually(async () => /cluster_state:ok/.test(await admin.cluster('INFO')), 5000), 'the one-node cluster is up')
    const store = await openStore(t, new RedisBindingStore({ redis: clustered.url, prefix: uniquePrefix() }))
    // The first two characters of a key id pick its shard, so these spread over the shards' hash slots.
    const ids = Array.from({ length: 20 }, (_, i) => `${String.fromCharCode(65 + i)}${String.fromCharCode(97 + i)}-slot-spread`)
    for (const id of ids) await store.bindIfAbsent('shop', id, 'a', 60_000)
    const reads = await Promise.allSettled(ids.map((id) => store.get('shop', id)))
    t.same(reads.map((r) => r.status === 'fulfilled' ? (r.value?.upstreamId ?? null) : String(r.reason)), ids.map(() => 'a'), 'every read answered, across the shards\' slots')
    const again = await Promise.all(ids.map((id) => store.get('shop', id)))
    t.ok(again.every((b) => b?.upstreamId === 'a'), 'and again, one by one')
  })

  t.test('bindings spread over shards', async (t) => {
    const prefix = uniquePrefix()
    const store = await open(t, prefix)
    const derive = createKeyIdDeriver(await store.sharedSalt())
    const tags = new Set<string>()
    // 2,000 keys: today's shard function (two base64url characters' codes, mod 16) gives shards 11, 12 and 14 about
    // 3 % of keys each instead of 6.25 %, so 200 keys left one of them empty in about one run in 200.
    for (let i = 0; i < 2000; i++) {
      const key = store.bindingKey('p', derive('client-' + i))
      tags.add(key.slice(0, key.indexOf(':b:')))
    }
    t.equal(tags.size, 16, 'all 16 shards used')
  })

  t.test('upstreams added at run time and removed long ago are forgotten as the states change; others are kept', async (t) => {
    const prefix = uniquePrefix()
    const store = await open(t, prefix)
    const client = new Redis(redis.url)
    t.teardown(() => client.disconnect())
    const states = `${prefix}{shop}:u`
    const old = Date.now() - FORGET_REMOVED_AFTER_MS - 1000
    await client.hset(states,
      'gone', `removed|0|${old}|http://10.0.0.7:80|1`, // added at run time, removed over an hour ago: forgotten
      'recent', `removed|0|${Date.now() - 1000}|http://10.0.0.8:80|1`, // removed a second ago: kept
      'configured', `removed|0|${old}||`, // a configured upstream (no url) removed: kept, its config would bring it back
      'drained', `draining|0|${old}|http://10.0.0.9:80|1`)
    await store.setUpstreamState('shop', 'new', { admin: 'active', url: 'http://10.0.0.10:80', weight: 1 })
    t.same(Object.keys(await store.upstreamStates('shop')).sort(), ['configured', 'drained', 'new', 'recent'])
  })

  t.test('the salt is shared by every gateway on one prefix', async (t) => {
    const prefix = uniquePrefix()
    const [a, b] = await Promise.all([open(t, prefix), open(t, prefix)])
    t.equal(await a.sharedSalt(), await b.sharedSalt())
    const c = await open(t, uniquePrefix())
    t.not(await c.sharedSalt(), await a.sharedSalt(), 'another prefix has its own')
  })

  t.test('after Redis restarts empty, every gateway ends on one salt again', async (t) => {
    const prefix = uniquePrefix()
    const a = await open(t, prefix)
    const b = await open(t, prefix)
    const changes: string[] = []
    a.onSaltChange((salt) => changes.push(salt))
    await redis.restart()
    // A gateway started right after the restart may write a new salt before the others reconnect.
    let c: RedisBindingStore | undefined
    for (let i = 0; i < 100 && c === undefined; i++) {
      c = await open(t, prefix).catch(async () => { await new Promise((resolve) => setTimeout(resolve, 50)); return undefined })
    }
    t.ok(c, 'a third store started')
    t.ok(await eventually(async () => {
      const salts = await Promise.all([a, b, c as RedisBindingStore].map((store) => store.sharedSalt()))
      return new Set(salts).size === 1
    }, 5000), 'all three agree on the salt')
    t.ok(changes.length <= 1, 'a store that adopted another salt said so once at most')
  })

  t.test('accepts a caller-owned ioredis client and leaves it open', async (t) => {
    const client = new Redis(redis.url)
    t.teardown(() => client.disconnect())
    const store = new RedisBindingStore({ redis: client, prefix: uniquePrefix() })
    await store.init()
    await store.bindIfAbsent('p', 'k1234567890abcde', 'a', 1000)
    await store.close()
    t.equal(await client.ping(), 'PONG', 'client still usable')
    t.equal(client.listenerCount('error'), 0, 'no error listener left behind (none added to a caller\'s client)')
    t.equal(client.listenerCount('ready'), 0, 'no ready listener left behind')
  })

  t.test('fails fast when Redis is down, and recovers', async (t) => {
    const prefix = uniquePrefix()
    const store = await open(t, prefix)
    await redis.stop()
    const started = Date.now()
    await t.rejects(store.get('p', 'k1234567890abcde'))
    t.ok(Date.now() - started < 1500, 'no long wait')
    await redis.restart()
    let value: unknown = 'error'
    for (let i = 0; i < 100 && value === 'error'; i++) {
      value = await store.get('p', 'k1234567890abcde').catch(() => 'error')
      if (value === 'error') await new Promise((resolve) => setTimeout(resolve, 50))
    }
    t.equal(value, null, 'answers again after Redis is back')
  })
})
