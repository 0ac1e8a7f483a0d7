import t from 'tap'
import Redis from 'ioredis'
import type { StickyRouteConfig } from '../../lib/index'
import { startGateway, type TestGateway } from '../support/gateway'
import { CookieJar, get } from '../support/http'
import { startRedis, uniquePrefix } from '../support/redis'
import { startUpstreams } from '../support/upstreams'

t.test('every key kind, across two gateways sharing Redis', async (t) => {
  const redis = await startRedis(t)
  const upstreams = await startUpstreams(t)
  const client = new Redis(redis.url)
  t.teardown(() => client.disconnect())

  const pair = async (route: StickyRouteConfig, fastify = {}): Promise<{ g: TestGateway[], prefix: string }> => {
    const prefix = uniquePrefix()
    const g: TestGateway[] = []
    for (let i = 0; i < 2; i++) {
      g.push(await startGateway(t, {
        upstreams, redis: redis.url, prefix, fastify,
        routes (app) { app.all('/*', { config: { sticky: route } }, (_request, reply) => reply.forward()) }
      }))
    }
    return { g, prefix }
  }
  const upstreamOf = async (url: string, headers: Record<string, string> = {}): Promise<string> => (await get(url, { headers })).json().upstream

  t.test('header: the value is the key; missing → balanced, nothing bound; no routing cookie', async (t) => {
    const { g, prefix } = await pair({ key: { header: 'x-tenant' } })
    for (const tenant of ['acme', 'globex', 'initech', 'umbrella']) {
      const first = await get(`${g[0].url}/`, { headers: { 'x-tenant': tenant } })
      t.equal(first.setCookies.length, 0, 'no routing cookie of our own')
      for (let i = 0; i < 4; i++) t.equal(await upstreamOf(`${g[i % 2].url}/`, { 'x-tenant': tenant }), first.json().upstream, `${tenant} stays, through both gateways`)
    }
    const before = (await client.keys(prefix + '*:b:*')).length
    t.equal(before, 4, 'one binding per tenant')
    for (let i = 0; i < 3; i++) await get(`${g[1].url}/`)
    t.equal((await client.keys(prefix + '*:b:*')).length, before, 'requests without the header bind nothing')
    t.equal(g[1].app.sticky.stats.none, 3)
    const all = await client.keys(prefix + '*')
    t.notOk(all.some((k) => /acme|globex/.test(k)), 'raw keys never reach Redis')
  })

  t.test('query parameter', async (t) => {
    const { g } = await pair({ key: { query: 'room' } })
    const rooms = new Map<string, string>()
    for (const room of ['1', '2', '3', '4', '5', '6']) rooms.set(room, await upstreamOf(`${g[0].url}/chat?room=${room}`))
    t.ok(new Set(rooms.values()).size >= 2, 'rooms spread over upstreams')
    for (const [room, upstream] of rooms) t.equal(await upstreamOf(`${g[1].url}/chat?room=${room}&x=1`), upstream, `room ${room} stays`)
  })

  t.test('ip: through trustProxy only when trusted; IPv6 grouped by /64', async (t) => {
    const trusted = await pair({ key: 'ip' }, { trustProxy: true })
    const v6 = new Map<string, string>()
    for (let net = 1; net <= 6; net++) v6.set(`2001:db8:${net}:1`, await upstreamOf(`${trusted.g[0].url}/`, { 'x-forwarded-for': `2001:db8:${net}:1::1` }))
    t.ok(new Set(v6.values()).size >= 2, 'six /64s spread')
    for (const [net, upstream] of v6) {
      t.equal(await upstreamOf(`${trusted.g[1].url}/`, { 'x-forwarded-for': `${net}:ffff:eeee:dddd:cccc` }), upstream, 'another address in the same /64: same upstream')
    }
    const untrusted = await pair({ key: 'ip' })
    const seen = new Set<string>()
    for (let i = 0; i < 6; i++) seen.add(await upstreamOf(`${untrusted.g[i % 2].url}/`, { 'x-forwarded-for': `198.51.100.${i}` }))
    t.equal(seen.size, 1, 'without trustProxy X-Forwarded-For is ignored: every request is the same client (127.0.0.1)')
  })

  t.test('a function, and an ordered list (header, then cookie)', async (t) => {
    const fn = await pair({ key: (request) => (request.headers['x-user'] as string | undefined)?.toLowerCase() })
    const upstream = await upstreamOf(`${fn.g[0].url}/`, { 'x-user': 'Alice' })
    t.equal(await upstreamOf(`${fn.g[1].url}/`, { 'x-user': 'ALICE' }), upstream, 'the function decides what is the same key')

    const list = await pair({ key: [{ header: 'x-tenant' }, 'cookie'] })
    const tenant = await get(`${list.g[0].url}/`, { headers: { 'x-tenant': 'acme' } })
    t.equal(tenant.setCookies.length, 0, 'the header yielded: no cookie')
    const jar = new CookieJar()
    const anon = await get(`${list.g[0].url}/`, { jar })
    t.ok(jar.has('sticky'), 'no header: the routing cookie takes over')
    t.equal((await get(`${list.g[1].url}/`, { jar })).json().upstream, anon.json().upstream)
  })

  t.test('learn: the app cookie is bound before the response reaches the client, and forgotten when deleted', async (t) => {
    const { g, prefix } = await pair({ key: { learn: 'JSESSIONID' } })
    const jar = new CookieJar()
    // The upstream issues JSESSIONID=s1 (helpers/upstreams answers /set-cookie/<name>/<value>).
    const login = await get(`${g[0].url}/login/set-cookie/JSESSIONID/s1`, { jar })
    t.equal(jar.get('JSESSIONID'), 's1')
    t.notOk(jar.has('sticky'), 'no routing cookie of our own in learn mode')
    t.equal((await client.keys(prefix + '*:b:*')).length, 1, 'bound in the store when the response arrived')
    for (let i = 0; i < 4; i++) t.equal((await get(`${g[i % 2].url}/cart`, { jar })).json().upstream, login.json().upstream, 'next requests, through any gateway, follow it')
    t.equal(g[0].app.sticky.stats.learned, 1)
    const anon = await get(`${g[1].url}/nothing`)
    t.equal(anon.setCookies.length, 0, 'a request without the app cookie is balanced and binds nothing')
    t.equal((await client.keys(prefix + '*:b:*')).length, 1)
  })
  t.test('learn: a response deleting the app cookie (Max-Age=0) forgets the binding', async (t) => {
    const { g, prefix } = await pair({ key: { learn: 'SID' } })
    const jar = new CookieJar()
    const login = await get(`${g[0].url}/set-cookie/SID/abc`, { jar })
    t.equal((await client.keys(prefix + '*:b:*')).length, 1)
    const logout = await get(`${g[1].url}/logout/delete-cookie/SID`, { jar })
    t.equal(logout.json().upstream, login.json().upstream, 'the logout itself still went to the session\'s upstream')
    t.notOk(jar.has('SID'), 'the client dropped the cookie')
    t.equal((await client.keys(prefix + '*:b:*')).length, 0, 'and the binding is gone')
    t.equal(g[1].app.sticky.stats.learnedForgotten, 1)
  })
})
