import t from 'tap'
import Redis from 'ioredis'
import { createRoutingCookieCodec, newBindingId } from '../../lib/affinity/routing-cookie'
import { startGateway, TEST_SECRET } from '../support/gateway'
import { CookieJar, get } from '../support/http'
import { startRedis, uniquePrefix } from '../support/redis'
import { startUpstreams } from '../support/upstreams'
import { eventually } from '../support/eventually'

t.test('two gateways sharing one Redis', async (t) => {
  const redis = await startRedis(t)
  const upstreams = await startUpstreams(t)
  const prefix = uniquePrefix()
  const g1 = await startGateway(t, { upstreams, redis: redis.url, prefix })
  const g2 = await startGateway(t, { upstreams, redis: redis.url, prefix })
  const client = new Redis(redis.url)
  t.teardown(() => client.disconnect())

  t.test('a client bound through one gateway keeps its upstream through the other', async (t) => {
    for (let c = 0; c < 6; c++) {
      const jar = new CookieJar()
      const first = await get(`${g1.url}/x`, { jar })
      const upstream = first.json().upstream
      for (let i = 0; i < 4; i++) {
        const response = await get(`${(i % 2 === 0 ? g2 : g1).url}/y`, { jar })
        t.equal(response.json().upstream, upstream, `client ${c}, request ${i + 2}`)
        t.equal(response.setCookies.length, 0, 'no new cookie')
      }
    }
    t.equal(g2.app.sticky.stats.hit, 12, 'gateway 2 found every binding in Redis')
  })

  t.test('40 concurrent first requests for one key, split over both gateways, land on one upstream', async (t) => {
    // Same binding id, but each cookie names a different upstream as its preference: only the atomic
    // first binding in Redis can make them agree.
    const codec = createRoutingCookieCodec([TEST_SECRET])
    const bindingsBefore = (await client.keys(prefix + '*:b:*')).length
    const bindingId = newBindingId()
    const cookies = ['a', 'b', 'c'].map((upstreamId) => 'sticky=' + encodeURIComponent(codec.sign({ bindingId, upstreamId, createdAt: Date.now() })))
    const responses = await Promise.all(Array.from({ length: 40 }, (_, i) =>
      get(`${(i % 2 === 0 ? g1 : g2).url}/race`, { headers: { cookie: cookies[i % 3] } })))
    const chosen = new Set(responses.map((r) => r.json().upstream))
    t.equal(chosen.size, 1, `one upstream for all 40 (got ${[...chosen].join(',')})`)
    const winner = [...chosen][0]
    t.ok(responses.every((r, i) => ['a', 'b', 'c'][i % 3] === winner ? r.setCookies.length === 0 : r.setCookies.length === 1),
      'requests whose cookie named another upstream are told the winner')
    t.equal((await client.keys(prefix + '*:b:*')).length, bindingsBefore + 1, 'exactly one binding was made')
  })

  t.test('session counts are store-wide and drop when bindings go', async (t) => {
    const countsBefore = await g1.app.sticky.sessionCounts('shop')
    const total = (counts: Record<string, number>): number => Object.values(counts).reduce((a, b) => a + b, 0)
    await get(`${g1.url}/new`)
    await get(`${g2.url}/new`)
    t.equal(total(await g2.app.sticky.sessionCounts('shop')), total(countsBefore) + 2, 'both gateways count both bindings')
    const keys = await client.keys(prefix + '*:b:*')
    const store = g1.app.sticky.store
    // Delete through the store API (what an admin evict does); counts follow on every gateway.
    const keyId = keys[0].slice(keys[0].lastIndexOf(':') + 1)
    const pool = keys[0].slice(keys[0].indexOf('{') + 1, keys[0].indexOf(':', keys[0].indexOf('{')))
    t.equal(await store.delete(pool, keyId), true)
    t.equal(total(await g2.app.sticky.sessionCounts('shop')), total(countsBefore) + 1)
  })

  t.test('raw keys never reach Redis: binding ids are stored as keyed hashes', async (t) => {
    const jar = new CookieJar()
    await get(`${g1.url}/secret`, { jar })
    const bindingId = decodeURIComponent(jar.get('sticky') as string).split('.')[1]
    const all = await client.keys('*')
    t.notOk(all.some((k) => k.includes(bindingId)), 'no key contains the binding id')
    const values = await Promise.all(all.filter((k) => k.includes(':b:')).map((k) => client.get(k)))
    t.notOk(values.some((v) => v?.includes(bindingId)), 'no value contains it')
  })

  t.test('idle timeout slides and bindings expire; max lifetime caps', async (t) => {
    const p = uniquePrefix()
    const short = await startGateway(t, { upstreams, redis: redis.url, prefix: p, defaults: { idleTimeout: 600, maxLifetime: '1h' } })
    const jar = new CookieJar()
    await get(`${short.url}/`, { jar })
    const [key] = await client.keys(p + '*:b:*')
    t.ok(key, 'bound')
    // A request after the throttle window (idle/10 = 60 ms) is touched, off the request path, within ~1 s.
    await new Promise((resolve) => setTimeout(resolve, 100))
    await get(`${short.url}/`, { jar })
    t.ok(await eventually(async () => (await client.pttl(key)) > 450, 2000), 'touch extended the TTL')
    t.ok(await eventually(async () => (await client.exists(key)) === 0, 3000), 'expires once idle')
    t.same(await short.app.sticky.sessionCounts('shop'), { a: 0, b: 0, c: 0 }, 'and is no longer counted')

    const p2 = uniquePrefix()
    const capped = await startGateway(t, { upstreams, redis: redis.url, prefix: p2, defaults: { idleTimeout: '1h', maxLifetime: 400 } })
    const jar2 = new CookieJar()
    const first = await get(`${capped.url}/`, { jar: jar2 })
    const firstCookie = jar2.get('sticky')
    const [key2] = await client.keys(p2 + '*:b:*')
    t.ok((await client.pttl(key2)) <= 400, 'TTL never exceeds the remaining lifetime')
    t.ok(await eventually(async () => (await client.exists(key2)) === 0, 2000), 'gone after max lifetime')
    const later = await get(`${capped.url}/`, { jar: jar2 })
    t.not(jar2.get('sticky'), firstCookie, 'a client past max lifetime gets a new binding and cookie')
    t.ok(later.status === 200 && first.status === 200)
  })
})

