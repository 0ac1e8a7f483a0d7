/**
 * Planned session handoff end to end: two gateways on one real redis-server, three real cart upstreams with
 * fastify-sticky/upstream. Evacuating an upstream under load loses and duplicates no cart item and answers no 5xx;
 * failures leave a session where it was (or to failover, when its upstream died); a rebalance after a scale-up
 * evens the pool out without losing a cart.
 */
import { once } from 'node:events'
import t from 'tap'
import { Registry } from 'prom-client'
import { CART_HANDOFF_SECRET, startCartProcess, startCartUpstreams, type CartUpstream } from '../support/cart-upstream'
import { eventually } from '../support/eventually'
import { startGateway, type TestGateway } from '../support/gateway'
import { CookieJar, get } from '../support/http'
import { startRedis, uniquePrefix } from '../support/redis'
import type { TeardownOwner } from '../support/teardown-owner'
import { openSocket, startWsUpstreams } from '../support/ws-upstream'

const HANDOFF: { secret: string, hold: `${number}ms` | `${number}s`, concurrency: number } = { secret: CART_HANDOFF_SECRET, hold: '500ms', concurrency: 8 }
// The load test runs 100 clients, two gateways and three upstreams in this one process on two cores: its event loop
// lags far more than a real gateway's, so its moves get a hold a real deployment would not need.
const LOADED_HANDOFF = { ...HANDOFF, hold: '2s' as const }

async function twoGateways (t: TeardownOwner, upstreams: ReadonlyArray<{ id: string, url: string }>, registry?: Registry, handoff: typeof HANDOFF = HANDOFF): Promise<[TestGateway, TestGateway]> {
  const redis = await startRedis(t)
  const prefix = uniquePrefix()
  const options = {
    pools: { shop: { upstreams: upstreams.map(({ id, url }) => ({ id, url })) } },
    redis: redis.url,
    prefix,
    newBindings: false as const,
    handoff
  }
  return Promise.all([
    startGateway(t, { ...options, ...(registry === undefined ? {} : { metrics: { registry } }) }),
    startGateway(t, options)
  ])
}

interface Client {
  readonly jar: CookieJar
  readonly added: string[]
  upstream: string
}

async function startClients (gateways: readonly TestGateway[], count: number): Promise<Client[]> {
  return Promise.all(Array.from({ length: count }, async (_, i) => {
    const jar = new CookieJar()
    const first = await get(`${gateways[i % 2].url}/cart/c${i}-0`, { jar, method: 'POST' })
    return { jar, added: [`c${i}-0`], upstream: first.json().upstream as string }
  }))
}

t.test('evacuating an upstream under load: every cart moves whole, no 5xx, both gateways agree', async (t) => {
  const upstreams = await startCartUpstreams(t, ['a', 'b', 'c'])
  const registry = new Registry()
  const gateways = await twoGateways(t, upstreams, registry, LOADED_HANDOFF)
  const clients = await startClients(gateways, 100)
  const onA = clients.filter((client) => client.upstream === 'a').length
  t.ok(onA >= 20, `sessions on a before (${onA})`)

  let stop = false
  const problems: string[] = []
  let slowest = 0
  const load = Promise.all(clients.map(async (client, i) => {
    // Bounded: until told to stop, 60 requests a client at most.
    for (let n = 1; n <= 60 && !stop; n++) {
      const item = `c${i}-${n}`
      const started = Date.now()
      const answer = await get(`${gateways[n % 2].url}/cart/${item}`, { jar: client.jar, method: 'POST' })
      slowest = Math.max(slowest, Date.now() - started)
      if (answer.status !== 200) {
        problems.push(`client ${i}: ${answer.status} ${answer.body.slice(0, 120)}`)
        continue
      }
      client.added.push(item)
      const items = answer.json().items as string[]
      if (items.join() !== client.added.join()) problems.push(`client ${i}: cart ${items.join()} after ${client.added.join()}`)
      client.upstream = answer.json().upstream
    }
  }))
  await eventually(() => clients.every((client) => client.added.length >= 3), 10_000)
  const job = gateways[0].app.sticky.evacuate('shop', 'a')
  t.equal(job.state, 'running')
  await eventually(() => gateways[0].app.sticky.moveJob(job.id)?.state !== 'running', 20_000)
  await eventually(() => clients.every((client) => client.added.length >= 8), 10_000)
  stop = true
  await load
  const ended = gateways[0].app.sticky.moveJob(job.id)
  t.equal(ended?.state, 'done')
  t.same(ended?.failed, {}, 'no session stayed behind')
  t.ok((ended?.moved ?? 0) >= onA, `every session of a moved (${ended?.moved})`)
  t.same(problems, [], 'no 5xx, no lost or duplicated cart item, under load')
  t.ok(slowest < 4000, `no request waited past the hold (2 s) and a little while its session moved (slowest ${slowest} ms)`)
  t.equal(gateways[1].app.sticky.state('shop', 'a'), 'draining', 'the other gateway sees a draining')
  t.same(await gateways[0].app.sticky.sessionCounts('shop').then((counts) => counts.a), 0, 'a has no session left')
  for (const [i, client] of clients.entries()) {
    const [one, two] = await Promise.all(gateways.map(async (gateway) => (await get(`${gateway.url}/cart`, { jar: client.jar })).json()))
    if (one.upstream !== two.upstream || one.upstream === 'a' || (one.items as string[]).join() !== client.added.join()) {
      t.fail(`client ${i}: ${JSON.stringify([one, two])} after ${client.added.join()}`)
    }
  }
  t.pass('every session ends on a live upstream other than a, with its whole cart, and both gateways agree')
  t.equal(upstreams[0].carts.size, 0, 'a dropped every cart it handed over')
  const metrics = await registry.metrics()
  t.match(metrics, /sticky_session_moves_total\{pool="shop",outcome="moved",reason="with-state"\} \d+/)
  t.match(metrics, /sticky_session_move_hold_seconds_count\{pool="shop"\} \d+/)
})

