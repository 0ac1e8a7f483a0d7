/**
 * Redis down under traffic, through the Express door beside a Fastify gateway: cookie clients keep their upstream
 * (their verified cookie names it), new clients are served, no request waits on Redis, and shared routing comes back
 * without a restart.
 */
import t from 'tap'
import Redis from 'ioredis'
import { startGateway } from '../helpers/gateway'
import { CookieJar, get } from '../helpers/http'
import { startRedis, uniquePrefix } from '../helpers/redis'
import { startUpstreams } from '../helpers/upstreams'
import { eventually } from '../store/binding-store.contract'
import { startExpressGateway } from './express-gateway'

t.test('Redis down: cookie clients keep their upstream through both doors; recovery needs no restart', async (t) => {
  const redis = await startRedis(t)
  const upstreams = await startUpstreams(t)
  const prefix = uniquePrefix()
  const warnings: string[] = []
  const express = await startExpressGateway(t, {
    upstreams, redis: redis.url, prefix,
    logger: { warn: (_fields, message) => { warnings.push(String(message)) }, info () {}, debug () {} }
  })
  const fastify = await startGateway(t, { upstreams, redis: redis.url, prefix })
  const doors = [express.url, fastify.url]
  const clients = await Promise.all(Array.from({ length: 6 }, async (_, i) => {
    const jar = new CookieJar()
    return { jar, upstream: (await get(`${doors[i % 2]}/`, { jar })).json().upstream as string }
  }))
  await redis.stop()
  let slowest = 0
  const outageClients: Array<{ jar: CookieJar, upstream: string }> = []
  for (let round = 0; round < 3; round++) {
    await Promise.all(clients.map(async (client, i) => {
      const started = Date.now()
      const response = await get(`${doors[(i + round) % 2]}/`, { jar: client.jar })
      slowest = Math.max(slowest, Date.now() - started)
      t.equal(response.status, 200)
      t.equal(response.json().upstream, client.upstream, 'bound client keeps its upstream while Redis is down')
    }))
    const jar = new CookieJar()
    const started = Date.now()
    const fresh = await get(`${express.url}/`, { jar })
    slowest = Math.max(slowest, Date.now() - started)
    t.equal(fresh.status, 200, 'a new client is served by the Express door')
    t.ok(jar.has('sticky'), 'and gets a routing cookie')
    outageClients.push({ jar, upstream: fresh.json().upstream })
  }
  t.ok(slowest < 1000, `no request waited on Redis (slowest ${slowest} ms)`)
  t.ok(express.sticky.api.stats.degraded >= 9, 'counted as degraded')
  t.ok(warnings.some((w) => /binding store failed/.test(w)), 'and said so through the logger')
  for (const client of outageClients) {
    t.equal((await get(`${fastify.url}/`, { jar: client.jar })).json().upstream, client.upstream, 'a client bound during the outage by the Express door is followed by the Fastify door')
  }

  await redis.restart()
  const probe = new Redis(redis.url)
  t.teardown(() => probe.disconnect())
  const everyone = [...clients, ...outageClients]
  let moved = 0
  t.ok(await eventually(async () => {
    for (const [i, client] of everyone.entries()) if ((await get(`${doors[i % 2]}/`, { jar: client.jar })).json().upstream !== client.upstream) moved++
    return (await probe.keys(prefix + '*:b:*')).length === everyone.length
  }, 8000), 'once Redis answers again, every client\'s binding is written back')
  t.equal(moved, 0, 'and no client changed upstream on the way')
  const jar = new CookieJar()
  const upstream = (await get(`${express.url}/`, { jar })).json().upstream
  t.equal((await get(`${fastify.url}/`, { jar })).json().upstream, upstream, 'shared routing is back')
})

t.test('an Express gateway started while Redis is down routes degraded, then uses Redis once it is up', async (t) => {
  const redis = await startRedis(t)
  const upstreams = await startUpstreams(t)
  await redis.stop()
  const warnings: string[] = []
  const gateway = await startExpressGateway(t, {
    upstreams, redis: redis.url, prefix: uniquePrefix(),
    logger: { warn: (_fields, message) => { warnings.push(String(message)) }, info () {}, debug () {} }
  })
  t.ok(warnings.some((w) => w.includes('Redis is not reachable at start')), 'says so at warn')
  const jar = new CookieJar()
  const first = await get(`${gateway.url}/`, { jar })
  t.equal(first.status, 200)
  t.equal(gateway.sticky.api.stats.degraded, 1)
  await redis.restart()
  t.ok(await eventually(async () => {
    const response = await get(`${gateway.url}/`, { jar })
    return response.json().upstream === first.json().upstream && gateway.sticky.api.stats.new >= 1
  }, 8000), 'once Redis is up the client is bound in it, on the same upstream')
})