t.test('Redis down under traffic: cookie clients keep their upstream, new ones are served, no request waits long', async (t) => {
  const redis = await startRedis(t)
  const upstreams = await startUpstreams(t)
  const prefix = uniquePrefix()
  const g1 = await startGateway(t, { upstreams, redis: redis.url, prefix })
  const g2 = await startGateway(t, { upstreams, redis: redis.url, prefix })
  const clients = await Promise.all(Array.from({ length: 6 }, async (_, i) => {
    const jar = new CookieJar()
    return { jar, upstream: (await get(`${(i % 2 === 0 ? g1 : g2).url}/`, { jar })).json().upstream as string }
  }))
  await redis.stop()
  let slowest = 0
  const outageClients: Array<{ jar: CookieJar, upstream: string }> = []
  for (let round = 0; round < 3; round++) {
    await Promise.all(clients.map(async (client, i) => {
      const started = Date.now()
      const response = await get(`${(i + round) % 2 === 0 ? g1.url : g2.url}/`, { jar: client.jar })
      slowest = Math.max(slowest, Date.now() - started)
      t.equal(response.status, 200)
      t.equal(response.json().upstream, client.upstream, 'bound client keeps its upstream while Redis is down')
    }))
    const jar = new CookieJar()
    const started = Date.now()
    const fresh = await get(`${g1.url}/`, { jar })
    slowest = Math.max(slowest, Date.now() - started)
    t.equal(fresh.status, 200, 'a new client is served too')
    t.ok(jar.has('sticky'), 'and gets a routing cookie')
    outageClients.push({ jar, upstream: fresh.json().upstream })
  }
  t.ok(slowest < 1000, `no request waited on Redis (slowest ${slowest} ms; command timeout 250 ms)`)
  t.ok(g1.app.sticky.stats.degraded >= 6 && g2.app.sticky.stats.degraded >= 3, 'counted as degraded')

  await redis.restart() // back empty, as a restart without persistence is
  const probe = new Redis(redis.url)
  t.teardown(() => probe.disconnect())
  const everyone = [...clients, ...outageClients]
  let moved = 0
  t.ok(await eventually(async () => {
    for (const client of everyone) if ((await get(`${g2.url}/`, { jar: client.jar })).json().upstream !== client.upstream) moved++
    return (await probe.keys(prefix + '*:b:*')).length === everyone.length
  }, 8000), 'once Redis answers again, every client\'s binding is written back')
  t.equal(moved, 0, 'and no client changed upstream on the way')
  const jar = new CookieJar()
  const upstream = (await get(`${g1.url}/`, { jar })).json().upstream
  t.equal((await get(`${g2.url}/`, { jar })).json().upstream, upstream, 'shared routing is back without a restart')
  t.ok(g2.app.sticky.stats.hit >= 1)
})

t.test('a gateway started while Redis is down routes degraded, then uses Redis once it is up', async (t) => {
  const redis = await startRedis(t)
  const upstreams = await startUpstreams(t)
  await redis.stop()
  const logs: string[] = []
  const gateway = await startGateway(t, {
    upstreams, redis: redis.url, prefix: uniquePrefix(),
    fastify: { logger: { level: 'warn', stream: { write: (line: string) => { logs.push(line) } } } }
  })
  t.ok(logs.some((l) => l.includes('Redis is not reachable at start')), 'says so at warn')
  const jar = new CookieJar()
  const first = await get(`${gateway.url}/`, { jar })
  t.equal(first.status, 200)
  t.equal(gateway.app.sticky.stats.degraded, 1)
  await redis.restart()
  t.ok(await eventually(async () => {
    const response = await get(`${gateway.url}/`, { jar })
    return response.json().upstream === first.json().upstream && gateway.app.sticky.stats.new >= 1
  }, 8000), 'once Redis is up the client is bound in it, on the same upstream')
})