t.test('one session moved with handoff; export and import failures leave it where it was', async (t) => {
  const upstreams = await startCartUpstreams(t, ['a', 'b'])
  const [one, two] = await twoGateways(t, upstreams)
  const jar = new CookieJar()
  const first = await get(`${one.url}/cart/tea`, { jar, method: 'POST' })
  const from = first.json().upstream as string
  const to = from === 'a' ? 'b' : 'a'
  const cookie = jar.get('sticky') as string
  const source = upstreams.find((u) => u.id === from) as CartUpstream
  const target = upstreams.find((u) => u.id === to) as CartUpstream

  source.faults = { exportThrows: true }
  await t.rejects(one.app.sticky.bindings.move(cookie, to, { handoff: true }), { code: 'FST_STICKY_HANDOFF_FAILED', reason: 'export-failed' })
  source.faults = {}
  target.faults = { importThrows: true }
  await t.rejects(two.app.sticky.bindings.move(cookie, to, { handoff: true }), { code: 'FST_STICKY_HANDOFF_FAILED', reason: 'import-failed' })
  target.faults = {}
  const stayed = await get(`${two.url}/cart/cake`, { jar, method: 'POST' })
  t.same([stayed.status, stayed.json().upstream, stayed.json().items], [200, from, ['tea', 'cake']], 'after both failures the session is served where it was, its cart whole and not frozen')

  const moved = await one.app.sticky.bindings.move(cookie, to, { handoff: true })
  t.equal(moved.upstream, to)
  const after = await get(`${two.url}/cart/jam`, { jar, method: 'POST' })
  t.same([after.json().upstream, after.json().items], [to, ['tea', 'cake', 'jam']], 'the other gateway sends it to its new upstream, cart included')
  t.equal(source.carts.size, 0, 'the old upstream dropped it')

  // A request that arrives mid-move waits at the old upstream, then goes on to the new one within the hold.
  target.faults = { exportDelayMs: 200 }
  const back = one.app.sticky.bindings.move(cookie, from, { handoff: true })
  await new Promise((resolve) => setTimeout(resolve, 60))
  const started = Date.now()
  const during = await get(`${two.url}/cart/honey`, { jar, method: 'POST' })
  const waited = Date.now() - started
  t.same([during.status, during.json().upstream, during.json().items], [200, from, ['tea', 'cake', 'jam', 'honey']], 'held, then served by the new upstream with the moved cart')
  t.ok(waited < 500 + 250, `answered within the hold (500 ms) and a little: ${waited} ms`)
  t.equal((await back).upstream, from)
  target.faults = {}

  // Through the gateway, a client never reaches the handoff endpoints (their secret guards them too).
  for (const path of ['/.well-known/sticky-handoff/export', '/.well-known/STICKY-handoff/import', '/.well-known/sticky%2Dhandoff/commit',
    '/./.well-known/sticky-handoff/export', '/%2e/.well-known/sticky-handoff/export', '//.well-known/sticky-handoff/export', '/.well-known//sticky-handoff/export']) {
    t.equal((await get(`${one.url}${path}`, { jar, method: 'POST', body: { v: 1, session: 'x' } })).status, 400, `${path} is refused`)
  }
  // Nor can it name a session of its own choosing.
  const forged = await get(`${one.url}/cart`, { jar, headers: { 'x-sticky-session': 'someone-elses-session' } })
  t.not(forged.json().session, 'someone-elses-session', 'a client-sent x-sticky-session is replaced')
})

