/**
 * The `fastify-sticky --config` command as an operator runs it: the compiled bin, a YAML file of two pools and
 * three routes (one stateless), a real redis-server, two gateways on it, reload under load, SIGTERM under load.
 */
import { once } from 'node:events'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { startDnsServer, type DnsZoneEntry } from '../support/dns-server'
import { eventually } from '../support/eventually'
import { startGatewayCommand, type ExampleProcess } from '../support/example-process'
import { CookieJar, get } from '../support/http'
import { startRedis, uniquePrefix } from '../support/redis'
import type { TeardownOwner } from '../support/teardown-owner'
import { startUpstreams, type TestUpstream } from '../support/upstreams'
import { openSocket, startWsUpstreams } from '../support/ws-upstream'

const SECRET = 'config-secret-0123456789-abcdefghijklmn'
const ADMIN_TOKEN = 'admin-token-0123456789'
const ENV = { STICKY_SECRET: SECRET, ADMIN_TOKEN }

function configDir (t: TeardownOwner): string {
  const dir = mkdtempSync(join(tmpdir(), 'fastify-sticky-config-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

const upstreamList = (list: TestUpstream[]): string => list.map((u) => `      - { id: ${u.id}, url: "${u.url}" }`).join('\n')

function twoPoolConfig (shop: TestUpstream[], api: TestUpstream[], prefix: string, extraRoutes = ''): string {
  return `# yaml-language-server: $schema=../../lib/gateway/config.schema.json
listen: { host: 127.0.0.1, port: 0 }
secret: "\${STICKY_SECRET}"
redis: "\${REDIS_URL}"
prefix: "${prefix}"
logging: { level: error }
newBindings: false
admin:
  token: "\${ADMIN_TOKEN}"
  listen: { port: 0 }
pools:
  shop:
    upstreams:
${upstreamList(shop)}
  api:
    upstreams:
${upstreamList(api)}
routes:
  - name: shop
    match: { prefix: /shop }
    pool: shop
    sessionPersistence:
      type: Cookie
      cookie: { name: shop-session, path: /shop, lifetimeType: Permanent }
      absoluteTimeout: 2h
  - name: assets
    match: { prefix: /assets }
    pool: shop
    sticky: false
  - name: api
    match: { path: "/api/:tenant/*", methods: [GET, POST] }
    pool: api
    sessionPersistence: { type: Header, header: { name: x-tenant } }
${extraRoutes}`
}

interface RunningGateway {
  readonly process: ExampleProcess
  readonly url: string
  readonly admin: string
}

async function startConfigGateway (t: TeardownOwner, file: string, env: Record<string, string>): Promise<RunningGateway> {
  const gateway = startGatewayCommand(t, { ...ENV, ...env }, ['--config', file])
  const line = await gateway.waitFor(/listening on (http:\/\/\S+) .*status page at (http:\/\/\S+\/_sticky\/)/)
  return { process: gateway, url: line[1], admin: line[2] }
}

/**
 * A gateway of one pool (`pool`, its `upstreams` as YAML) behind one prefix route, the admin API on a port of its own;
 * `extra` adds top-level keys.
 */
async function startOnePoolGateway (t: TeardownOwner, pool: string, upstreams: string, options: { prefix?: string, extra?: string } = {}): Promise<RunningGateway> {
  const file = join(configDir(t), 'gateway.yaml')
  writeFileSync(file, `listen: { port: 0 }
logging: { level: error }
newBindings: false
admin: { token: "\${ADMIN_TOKEN}", listen: { port: 0 } }
${options.extra ?? ''}
pools:
  ${pool}:
    upstreams: ${upstreams}
routes:
  - match: { prefix: ${options.prefix ?? '/'} }
`)
  return startConfigGateway(t, file, {})
}

// SIGHUP, without waiting for an exit (it must not exit).
function hangUp (gateway: RunningGateway): void {
  process.kill(gateway.process.child.pid as number, 'SIGHUP')
}

t.test('two pools, three routes (one stateless), two gateways on one Redis', async (t) => {
  const [a, b, c, d] = await startUpstreams(t, ['a', 'b', 'c', 'd'])
  const redis = await startRedis(t)
  const file = join(configDir(t), 'gateway.yaml')
  writeFileSync(file, twoPoolConfig([a, b], [c, d], uniquePrefix()))
  const check = startGatewayCommand(t, { ...ENV, REDIS_URL: redis.url }, ['--config', file, '--check'])
  t.equal(await check.exited(), 0, '--check accepts it')
  t.match(check.output().out, /gateway\.yaml: valid \(2 pools, 3 routes\)/)
  const [one, two] = await Promise.all([startConfigGateway(t, file, { REDIS_URL: redis.url }), startConfigGateway(t, file, { REDIS_URL: redis.url })])

  // A bad file stops the command at start with one line naming the file and the path; a secret is not echoed.
  const bad = join(configDir(t), 'bad.yaml')
  writeFileSync(bad, twoPoolConfig([a, b], [c, d], uniquePrefix()).replace(`url: "${d.url}"`, 'url: "${D_URL}"'))
  const refused = startGatewayCommand(t, { ...ENV, REDIS_URL: redis.url, D_URL: 'redis://user:hunter2@10.0.0.1' }, ['--config', bad, '--check'])
  t.equal(await refused.exited(), 2)
  t.match(refused.output().err, /^gateway: \S*bad\.yaml: pools\.api\.upstreams\[1\]\.url must be an http\(s\) origin URL[^\n]*\n$/)
  t.notMatch(refused.output().err, /hunter2/, 'the value from the environment is not printed')

  // Sticky by the pool's own cookie, carried over from sessionPersistence; both gateways agree.
  const seen = new Set<string>()
  for (let client = 0; client < 12; client++) {
    const jar = new CookieJar()
    const first = await get(`${one.url}/shop/cart`, { jar })
    t.equal(first.status, 200)
    const upstream = first.json().upstream as string
    seen.add(upstream)
    if (client === 0) t.match(first.setCookies[0], /^shop-session=[^;]+; Max-Age=7200; Path=\/shop; HttpOnly; SameSite=Lax$/, 'Permanent lifetime: Max-Age is the absoluteTimeout; the path is the route\'s')
    const later = await Promise.all([1, 2, 3, 4].map(async (i) => (await get(`${(i % 2 === 0 ? one : two).url}/shop/item/${i}`, { jar })).json().upstream))
    t.same(later, [upstream, upstream, upstream, upstream], `client ${client} stays on ${upstream} through both gateways`)
  }
  t.same([...seen].sort(), ['a', 'b'], 'new shop sessions spread over the shop pool only')

  // The stateless route: round robin over the same pool, no cookie.
  const assets = await Promise.all([1, 2, 3, 4].map(async (i) => get(`${one.url}/assets/app-${i}.js`)))
  t.same([...new Set(assets.map((r) => r.json().upstream))].sort(), ['a', 'b'])
  t.ok(assets.every((r) => r.setCookies.length === 0), 'a stateless route sets no cookie')

  // Sticky by a header (sessionPersistence type Header) on a path pattern with methods.
  const tenants = new Map<string, string>()
  for (let i = 0; i < 8; i++) {
    const tenant = `tenant-${i}`
    const first = await get(`${one.url}/api/${tenant}/orders`, { headers: { 'x-tenant': tenant } })
    tenants.set(tenant, first.json().upstream)
    const again = await get(`${two.url}/api/${tenant}/orders`, { method: 'POST', headers: { 'x-tenant': tenant }, body: 'x' })
    t.equal(again.json().upstream, first.json().upstream, `${tenant} keeps its upstream on the other gateway`)
  }
  t.same([...new Set(tenants.values())].sort(), ['c', 'd'])
  t.equal((await get(`${one.url}/api/tenant-0/orders`, { method: 'DELETE' })).status, 404, 'a method the route does not list')
  const none = await get(`${one.url}/elsewhere`)
  t.equal(none.status, 404)
  t.equal(none.json().code, 'FST_STICKY_NO_ROUTE')

  const ready = await get(`${one.url}/readyz`)
  t.equal(ready.status, 200)
  t.same(ready.json().pools, { shop: { upstreams: 2, up: 2 }, api: { upstreams: 2, up: 2 } })
  t.equal(ready.json().store, 'connected')
  t.equal((await get(`${two.url}/livez`)).status, 200)
  t.equal((await get(`${one.admin}upstreams`)).status, 401, 'the admin API keeps its token')
})

t.test('reload under load: new routes and upstreams in place, no request lost, no session moved; a bad file is refused', async (t) => {
  const [a, b, c, d, e] = await startUpstreams(t, ['a', 'b', 'c', 'd', 'e'])
  const redis = await startRedis(t)
  const prefix = uniquePrefix()
  const file = join(configDir(t), 'gateway.yaml')
  writeFileSync(file, twoPoolConfig([a, b], [c, d], prefix))
  const [one, two] = await Promise.all([startConfigGateway(t, file, { REDIS_URL: redis.url }), startConfigGateway(t, file, { REDIS_URL: redis.url })])

  const clients = await Promise.all(Array.from({ length: 10 }, async (_, i) => {
    const jar = new CookieJar()
    const upstream = (await get(`${(i % 2 === 0 ? one : two).url}/shop/start`, { jar })).json().upstream as string
    return { jar, upstream }
  }))
  let stop = false
  const failures: string[] = []
  let served = 0
  const load = Promise.all(clients.map(async (client, i) => {
    // Bounded: until the test says stop, and never more than 400 requests a client.
    for (let n = 0; n < 400 && !stop; n++) {
      const response = await get(`${(n % 2 === 0 ? one : two).url}/shop/n/${n}`, { jar: client.jar }).catch((error: Error) => ({ status: 0, error }))
      if (response.status !== 200) failures.push(`client ${i}: status ${response.status}`)
      else if ((response as { json: () => { upstream: string } }).json().upstream !== client.upstream) failures.push(`client ${i} moved`)
      else served++
    }
  }))

  t.ok(await eventually(() => served >= 20, 5000), 'the load runs before the reload')
  writeFileSync(file, twoPoolConfig([a, b, e], [c, d], prefix, `  - name: reports
    match: { prefix: /reports }
    pool: api
    sticky: false
`))
  hangUp(one)
  const reloaded = await get(`${two.admin}reload`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'x-sticky-admin': '1' } })
  t.equal(reloaded.status, 200)
  t.equal(reloaded.json().reloaded, true)
  t.ok(await eventually(async () => (await get(`${one.url}/reports/daily`)).status === 200, 5000), 'SIGHUP: the new route serves')
  t.ok(['c', 'd'].includes((await get(`${two.url}/reports/daily`)).json().upstream), 'POST /_sticky/reload: the new route serves')
  // The new upstream fills up by least-sessions: the next new sessions go to it.
  t.ok(await eventually(async () => (await get(`${one.url}/shop/new`)).json().upstream === 'e', 5000), 'a new shop session reaches the added upstream')
  const afterReload = served
  t.ok(await eventually(() => served >= afterReload + 20, 5000), 'the load goes on after the reload')
  stop = true
  await load
  t.same(failures, [], 'no request failed and no session moved during the reloads')

  // A bad file is refused with its reason, and the running configuration stays.
  writeFileSync(file, twoPoolConfig([a, b, e], [c, d], prefix).replace('  - name: assets', '  - name: assets\n    matchh: {}'))
  const refused = await get(`${two.admin}reload`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'x-sticky-admin': '1' } })
  t.equal(refused.status, 422)
  t.match(refused.json().message, /gateway\.yaml: routes\[1\]\.matchh is not a known key/)
  writeFileSync(file, twoPoolConfig([a, b, e], [c, d], uniquePrefix()))
  const restart = await get(`${two.admin}reload`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'x-sticky-admin': '1' } })
  t.equal(restart.status, 422)
  t.match(restart.json().message, /prefix changed, which needs a restart/)
  hangUp(one)
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.equal((await get(`${one.url}/reports/daily`)).status, 200, 'after a refused SIGHUP reload the running routes still serve')
  t.match(one.process.output().out + one.process.output().err, /reload refused/, 'the refusal is logged')
})

