import t from 'tap'
import Fastify from 'fastify'
import Redis from 'ioredis'
import { request } from 'undici'
import { readGatewayEnv } from '../../lib/gateway/env-settings'
import sticky, { NearCacheStore, RedisBindingStore, type StickyPluginOptions } from '../../lib/index'
import { startRedis, uniquePrefix } from '../support/redis'
import { startUpstreams } from '../support/upstreams'
import { readCommandStats, resetCommandStats } from '../../scripts/redis-command-stats'

const SECRET = 'wiring-secret-0123456789-abcdefghijklmnop'

t.test('`redis` gets a near cache by default; `nearCache: false` turns it off', async (t) => {
  const redis = await startRedis(t)
  const upstreams = await startUpstreams(t, ['a'])
  const start = async (extra: Partial<StickyPluginOptions>): Promise<{ url: string, app: ReturnType<typeof Fastify> }> => {
    const app = Fastify()
    t.teardown(() => app.close())
    await app.register(sticky, { secret: SECRET, redis: redis.url, prefix: uniquePrefix(), pools: { shop: { upstreams: [{ id: 'a', url: upstreams[0].url }] } }, ...extra })
    app.all('/*', { config: { sticky: true } }, (_request, reply) => reply.forward())
    return { url: await app.listen({ host: '127.0.0.1', port: 0 }), app }
  }
  const cached = await start({})
  t.ok(cached.app.sticky.store instanceof NearCacheStore, 'by default a NearCacheStore')
  const tuned = await start({ nearCache: { ttl: '5s', maxEntries: 1000 } })
  t.ok(tuned.app.sticky.store instanceof NearCacheStore, 'tuned, still one')
  const plain = await start({ nearCache: false })
  t.ok(plain.app.sticky.store instanceof RedisBindingStore, 'off: the Redis store itself')
  const admin = new Redis(redis.url)
  t.teardown(() => admin.disconnect())
  const first = await request(`${cached.url}/x`)
  await first.body.dump()
  const cookie = String(first.headers['set-cookie']).split(';')[0]
  for (let i = 0; i < 2; i++) await (await request(`${cached.url}/x`, { headers: { cookie } })).body.dump()
  await resetCommandStats(admin)
  for (let i = 0; i < 50; i++) await (await request(`${cached.url}/x`, { headers: { cookie } })).body.dump()
  const stats = await readCommandStats(admin)
  t.ok(stats.total <= 3, `50 hits through the plugin: ${stats.total} Redis commands (upstream-state polls only: ${JSON.stringify(stats.byCommand)})`)
})

t.test('options: nearCache and the sentinel/cluster forms are checked', async (t) => {
  const pools = { shop: { upstreams: [{ id: 'a', url: 'http://127.0.0.1:1' }] } }
  const register = async (extra: Record<string, unknown>): Promise<void> => {
    const app = Fastify()
    try {
      await app.register(sticky, { secret: SECRET, pools, ...extra } as StickyPluginOptions)
      await app.ready()
    } finally {
      await app.close()
    }
  }
  await t.rejects(register({ nearCache: { ttl: '5s' } }), { code: 'FST_STICKY_INVALID_OPTION', message: /invalid option: nearCache must be left out without `redis`/ })
  await t.rejects(register({ redis: 'redis://127.0.0.1:1', nearCache: { ttl: 'soon' } }), { message: /invalid option: nearCache.ttl must be a positive duration/ })
  await t.rejects(register({ redis: 'redis://127.0.0.1:1', nearCache: { maxEntries: 0 } }), { message: /invalid option: nearCache.maxEntries must be a positive integer/ })
  await t.rejects(register({ redis: 'redis://127.0.0.1:1', nearCache: { size: 1 } }), { message: /invalid option: nearCache.size must be absent/ })
  await t.rejects(register({ redis: { sentinels: [], name: 'm' } }), { message: /invalid option: redis.sentinels must be a non-empty array/ })
  await t.rejects(register({ redis: { sentinels: [{ host: 'x', port: 0 }], name: 'm' } }), { message: /invalid option: redis.sentinels\[0\].port must be a port number/ })
  await t.rejects(register({ redis: { sentinels: [{ host: 'x', port: 26379 }] } }), { message: /invalid option: redis.name must be the name of the master group/ })
  await t.rejects(register({ redis: { cluster: [{ host: 'x', port: 7000 }], db: 1 } }), { message: /invalid option: redis.db must be absent/ })
  await t.rejects(register({ redis: { cluster: [{ host: 'x', port: 7000 }], password: 42 } }), { message: /invalid option: redis.password must be a string, got "\(hidden\)"/ })
  await t.rejects(register({ redis: { nodes: [] } }), { message: /invalid option: redis must be a redis:\/\/ or rediss:\/\/ URL, \{ sentinels, name \}/ })
})

