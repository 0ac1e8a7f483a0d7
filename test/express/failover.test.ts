/**
 * Failures through the Express door beside a Fastify gateway: a killed upstream's clients move once, to the same
 * upstream on every gateway (Express and Fastify alike), with the rebound header and one new cookie; replayable bodies
 * are sent again; what cannot be retried is a 502. (One door's own failover, draining and timeouts: test/doors/.)
 */
import type { StickyPoolOptions } from '../../lib/express/index'
import t from 'tap'
import { startGateway } from '../support/gateway'
import { CookieJar, get } from '../support/http'
import { startRedis, uniquePrefix } from '../support/redis'
import { startUpstreamProcesses } from '../support/upstream-process'
import { eventually } from '../support/eventually'
import { startExpressGateway } from './express-gateway'

const poolOf = (upstreams: Array<{ id: string, url: string }>): Record<string, StickyPoolOptions> =>
  ({ shop: { upstreams: upstreams.map((u) => ({ id: u.id, url: u.url })), cooldown: '1h' } })

t.test('a killed upstream: its clients move, once, to the same new upstream through both doors', async (t) => {
  const redis = await startRedis(t)
  const upstreams = await startUpstreamProcesses(t, ['a', 'b', 'c'])
  const prefix = uniquePrefix()
  const express = await startExpressGateway(t, { pools: poolOf(upstreams), redis: redis.url, prefix })
  const fastify = await startGateway(t, { pools: poolOf(upstreams), redis: redis.url, prefix })
  const urls = [express.url, fastify.url]
  const clients = Array.from({ length: 12 }, () => ({ jar: new CookieJar(), upstream: '', failures: 0, rebounds: 0, cookies: 0 }))
  for (const client of clients) client.upstream = (await get(`${express.url}/`, { jar: client.jar })).json().upstream
  const victims = clients.filter((c) => c.upstream === 'b')
  t.equal(victims.length, 4, 'least-sessions spread 12 clients 4/4/4')

  await upstreams[1].kill()
  const after = new Map<typeof clients[number], string[]>()
  for (let round = 0; round < 4; round++) {
    // Round 0 goes through the Express door only, so each victim's failover is the Express door's doing.
    await Promise.all(clients.map(async (client, i) => {
      const url = round === 0 ? express.url : urls[(i + round) % 2]
      const response = round % 2 === 0
        ? await get(`${url}/r${round}`, { jar: client.jar })
        : await get(`${url}/r${round}`, { jar: client.jar, method: 'POST', body: `round ${round}`, headers: { 'content-type': 'text/plain' } })
      if (response.status !== 200) {
        client.failures++
        return
      }
      client.cookies += response.setCookies.length
      const echo = response.json()
      if (echo.headers['x-sticky-rebound'] === '1') client.rebounds++
      if (round % 2 === 1) t.equal(echo.body, `round ${round}`, 'POST body arrives (also after a retry)')
      after.set(client, [...(after.get(client) ?? []), echo.upstream])
    }))
  }
  t.equal(clients.reduce((n, c) => n + c.failures, 0), 0, 'no failed request: every one was replayable')
  for (const client of clients) {
    const seen = new Set(after.get(client))
    t.equal(seen.size, 1, 'after the kill, a client stays on one upstream through both doors')
    if (client.upstream === 'b') {
      t.not([...seen][0], 'b', 'moved off the dead upstream')
      t.equal(client.rebounds, 1, 'the app is told once that the session moved')
      t.equal(client.cookies, 1, 'one new routing cookie, on the failed-over response')
    } else {
      t.equal([...seen][0], client.upstream, 'clients of live upstreams never move')
      t.same([client.rebounds, client.cookies], [0, 0])
    }
  }
  t.ok(await eventually(() => fastify.app.sticky.state('shop', 'b') === 'down', 2000), 'the Fastify door knows it is down')
  t.equal(express.sticky.api.state('shop', 'b'), 'down')
  t.equal((await express.sticky.api.sessionCounts('shop')).b, 0, 'no session left on the dead upstream')
})

t.test('what cannot be retried, and nowhere to go', async (t) => {
  const upstreams = await startUpstreamProcesses(t, ['a', 'b'])
  const gateway = await startExpressGateway(t, { pools: poolOf(upstreams), replayBodyLimit: 16 })
  const jar = new CookieJar()
  const bound = (await get(`${gateway.url}/`, { jar })).json().upstream as string
  await upstreams.find((u) => u.id === bound)?.kill()
  const streamed = await get(`${gateway.url}/upload`, { jar, method: 'POST', body: 'x'.repeat(64) })
  t.equal(streamed.status, 502, 'a streamed body (over replayBodyLimit) is not sent again: 502')
  t.match(streamed.json(), { code: 'FST_STICKY_BAD_GATEWAY' })
  t.notMatch(streamed.body, /127\.0\.0\.1/, 'no address in the answer')
  t.equal(gateway.sticky.api.state('shop', bound), 'down', 'but the refusal took the upstream down')
  const moved = await get(`${gateway.url}/`, { jar })
  t.equal(moved.status, 200, 'the next request moves')
  t.not(moved.json().upstream, bound)
  for (const u of upstreams) await u.kill()
  const none = await get(`${gateway.url}/`, { jar })
  t.ok(none.status === 502 || none.status === 503, `every upstream gone: ${none.status}, a problem, not a hang`)
  t.match(none.json().code, /^FST_STICKY_/)
})