t.test('SIGTERM under load: every in-flight request is answered, readiness drops, the process exits 0', async (t) => {
  const slow = http.createServer((req, res) => {
    setTimeout(() => res.end(JSON.stringify({ upstream: 'slow', url: req.url })), req.url === '/readyz' ? 0 : 400)
  })
  await new Promise<void>((resolve) => slow.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { slow.closeAllConnections(); slow.close() })
  const gateway = await startOnePoolGateway(t, 'slow', `[{ id: s, url: "http://127.0.0.1:${(slow.address() as AddressInfo).port}" }]`, {
    extra: 'shutdown: { grace: 5s, tunnelGrace: 1s }'
  })
  const inFlight = Array.from({ length: 20 }, async (_, i) => get(`${gateway.url}/work/${i}`))
  await new Promise((resolve) => setTimeout(resolve, 150))
  const started = Date.now()
  const exit = gateway.process.signal('SIGTERM')
  const answers = await Promise.all(inFlight)
  t.same(answers.map((r) => r.status), Array(20).fill(200), 'all 20 in-flight requests answered')
  t.equal(await exit, 0)
  t.ok(Date.now() - started < 5000, 'exits within the grace period')
})

t.test('a pool discovered by DNS (SRV on a local name server): upstreams come and go, clients keep theirs', async (t) => {
  const [a, b, c] = await startUpstreams(t, ['a', 'b', 'c'])
  const dns = await startDnsServer(t)
  const srv = (list: TestUpstream[]): DnsZoneEntry => ({ srv: list.map((u) => ({ priority: 0, weight: 1, port: u.port, target: 'node.shop.test' })), ttl: 1 })
  dns.zone.set('node.shop.test', { a: ['127.0.0.1'], ttl: 1 })
  dns.zone.set('_http._tcp.shop.test', srv([a, b]))
  const gateway = await startOnePoolGateway(t, 'shop', `{ dns: _http._tcp.shop.test, type: SRV, servers: ["127.0.0.1:${dns.port}"], refresh: { min: 100ms, max: 300ms } }`)
  const ready = await get(`${gateway.url}/readyz`)
  t.same(ready.json().pools, { shop: { upstreams: 2, up: 2 } }, 'ready with both discovered upstreams once it listens')
  const clients = await Promise.all(Array.from({ length: 10 }, async () => {
    const jar = new CookieJar()
    return { jar, upstream: (await get(`${gateway.url}/x`, { jar })).json().upstream as string }
  }))
  t.same([...new Set(clients.map((client) => client.upstream))].sort(), ['a', 'b'])
  t.notMatch(clients[0].jar.header() ?? '', /127\.0\.0\.1|%3A|:\d{4}/, 'the routing cookie names an opaque id, not the address')

  dns.zone.set('_http._tcp.shop.test', srv([a, b, c]))
  t.ok(await eventually(async () => (await get(`${gateway.url}/new`)).json().upstream === 'c', 5000), 'an added address takes new sessions')
  dns.zone.set('_http._tcp.shop.test', srv([a, c]))
  const upstreams = async (): Promise<Array<{ state: string }>> => (await get(`${gateway.admin}upstreams`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json() as Array<{ state: string }>
  t.ok(await eventually(async () => (await upstreams()).some((u) => u.state === 'draining'), 5000), 'a vanished address is drained')
  for (const client of clients) {
    t.equal((await get(`${gateway.url}/again`, { jar: client.jar })).json().upstream, client.upstream, 'bound clients keep their upstream, b included while it answers')
  }
})

t.test('SIGTERM with an open WebSocket tunnel: it gets shutdown.tunnelGrace, then is closed, and the process exits', async (t) => {
  const [ws] = await startWsUpstreams(t, ['w'])
  const gateway = await startOnePoolGateway(t, 'chat', `[{ id: w, url: "${ws.url}" }]`, { prefix: '/chat', extra: 'shutdown: { grace: 5s, tunnelGrace: 700ms }' })
  const socket = await openSocket(`${gateway.url.replace('http:', 'ws:')}/chat/room`)
  t.equal(socket.hello.upstream, 'w')
  const closed = once(socket.ws, 'close')
  const started = Date.now()
  const exit = gateway.process.signal('SIGTERM')
  await closed
  const openFor = Date.now() - started
  t.ok(openFor >= 500, `the tunnel stayed open through most of its grace (${openFor} ms)`)
  t.ok(openFor < 3000, `and was closed after it, well before shutdown.grace (${openFor} ms)`)
  t.equal(await exit, 0)
})
