import t from 'tap'
import type { StickyPluginOptions } from '../../lib/index'
import type { TestGateway } from '../support/gateway'

type StickyPoolOptions = StickyPluginOptions['pools'][string]
import { startGateway } from '../support/gateway'
import { CookieJar, get } from '../support/http'
import { startRedis, uniquePrefix } from '../support/redis'
import { startUpstreamProcesses } from '../support/upstream-process'
import { startUpstreams } from '../support/upstreams'
import { eventually } from '../support/eventually'

const poolOf = (upstreams: Array<{ id: string, url: string }>): Record<string, StickyPoolOptions> =>
  ({ shop: { upstreams: upstreams.map((u) => ({ id: u.id, url: u.url })), cooldown: '1h' } })

// Each subtest has upstreams, gateways (and Redis) of its own, and spends most of its time waiting on processes, probes
// and polls: they run side by side.
t.jobs = 7

t.test('a killed upstream: its clients move, once, to the same new upstream on every gateway', async (t) => {
  const redis = await startRedis(t)
  const upstreams = await startUpstreamProcesses(t, ['a', 'b', 'c'])
  const prefix = uniquePrefix()
  const gateways: TestGateway[] = []
  for (let i = 0; i < 2; i++) gateways.push(await startGateway(t, { pools: poolOf(upstreams), redis: redis.url, prefix }))
  const clients = Array.from({ length: 12 }, () => ({ jar: new CookieJar(), upstream: '', failures: 0, rebounds: 0 }))
  // Bound through one gateway, so its own counts make the spread exact; the traffic below uses both.
  for (const client of clients) client.upstream = (await get(`${gateways[0].url}/`, { jar: client.jar })).json().upstream
  const victim = 'b'
  const victims = clients.filter((c) => c.upstream === victim)
  t.equal(victims.length, 4, 'least-sessions spread 12 clients 4/4/4')

  await upstreams[1].kill()
  const after = new Map<typeof clients[number], string[]>()
  // Bounded traffic: 4 rounds, every client alternates gateways, GET and a small POST body.
  for (let round = 0; round < 4; round++) {
    await Promise.all(clients.map(async (client, i) => {
      const gateway = gateways[(i + round) % 2]
      const response = round % 2 === 0
        ? await get(`${gateway.url}/r${round}`, { jar: client.jar })
        : await get(`${gateway.url}/r${round}`, { jar: client.jar, method: 'POST', body: `round ${round}`, headers: { 'content-type': 'text/plain' } })
      if (response.status !== 200) {
        client.failures++
        return
      }
      const echo = response.json()
      if (echo.headers['x-sticky-rebound'] === '1') client.rebounds++
      if (round % 2 === 1) t.equal(echo.body, `round ${round}`, 'POST body arrives (also after a retry)')
      after.set(client, [...(after.get(client) ?? []), echo.upstream])
    }))
  }
  t.equal(clients.reduce((n, c) => n + c.failures, 0), 0, 'no failed request: every one was replayable')
  for (const client of clients) {
    const seen = new Set(after.get(client))
    t.equal(seen.size, 1, 'after the kill, a client stays on one upstream through both gateways')
    if (client.upstream === victim) {
      t.not([...seen][0], victim, 'moved off the dead upstream')
      t.equal(client.rebounds, 1, 'the app is told once that the session moved')
    } else {
      t.equal([...seen][0], client.upstream, 'clients of live upstreams never move')
      t.equal(client.rebounds, 0)
    }
  }
  await eventually(() => gateways.every((g) => g.app.sticky.state('shop', victim) === 'down'), 2000)
  t.same(gateways.map((g) => g.app.sticky.state('shop', victim)), ['down', 'down'], 'both gateways know it is down')
  const counts = await gateways[0].app.sticky.sessionCounts('shop')
  t.equal(counts[victim], 0, 'no session left on the dead upstream')
  t.equal(counts.a + counts.c, 12)
})

