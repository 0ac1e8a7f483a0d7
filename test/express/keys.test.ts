/**
 * Every key kind through the Express door, each paired with a Fastify gateway on the same Redis: the Express door
 * makes the binding (or learns it) and both doors follow it.
 */
import type { IncomingMessage } from 'node:http'
import t from 'tap'
import Redis from 'ioredis'
import type { StickyExpressRouteConfig, StickyTrustProxy } from '../../lib/express/index'
import type { StickyRouteConfig } from '../../lib/index'
import { startGateway } from '../support/gateway'
import { CookieJar, get } from '../support/http'
import { startRedis, uniquePrefix } from '../support/redis'
import { startUpstreams } from '../support/upstreams'
import { startExpressGateway, type Host, type TestExpressGateway } from './express-gateway'

t.test('every key kind, Express door first, Fastify door after', async (t) => {
  const redis = await startRedis(t)
  const upstreams = await startUpstreams(t)
  const client = new Redis(redis.url)
  t.teardown(() => client.disconnect())

  interface Pair { urls: [string, string], express: TestExpressGateway, prefix: string }
  const pair = async (
    route: StickyExpressRouteConfig, fastifyRoute: StickyRouteConfig,
    door: { host?: Host, trustProxy?: StickyTrustProxy, expressTrust?: boolean } = {}, fastify = {}
  ): Promise<Pair> => {
    const prefix = uniquePrefix()
    const express = await startExpressGateway(t, {
      upstreams, redis: redis.url, prefix, host: door.host, trustProxy: door.trustProxy,
      mount (sticky, app, server) {
        if (door.expressTrust === true) app?.set('trust proxy', true)
        const proxy = sticky.proxy(route)
        if (app !== undefined) app.use(proxy)
        else server.on('request', (req, res) => { proxy(req, res) })
      }
    })
    const fastifyGateway = await startGateway(t, {
      upstreams, redis: redis.url, prefix, fastify,
      routes (app) { app.all('/*', { config: { sticky: fastifyRoute } }, (_request, reply) => reply.forward()) }
    })
    return { urls: [express.url, fastifyGateway.url], express, prefix }
  }
  const upstreamOf = async (url: string, headers: Record<string, string> = {}): Promise<string> => (await get(url, { headers })).json().upstream

  t.test('query parameter (node:http door: no Express query parser)', async (t) => {
    const { urls } = await pair({ key: { query: 'room' } }, { key: { query: 'room' } }, { host: 'node' })
    const rooms = new Map<string, string>()
    for (const room of ['1', '2', '3', '4', '5', '6']) rooms.set(room, await upstreamOf(`${urls[0]}/chat?room=${room}`))
    t.ok(new Set(rooms.values()).size >= 2, 'rooms spread over upstreams')
    for (const [room, upstream] of rooms) t.equal(await upstreamOf(`${urls[1]}/chat?x=1&room=${room}`), upstream, `room ${room} stays`)
  })

  for (const [name, door] of [['the trustProxy option', { trustProxy: true }], ['Express\'s own trust proxy setting', { expressTrust: true }]] as const) {
    t.test(`ip through ${name}; IPv6 grouped by /64`, async (t) => {
      const trusted = await pair({ key: 'ip' }, { key: 'ip' }, door, { trustProxy: true })
      const v6 = new Map<string, string>()
      for (let net = 1; net <= 6; net++) v6.set(`2001:db8:${net}:1`, await upstreamOf(`${trusted.urls[0]}/`, { 'x-forwarded-for': `2001:db8:${net}:1::1` }))
      t.ok(new Set(v6.values()).size >= 2, 'six /64s spread')
      for (const [net, upstream] of v6) {
        t.equal(await upstreamOf(`${trusted.urls[1]}/`, { 'x-forwarded-for': `${net}:ffff:eeee:dddd:cccc` }), upstream, 'same /64 through the Fastify door: same upstream')
      }
      const echo = (await get(`${trusted.urls[0]}/`, { headers: { 'x-forwarded-for': '203.0.113.9, 198.51.100.1', 'x-forwarded-proto': 'https' } }))
      t.equal(echo.json().headers['x-forwarded-for'], '203.0.113.9, 198.51.100.1, 127.0.0.1', 'the trusted chain, then the peer')
      t.equal(echo.json().headers['x-forwarded-proto'], 'https')
    })
  }

  t.test('ip without trusted proxies: X-Forwarded-For is ignored', async (t) => {
    const untrusted = await pair({ key: 'ip' }, { key: 'ip' })
    const seen = new Set<string>()
    for (let i = 0; i < 6; i++) seen.add(await upstreamOf(`${untrusted.urls[i % 2]}/`, { 'x-forwarded-for': `198.51.100.${i}` }))
    t.equal(seen.size, 1, 'every request is the same client (127.0.0.1)')
  })

  t.test('a function gets the Express request; an ordered list (header, then cookie)', async (t) => {
    const requests: IncomingMessage[] = []
    const fn = (request: IncomingMessage): string | undefined => {
      requests.push(request)
      return (request.headers['x-user'] as string | undefined)?.toLowerCase()
    }
    const { urls } = await pair({ key: fn }, { key: (request) => (request.headers['x-user'] as string | undefined)?.toLowerCase() })
    const upstream = await upstreamOf(`${urls[0]}/`, { 'x-user': 'Alice' })
    t.equal(await upstreamOf(`${urls[1]}/`, { 'x-user': 'ALICE' }), upstream, 'the function decides what is the same key')
    t.equal(typeof (requests[0] as IncomingMessage & { originalUrl?: string }).originalUrl, 'string', 'it was given the Express request')

    const list = await pair({ key: [{ header: 'x-tenant' }, 'cookie'] }, { key: [{ header: 'x-tenant' }, 'cookie'] }, { host: 'express4' })
    const tenant = await get(`${list.urls[0]}/`, { headers: { 'x-tenant': 'acme' } })
    t.equal(tenant.setCookies.length, 0, 'the header yielded: no cookie')
    const jar = new CookieJar()
    const anon = await get(`${list.urls[0]}/`, { jar })
    t.ok(jar.has('sticky'), 'no header: the routing cookie takes over')
    t.equal((await get(`${list.urls[1]}/`, { jar })).json().upstream, anon.json().upstream)
  })

  t.test('learn: the app cookie is bound before the response reaches the client, and forgotten when deleted', async (t) => {
    const { urls, express, prefix } = await pair({ key: { learn: 'JSESSIONID' } }, { key: { learn: 'JSESSIONID' } })
    const jar = new CookieJar()
    const login = await get(`${urls[0]}/login/set-cookie/JSESSIONID/s1`, { jar })
    t.equal(jar.get('JSESSIONID'), 's1')
    t.notOk(jar.has('sticky'), 'no routing cookie of our own in learn mode')
    t.equal((await client.keys(prefix + '*:b:*')).length, 1, 'bound in the store when the response arrived')
    t.equal(express.sticky.api.stats.learned, 1)
    for (let i = 0; i < 4; i++) t.equal((await get(`${urls[(i + 1) % 2]}/cart`, { jar })).json().upstream, login.json().upstream, 'next requests, through either door, follow it')
    const logout = await get(`${urls[0]}/logout/delete-cookie/JSESSIONID`, { jar })
    t.equal(logout.json().upstream, login.json().upstream, 'the logout itself still went to the session\'s upstream')
    t.equal((await client.keys(prefix + '*:b:*')).length, 0, 'and the binding is gone')
    t.equal(express.sticky.api.stats.learnedForgotten, 1)
  })

  t.test('key: false balances over the pool, binding nothing; proxy(false) over the default pool', async (t) => {
    const { urls, prefix } = await pair({ key: false }, { key: false })
    const seen = new Set<string>()
    for (let i = 0; i < 6; i++) {
      const response = await get(`${urls[0]}/`)
      t.equal(response.setCookies.length, 0)
      seen.add(response.json().upstream)
    }
    t.equal(seen.size, 3, 'round robin')
    t.equal((await client.keys(prefix + '*:b:*')).length, 0)
    const plain = await startExpressGateway(t, { upstreams, mount (sticky, app) { app?.use(sticky.proxy(false)) } })
    const spread = new Set<string>()
    for (let i = 0; i < 3; i++) spread.add(await upstreamOf(`${plain.url}/`))
    t.equal(spread.size, 3)
  })
})
