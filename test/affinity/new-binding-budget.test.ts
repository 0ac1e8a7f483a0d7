import t from 'tap'
import Redis from 'ioredis'
import { startGateway } from '../support/gateway'
import { get } from '../support/http'
import { startRedis, uniquePrefix } from '../support/redis'
import { startUpstreams } from '../support/upstreams'

// Security issue #16, finding 4: any request without a cookie makes a binding, and a second one with the cookie keeps
// it for the whole idle timeout, so one client could fill Redis. New bindings are budgeted per client and per gateway;
// over budget, the request is served and nothing is stored.

const countBindings = async (redis: Redis, prefix: string): Promise<number> => (await redis.keys(prefix + '*:b:*')).length
const from = (address: string, cookie?: string): Record<string, string> =>
  cookie === undefined ? { 'x-forwarded-for': address } : { 'x-forwarded-for': address, cookie }
const routingCookie = (setCookies: string[]): string | undefined => setCookies.find((line) => line.startsWith('sticky='))?.split(';')[0]

t.test('one client past its budget: every request 200, no binding stored past the budget; another client is unaffected', async (t) => {
  const redisServer = await startRedis(t)
  const redis = new Redis(redisServer.url)
  t.teardown(() => redis.disconnect())
  const upstreams = await startUpstreams(t, ['a', 'b'])
  const prefix = uniquePrefix()
  const gateway = await startGateway(t, {
    upstreams,
    redis: redisServer.url,
    prefix,
    fastify: { trustProxy: true },
    newBindings: { perClient: { rate: 5, per: '1m' } }
  })

  const sessions: Array<{ cookie: string, upstream: string }> = []
  const statuses: number[] = []
  for (let i = 0; i < 20; i++) {
    const response = await get(`${gateway.url}/s/${i}`, { headers: from('198.51.100.7') })
    statuses.push(response.status)
    const cookie = routingCookie(response.setCookies)
    if (cookie !== undefined) sessions.push({ cookie, upstream: response.json().upstream })
  }
  t.same(new Set(statuses), new Set([200]), 'every new session is served')
  t.equal(sessions.length, 20, 'each still gets a routing cookie')
  t.equal(await countBindings(redis, prefix), 5, 'only the budget of bindings is stored')

  // The finding's second request: back with the cookie. An unbound session follows the upstream its cookie names, and
  // binding it again is a new binding too: still over budget, still not stored.
  let followed = 0
  for (const session of sessions) {
    const response = await get(`${gateway.url}/again`, { headers: from('198.51.100.7', session.cookie) })
    if (response.status === 200 && response.json().upstream === session.upstream) followed++
  }
  t.equal(followed, 20, 'every returning session reaches the upstream its cookie names')
  t.equal(await countBindings(redis, prefix), 5, 'returning does not store the unbound sessions either')
  t.match(gateway.app.sticky.stats, { unbound: 30, overBudget: { client: 30, gateway: 0 } }, '15 new + 15 returning unbound')

  const other = await get(`${gateway.url}/`, { headers: from('203.0.113.9') })
  t.equal(other.status, 200)
  t.equal(await countBindings(redis, prefix), 6, 'another client address still gets its binding')
  const otherCookie = routingCookie(other.setCookies) as string
  const back = await get(`${gateway.url}/`, { headers: from('203.0.113.9', otherCookie) })
  t.equal(back.json().upstream, other.json().upstream)
  t.equal(back.setCookies.length, 0, 'and it is a plain hit on return')
})

t.test('IPv6 clients are counted per /64', async (t) => {
  const upstreams = await startUpstreams(t, ['a'])
  const gateway = await startGateway(t, { upstreams, fastify: { trustProxy: true }, newBindings: { perClient: { rate: 3, per: '1m' } } })
  for (let i = 1; i <= 6; i++) t.equal((await get(`${gateway.url}/`, { headers: from(`2001:db8:7:1::${i.toString(16)}`) })).status, 200)
  t.equal(gateway.app.sticky.stats.overBudget.client, 3, 'six addresses of one /64 share a budget of three')
  t.equal((await get(`${gateway.url}/`, { headers: from('2001:db8:7:2::1') })).status, 200)
  t.equal(gateway.app.sticky.stats.new, 4, 'the next /64 has its own')
})