t.test('draining keeps sessions, takes no new ones, and is seen by every gateway', async (t) => {
  const redis = await startRedis(t)
  const upstreams = await startUpstreams(t)
  const prefix = uniquePrefix()
  const g1 = await startGateway(t, { upstreams, redis: redis.url, prefix })
  const g2 = await startGateway(t, { upstreams, redis: redis.url, prefix })
  const jars = Array.from({ length: 6 }, () => new CookieJar())
  const bound = await Promise.all(jars.map(async (jar) => (await get(`${g1.url}/`, { jar })).json().upstream as string))
  await g1.app.sticky.drain('shop', 'a')
  t.equal(g1.app.sticky.state('shop', 'a'), 'draining')
  t.ok(await eventually(() => g2.app.sticky.state('shop', 'a') === 'draining', 2000), 'the other gateway sees it within a second')
  for (let i = 0; i < 9; i++) t.not((await get(`${g2.url}/`)).json().upstream, 'a', 'no new session on a draining upstream')
  for (const [i, jar] of jars.entries()) t.equal((await get(`${g2.url}/`, { jar })).json().upstream, bound[i], 'bound sessions stay')
  t.equal(await g2.app.sticky.sessions('shop', 'a'), bound.filter((u) => u === 'a').length, 'live count for a preStop hook')
  await g2.app.sticky.undrain('shop', 'a')
  t.ok(await eventually(() => g1.app.sticky.state('shop', 'a') === 'active', 2000))
  const fresh = new Set<string>()
  for (let i = 0; i < 6; i++) fresh.add((await get(`${g1.url}/`)).json().upstream)
  t.ok(fresh.has('a'), 'new sessions reach it again')
  await t.rejects(g1.app.sticky.drain('shop', 'zz'), /pool "shop" has no upstream "zz"/)
  await t.rejects(g1.app.sticky.sessions('nope', 'a'), /no pool named "nope"/)
})

t.test('strict routes answer 503 and keep the binding; the client returns when the upstream does', async (t) => {
  const upstreams = await startUpstreamProcesses(t, ['a', 'b'])
  const gateway = await startGateway(t, {
    pools: { shop: { upstreams: upstreams.map((u) => ({ id: u.id, url: u.url })), healthCheck: { path: '/health', interval: 100, healthyThreshold: 1, unhealthyThreshold: 1 } } },
    defaults: { failover: 'strict' }
  })
  const jar = new CookieJar()
  const first = (await get(`${gateway.url}/`, { jar })).json().upstream as string
  const process = upstreams.find((u) => u.id === first) as typeof upstreams[number]
  await process.kill()
  const failed = await get(`${gateway.url}/`, { jar })
  t.equal(failed.status, 503)
  t.match(failed.json().message, /bound to is down/)
  t.equal(failed.headers['retry-after'], '1', 'Retry-After follows the probe interval')
  t.equal(failed.setCookies.length, 0, 'binding and cookie kept')
  t.equal((await get(`${gateway.url}/`, { jar })).status, 503, 'still 503 while down')
  await process.restart()
  t.ok(await eventually(() => gateway.app.sticky.state('shop', first) === 'active', 3000), 'probes bring it back')
  t.equal((await get(`${gateway.url}/`, { jar })).json().upstream, first, 'the client is back on its upstream')
})

t.test('health: probes take an upstream down and up; without probes a cool-down retry brings it back', async (t) => {
  // The two halves share nothing (upstreams and gateway of their own): they run side by side.
  const probes = async (): Promise<void> => {
    const probed = await startUpstreamProcesses(t, ['a', 'b'])
    const gateway = await startGateway(t, {
      pools: { shop: { upstreams: probed.map((u) => ({ id: u.id, url: u.url })), healthCheck: { path: '/health', interval: 50, healthyThreshold: 2, unhealthyThreshold: 2 } } }
    })
    await get(`${probed[0].url}/health/fail`)
    t.ok(await eventually(() => gateway.app.sticky.state('shop', 'a') === 'down', 2000), 'failing probes: down')
    for (let i = 0; i < 4; i++) t.equal((await get(`${gateway.url}/`)).json().upstream, 'b', 'new sessions avoid it')
    await get(`${probed[0].url}/health/ok`)
    t.ok(await eventually(() => gateway.app.sticky.state('shop', 'a') === 'active', 2000), 'passing probes: up again')
  }

  const cooldown = async (): Promise<void> => {
    const plain = await startUpstreamProcesses(t, ['c', 'd'])
    const cooled = await startGateway(t, { pools: { shop: { upstreams: plain.map((u) => ({ id: u.id, url: u.url })), cooldown: 300 } } })
    const jar = new CookieJar()
    const bound = (await get(`${cooled.url}/`, { jar })).json().upstream as string
    const victim = plain.find((u) => u.id === bound) as typeof plain[number]
    await victim.kill()
    const moved = await get(`${cooled.url}/`, { jar })
    t.equal(moved.status, 200, 'GET retried on the other upstream')
    t.not(moved.json().upstream, bound)
    t.equal(cooled.app.sticky.state('shop', bound), 'down', 'passive detection')
    await victim.restart()
    t.ok(await eventually(() => cooled.app.sticky.state('shop', bound) === 'active', 4000), 'reachable after the cool-down: up')
  }
  await Promise.all([probes(), cooldown()])
})

