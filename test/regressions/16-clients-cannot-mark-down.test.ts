/**
 * Security round 2, finding 1: a client must not be able to mark an upstream down. Only a failure to connect
 * counts against an upstream; a slow answer is a 504 for that one request, and a client that goes away takes
 * nothing with it. Two real gateways share one real redis-server, so a wrong verdict would show on both.
 */
import http from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import t, { type Test } from 'tap'
import { startGateway, type TestGateway } from '../support/gateway'
import { startRedis, uniquePrefix, type RedisServer } from '../support/redis'
import { rawExchange, upgradeRequest } from '../support/raw-http'

interface SlowUpstream { id: string, url: string, upgrades: number, held: Duplex[] }

// An upstream that answers HTTP at once, except `/slow` (never answers), and never answers an upgrade to `/slow`.
async function startSlowUpstreams (t: Test, ids: string[]): Promise<SlowUpstream[]> {
  const result: SlowUpstream[] = []
  for (const id of ids) {
    const upstream: SlowUpstream = { id, url: '', upgrades: 0, held: [] }
    const server = http.createServer((req, res) => {
      if (req.url?.startsWith('/slow') === true) return
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify({ upstream: id }))
    })
    server.on('upgrade', (_req, socket: Duplex) => {
      upstream.upgrades++
      upstream.held.push(socket)
      socket.on('error', () => {})
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    upstream.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    result.push(upstream)
    t.teardown(async () => {
      for (const socket of upstream.held) socket.destroy()
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    })
  }
  return result
}

// One redis-server for the file (stopped at the end of it); each subtest's gateways share a prefix of their own.
let sharedRedis: Promise<RedisServer> | undefined
const redisOf = (): Promise<RedisServer> => (sharedRedis ??= startRedis(t))

async function twoGateways (t: Test, upstreams: SlowUpstream[]): Promise<[TestGateway, TestGateway]> {
  const redis = await redisOf()
  const prefix = uniquePrefix()
  const options = {
    pools: { shop: { upstreams: upstreams.map((u) => ({ id: u.id, url: u.url })) } },
    redis: redis.url,
    prefix,
    timeouts: { connect: 1000, headers: 300 },
    websocket: { handshakeTimeout: 300 }
  }
  return [await startGateway(t, options), await startGateway(t, options)]
}

function states (gateway: TestGateway, ids: string[]): string[] {
  return ids.map((id) => gateway.app.sticky.state('shop', id))
}

// The subtests share nothing but Redis (each has upstreams, gateways and a key prefix of its own), and most of their time
// is spent waiting out the shared state poll: they run side by side.
t.jobs = 3

t.test('an upgrade the upstream is slow to answer is a 504, and marks nothing down', async (t) => {
  const upstreams = await startSlowUpstreams(t, ['a', 'b'])
  const ids = upstreams.map((u) => u.id)
  const gateways = await twoGateways(t, upstreams)
  // A victim with a session before the attack.
  const first = await fetch(`${gateways[0].url}/page`)
  const victimCookie = (first.headers.get('set-cookie') ?? '').split(';')[0]
  const victimUpstream = (await first.json() as { upstream: string }).upstream

  // The attack of the report, sped up: four slow upgrades on each gateway, twice over.
  for (let round = 0; round < 2; round++) {
    const answers = await Promise.all(gateways.flatMap((g) => [0, 1].map(async () => rawExchange(g.url, upgradeRequest('/slow/socket')))))
    t.same(answers.map((a) => a.status), answers.map(() => 504), `round ${round + 1}: every slow upgrade is answered 504`)
  }
  t.equal(upstreams.reduce((n, u) => n + u.upgrades, 0), 8, 'each slow upgrade reached one upstream once: no retry on another')
  // Every gateway re-reads shared states within a second; wait past that before judging.
  await new Promise((resolve) => setTimeout(resolve, 1200))
  for (const [i, g] of gateways.entries()) t.same(states(g, ids), ['active', 'active'], `gateway ${i + 1} still sees every upstream active`)
  for (const g of gateways) {
    const response = await fetch(`${g.url}/page`, { headers: { cookie: victimCookie } })
    t.equal(response.status, 200)
    t.equal((await response.json() as { upstream: string }).upstream, victimUpstream, 'the victim keeps its upstream on every gateway')
    t.equal(response.headers.get('set-cookie'), null, 'and is not rebound')
  }
})

t.test('a slow HTTP answer is a 504 and marks nothing down', async (t) => {
  const upstreams = await startSlowUpstreams(t, ['a', 'b'])
  const gateways = await twoGateways(t, upstreams)
  const answers = await Promise.all([0, 1, 2, 3].map(async (i) => (await fetch(`${gateways[i % 2].url}/slow`)).status))
  t.same(answers, [504, 504, 504, 504], 'every slow request is answered 504')
  await new Promise((resolve) => setTimeout(resolve, 1200))
  for (const g of gateways) t.same(states(g, ['a', 'b']), ['active', 'active'], 'no upstream is down')
})

t.test('a client that goes away while its upgrade or request waits marks nothing down', async (t) => {
  const upstreams = await startSlowUpstreams(t, ['a', 'b'])
  const gateways = await twoGateways(t, upstreams)
  // Upgrades closed by the client before the upstream answers.
  await Promise.all([0, 1, 2, 3].map(async () => rawExchange(gateways[0].url, upgradeRequest('/slow/socket'), 100)))
  // HTTP requests aborted by the client, one with a body cut short.
  await Promise.all([0, 1].map(async () => rawExchange(gateways[0].url, 'GET /slow HTTP/1.1\r\nHost: x\r\n\r\n', 100)))
  await rawExchange(gateways[0].url, 'POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc', 100)
  // Past the handshake and headers timeouts, so a wrongly kept request would have failed by now.
  await new Promise((resolve) => setTimeout(resolve, 1200))
  for (const g of gateways) t.same(states(g, ['a', 'b']), ['active', 'active'], 'no upstream is down')
  const response = await fetch(`${gateways[0].url}/page`)
  t.equal(response.status, 200, 'the gateway serves on')
})