t.test('gateway budget: many addresses together store no more than it; header keys stay on one upstream unbound', async (t) => {
  const redisServer = await startRedis(t)
  const redis = new Redis(redisServer.url)
  t.teardown(() => redis.disconnect())
  const upstreams = await startUpstreams(t, ['a', 'b', 'c'])

  const cookiePrefix = uniquePrefix()
  const cookies = await startGateway(t, {
    upstreams,
    redis: redisServer.url,
    prefix: cookiePrefix,
    fastify: { trustProxy: true },
    newBindings: { perClient: false, perGateway: { rate: 5, per: '1m' } }
  })
  let served = 0
  for (let i = 0; i < 20; i++) if ((await get(`${cookies.url}/`, { headers: from(`198.51.100.${i + 1}`) })).status === 200) served++
  t.equal(served, 20, 'every new session is served')
  t.equal(await countBindings(redis, cookiePrefix), 5, 'the gateway stored its budget of bindings')
  t.match(cookies.app.sticky.stats, { new: 5, unbound: 15, overBudget: { client: 0, gateway: 15 } })

  const tenantPrefix = uniquePrefix()
  const tenants = await startGateway(t, {
    upstreams,
    redis: redisServer.url,
    prefix: tenantPrefix,
    fastify: { trustProxy: true },
    defaults: { key: { header: 'x-tenant' } },
    newBindings: { perClient: false, perGateway: { rate: 3, per: '1m' } }
  })
  const first = new Map<string, string>()
  for (let i = 0; i < 12; i++) {
    const response = await get(`${tenants.url}/`, { headers: { ...from(`198.51.100.${i + 1}`), 'x-tenant': `tenant-${i}` } })
    first.set(`tenant-${i}`, response.json().upstream)
  }
  t.equal(await countBindings(redis, tenantPrefix), 3, 'three tenants bound, nine unbound')
  let same = 0
  for (let round = 0; round < 2; round++) {
    for (const [tenant, upstream] of first) {
      if ((await get(`${tenants.url}/`, { headers: { ...from('192.0.2.1'), 'x-tenant': tenant } })).json().upstream === upstream) same++
    }
  }
  t.equal(same, 24, 'an unbound key is placed by rendezvous hashing: the same upstream on every request')
  t.equal(await countBindings(redis, tenantPrefix), 3, 'and is still not stored')
})

t.test('a key served unbound is bound later where it was served: the budget never moves a session', async (t) => {
  const redisServer = await startRedis(t)
  const redis = new Redis(redisServer.url)
  t.teardown(() => redis.disconnect())
  const upstreams = await startUpstreams(t, ['a', 'b', 'c'])
  const prefix = uniquePrefix()
  const gateway = await startGateway(t, {
    upstreams,
    redis: redisServer.url,
    prefix,
    defaults: { key: { header: 'x-tenant' } },
    // One machine speaking for many tenants, with a budget that refills within the test.
    newBindings: { perClient: { rate: 4, per: '600ms' } }
  })
  const placed = new Map<string, string>()
  for (let i = 0; i < 12; i++) placed.set(`tenant-${i}`, (await get(`${gateway.url}/`, { headers: { 'x-tenant': `tenant-${i}` } })).json().upstream)
  const bound = await countBindings(redis, prefix)
  // Four at once, and one more every 150 ms: a slow run binds a few more.
  t.ok(bound >= 4 && bound <= 8, `${bound} bound, the others served unbound`)
  let moved = 0
  for (let round = 0; round < 3; round++) {
    await new Promise((resolve) => setTimeout(resolve, 650)) // the bucket refills: some unbound tenants get bound now
    for (const [tenant, upstream] of placed) if ((await get(`${gateway.url}/`, { headers: { 'x-tenant': tenant } })).json().upstream !== upstream) moved++
  }
  t.equal(await countBindings(redis, prefix), 12, 'every tenant is bound by now')
  t.equal(moved, 0, 'and none moved on the way')
})

t.test('newBindings: false turns the budgets off', async (t) => {
  const upstreams = await startUpstreams(t, ['a'])
  const gateway = await startGateway(t, { upstreams, newBindings: false })
  for (let i = 0; i < 40; i++) await get(`${gateway.url}/`)
  t.match(gateway.app.sticky.stats, { new: 40, unbound: 0 })
})

t.test('the default budget: 30 new bindings a minute per client', async (t) => {
  const upstreams = await startUpstreams(t, ['a'])
  const gateway = await startGateway(t, { upstreams, fastify: { trustProxy: true } })
  let served = 0
  for (let i = 0; i < 40; i++) if ((await get(`${gateway.url}/`, { headers: from('198.51.100.99') })).status === 200) served++
  t.equal(served, 40)
  // The bucket refills by one every 2 s: a slow run may see one more.
  const { new: made, unbound } = gateway.app.sticky.stats
  t.ok(made >= 30 && made <= 31 && made + unbound === 40, `30 bound, the rest unbound (${made} + ${unbound})`)
})

t.test('bad newBindings options fail at register, naming the option', async (t) => {
  const upstreams = await startUpstreams(t, ['a'])
  const cases: Array<[unknown, RegExp]> = [
    [true, /newBindings must be false or an object/],
    [{ perClient: { rate: 0 } }, /newBindings\.perClient\.rate must be a positive integer, got 0/],
    [{ perClient: { rate: 3, per: 'soon' } }, /newBindings\.perClient\.per must be a positive duration/],
    [{ perGateway: { rate: 3, burst: 1.5 } }, /newBindings\.perGateway\.burst must be a positive integer, got 1\.5/],
    [{ perGateway: { rate: 3, window: '1s' } }, /newBindings\.perGateway\.window must be absent/],
    [{ perClient: 30 }, /newBindings\.perClient must be false or an object/],
    [{ probationHold: -1 }, /newBindings\.probationHold must be 0 or a positive duration/],
    [{ perIp: {} }, /newBindings\.perIp must be absent/]
  ]
  for (const [newBindings, message] of cases) {
    await t.rejects(startGateway(t, { upstreams, newBindings: newBindings as false }), { code: 'FST_STICKY_INVALID_OPTION', message })
  }
})