t.test('slow start: a re-activated upstream ramps up instead of taking every new session', async (t) => {
  const upstreams = await startUpstreams(t, ['a', 'b'])
  // Many new sessions from one address: the per-client new-binding budget is off.
  const ramped = await startGateway(t, { pools: { shop: { upstreams: upstreams.map((u) => ({ id: u.id, url: u.url })), slowStart: '1h' } }, newBindings: false })
  const instant = await startGateway(t, { pools: { shop: { upstreams: upstreams.map((u) => ({ id: u.id, url: u.url })) } }, newBindings: false })
  for (const gateway of [ramped, instant]) {
    await gateway.app.sticky.drain('shop', 'b')
    for (let i = 0; i < 20; i++) await get(`${gateway.url}/`)
    await gateway.app.sticky.undrain('shop', 'b')
  }
  const share = async (gateway: TestGateway): Promise<number> => {
    let b = 0
    for (let i = 0; i < 20; i++) if ((await get(`${gateway.url}/`)).json().upstream === 'b') b++
    return b
  }
  t.equal(await share(instant), 20, 'without slow start the empty upstream takes every new session')
  t.ok(await share(ramped) <= 2, 'with slow start it gets a trickle at first')
})

t.test('no upstream left: 503 with Retry-After, and stateless routes fail over too', async (t) => {
  const upstreams = await startUpstreamProcesses(t, ['a', 'b'])
  const gateway = await startGateway(t, {
    pools: poolOf(upstreams),
    routes (app) {
      app.get('/assets/*', { config: { sticky: { key: false } } }, (_request, reply) => reply.forward())
      app.all('/*', { config: { sticky: true } }, (_request, reply) => reply.forward())
    }
  })
  await upstreams[0].kill()
  for (let i = 0; i < 4; i++) {
    const response = await get(`${gateway.url}/assets/x${i}`)
    t.equal(response.status, 200, 'stateless GET retried on the live upstream')
    t.equal(response.json().upstream, 'b')
    t.equal(response.json().headers['x-sticky-rebound'], undefined, 'no rebound header for stateless requests')
  }
  await upstreams[1].kill()
  const none = await get(`${gateway.url}/`)
  t.equal(none.status, 503)
  t.equal(none.json().code, 'FST_STICKY_NO_UPSTREAM')
  t.equal(none.headers['retry-after'], '3600')
  t.equal((await get(`${gateway.url}/assets/y`)).status, 503)
})

t.test('a client cannot fake the rebound header; a large streamed POST is not retried', async (t) => {
  const upstreams = await startUpstreamProcesses(t, ['a', 'b'])
  const gateway = await startGateway(t, {
    pools: poolOf(upstreams),
    replayBodyLimit: 1024,
    routes (app) {
      app.removeAllContentTypeParsers()
      app.addContentTypeParser('*', (_request, payload, done) => { done(null, payload) })
      app.all('/*', { config: { sticky: true } }, (_request, reply) => reply.forward())
    }
  })
  const jar = new CookieJar()
  const first = await get(`${gateway.url}/`, { jar, headers: { 'x-sticky-rebound': '1' } })
  t.equal(first.json().headers['x-sticky-rebound'], undefined, 'stripped')
  const small = await get(`${gateway.url}/`, { jar, method: 'POST', body: 'small', headers: { 'content-type': 'text/plain' } })
  t.equal(small.json().body, 'small', 'a buffered body still arrives')
  const bound = first.json().upstream as string
  await (upstreams.find((u) => u.id === bound) as typeof upstreams[number]).kill()
  const big = await get(`${gateway.url}/`, { jar, method: 'POST', body: 'x'.repeat(4096), headers: { 'content-type': 'text/plain' } })
  t.equal(big.status, 502, 'a body over replayBodyLimit cannot be sent again: 502')
  const next = await get(`${gateway.url}/`, { jar })
  t.equal(next.status, 200, 'the next request goes to the new upstream')
  t.equal(next.json().headers['x-sticky-rebound'], '1')
})