t.test('a request in flight longer than the hold: the move gives up (busy), and the session\'s next request waits no longer than the hold', async (t) => {
  const upstreams = await startCartUpstreams(t, ['a', 'b'])
  const [one] = await twoGateways(t, upstreams)
  const jar = new CookieJar()
  const from = (await get(`${one.url}/cart/tea`, { jar, method: 'POST' })).json().upstream as string
  const slow = get(`${one.url}/cart?delay=1500`, { jar })
  await new Promise((resolve) => setTimeout(resolve, 100))
  const move = one.app.sticky.bindings.move(jar.get('sticky') as string, from === 'a' ? 'b' : 'a', { handoff: true }).then(() => 'moved', (error: { reason?: string }) => error.reason)
  await new Promise((resolve) => setTimeout(resolve, 50))
  const started = Date.now()
  const next = await get(`${one.url}/cart`, { jar })
  t.ok(Date.now() - started < 500 + 300, `held at most the hold (${Date.now() - started} ms)`)
  t.same([next.status, next.json().upstream, next.json().items], [200, from, ['tea']], 'then served where it was')
  t.equal(await move, 'busy', 'the move gives up: a request of the session stayed in flight past the hold')
  t.equal((await slow).status, 200)
})

t.test('the old upstream is killed mid-move: the move gives up, failover takes the session, no 5xx', async (t) => {
  const victim = await startCartProcess(t, 'a', 400)
  const [survivor] = await startCartUpstreams(t, ['b'])
  const [one] = await twoGateways(t, [victim, survivor])
  let jar = new CookieJar()
  for (let i = 0; i < 10 && (await get(`${one.url}/cart/x`, { jar, method: 'POST' })).json().upstream !== 'a'; i++) jar = new CookieJar()
  t.equal((await get(`${one.url}/cart`, { jar })).json().upstream, 'a', 'a session on the victim')
  const move = one.app.sticky.bindings.move(jar.get('sticky') as string, 'b', { handoff: true }).then(() => 'moved', (error: { reason?: string }) => error.reason)
  await new Promise((resolve) => setTimeout(resolve, 150))
  await victim.kill()
  t.equal(await move, 'source-unreachable', 'the move gives up: not a planned move any more')
  const next = await get(`${one.url}/cart/after`, { jar, method: 'POST' })
  t.same([next.status, next.json().upstream], [200, 'b'], 'its next request fails over to a live upstream')
  t.equal(next.json().items.join(), 'after', 'a crash loses the state, as failover always did')
})

t.test('rebalance after a scale-up: the new upstream gets its share, no cart lost', async (t) => {
  const upstreams = await startCartUpstreams(t, ['a', 'b', 'c', 'd'])
  const [one, two] = await twoGateways(t, upstreams.slice(0, 3))
  const clients = await startClients([one, two], 90)
  await one.app.sticky.pool('shop').add({ id: 'd', url: upstreams[3].url })
  const job = one.app.sticky.rebalance('shop')
  await eventually(() => one.app.sticky.moveJob(job.id)?.state === 'done', 20_000)
  await eventually(() => two.app.sticky.pool('shop').upstreams.some((u) => u.id === 'd'), 3000)
  const counts = await one.app.sticky.sessionCounts('shop')
  const mean = 90 / 4
  for (const id of ['a', 'b', 'c', 'd']) t.ok(Math.abs(counts[id] - mean) <= mean * 0.1 + 1, `${id}: ${counts[id]} sessions, mean ${mean}`)
  for (const [i, client] of clients.entries()) {
    const answer = await get(`${two.url}/cart`, { jar: client.jar })
    if (answer.status !== 200 || (answer.json().items as string[]).join() !== client.added.join()) t.fail(`client ${i} lost its cart: ${answer.status} ${answer.body}`)
  }
  t.pass('every cart is whole after the rebalance')
  t.ok((one.app.sticky.moveJob(job.id)?.moved ?? 0) >= 18, 'about a quarter of the sessions moved')
})

t.test('a WebSocket tunnel of a session that moved is closed with 1012 (reconnect), and the reconnect reaches the new upstream', async (t) => {
  const upstreams = await startWsUpstreams(t, ['a', 'b'])
  const [one, two] = await twoGateways(t, upstreams)
  const opened = await openSocket(`${one.url.replace('http:', 'ws:')}/chat`)
  const cookie = opened.setCookie[0].split(';')[0]
  const from = opened.hello.upstream
  const to = from === 'a' ? 'b' : 'a'
  const closed = once(opened.ws, 'close')
  await two.app.sticky.bindings.move(decodeURIComponent(cookie.slice(cookie.indexOf('=') + 1)), to)
  const [code] = await closed
  t.equal(code, 1012, 'closed on the other gateway too, with "service restart"')
  const again = await openSocket(`${one.url.replace('http:', 'ws:')}/chat`, cookie)
  t.equal(again.hello.upstream, to, 'the reconnect reaches the new upstream')
  again.ws.close()
})