t.test('gateway env: REDIS_SENTINELS, REDIS_CLUSTER, STICKY_NEAR_CACHE', async (t) => {
  const base = { UPSTREAMS: 'a=http://127.0.0.1:4001', STICKY_SECRET: SECRET }
  t.same(readGatewayEnv({ ...base, REDIS_SENTINELS: '10.0.0.1:26379, [::1]:26380', REDIS_SENTINEL_NAME: 'mymaster', REDIS_PASSWORD: 'pw' }).plugin.redis,
    { sentinels: [{ host: '10.0.0.1', port: 26379 }, { host: '::1', port: 26380 }], name: 'mymaster', password: 'pw' })
  t.same(readGatewayEnv({ ...base, REDIS_CLUSTER: 'r1:7000,r2:7000' }).plugin.redis, { cluster: [{ host: 'r1', port: 7000 }, { host: 'r2', port: 7000 }] })
  t.same(readGatewayEnv({ ...base, REDIS_URL: 'redis://r:6379', STICKY_NEAR_CACHE: 'off' }).plugin.nearCache, false)
  t.same(readGatewayEnv({ ...base, REDIS_URL: 'redis://r:6379', STICKY_NEAR_CACHE: '30' }).plugin.nearCache, { ttl: 30_000 })
  t.equal(readGatewayEnv({ ...base, REDIS_URL: 'redis://r:6379' }).plugin.nearCache, undefined, 'default: on')
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ REDIS_URL: 'redis://r', REDIS_CLUSTER: 'r:1' }, /^REDIS_URL and REDIS_CLUSTER are both set/],
    [{ REDIS_SENTINELS: 'r:26379' }, /^REDIS_SENTINEL_NAME must be set with REDIS_SENTINELS/],
    [{ REDIS_CLUSTER: 'r' }, /^REDIS_CLUSTER must be a comma list of host:port/],
    [{ REDIS_URL: 'redis://r', REDIS_PASSWORD: 'x' }, /^REDIS_PASSWORD applies to REDIS_SENTINELS and REDIS_CLUSTER/],
    [{ STICKY_NEAR_CACHE: '10' }, /^STICKY_NEAR_CACHE applies to a Redis store/],
    [{ REDIS_URL: 'redis://r', STICKY_NEAR_CACHE: 'always' }, /^STICKY_NEAR_CACHE must be a positive number of seconds/],
    [{ REDIS_CLUSTER: 'r1:7000' }, /^STICKY_SECRET must be set when REDIS_URL is \(or REDIS_SENTINELS, REDIS_CLUSTER\)/]
  ]
  for (const [env, message] of cases) {
    const input: Record<string, string> = { ...base, ...env }
    if (env.REDIS_CLUSTER === 'r1:7000') delete input.STICKY_SECRET
    t.throws(() => readGatewayEnv(input), { message }, JSON.stringify(env))
  }
})

t.test('a gateway started on sentinel or cluster addresses that do not answer starts degraded, as with a URL', async (t) => {
  const upstreams = await startUpstreams(t, ['a'])
  for (const redis of [{ sentinels: [{ host: '127.0.0.1', port: 1 }], name: 'nobody' }, { cluster: [{ host: '127.0.0.1', port: 1 }] }]) {
    const app = Fastify({ logger: false })
    t.teardown(() => app.close())
    await app.register(sticky, { secret: SECRET, redis, pools: { shop: { upstreams: [{ id: 'a', url: upstreams[0].url }] } } })
    app.all('/*', { config: { sticky: true } }, (_request, reply) => reply.forward())
    const url = await app.listen({ host: '127.0.0.1', port: 0 })
    const response = await request(`${url}/x`)
    t.equal(response.statusCode, 200, `${Object.keys(redis)[0]}: routes degraded`)
    await response.body.dump()
    t.equal(app.sticky.stats.degraded, 1)
    await app.close()
  }
})
