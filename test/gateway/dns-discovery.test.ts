import dgram from 'node:dgram'
import { once } from 'node:events'
import { Resolver } from 'node:dns/promises'
import t from 'tap'
import type { Test } from 'tap'
import type { StickyPoolOptions } from '../../lib'
import type { CoreLogger } from '../../lib/core/logger'
import { canonicalAddress, DnsDiscovery, refreshDelayMs, REFRESH_JITTER, type DiscoveredAddress, type DnsDiscoveryOptions } from '../../lib/gateway/dns-discovery'
import { DISCOVERED_ID_RE, DiscoveredPool, discoveredUpstreamId } from '../../lib/gateway/discovered-pool'
import { kMembersAtRunTime } from '../../lib/options/pool'
import { startDnsServer, type TestDnsServer } from '../support/dns-server'
import { eventually } from '../support/eventually'
import { startGateway, type TestGateway } from '../support/gateway'
import { CookieJar, get } from '../support/http'
import { startRedis, uniquePrefix } from '../support/redis'
import { startUpstreams, type TestUpstream } from '../support/upstreams'

interface LogEntry { level: 'warn' | 'info' | 'debug', fields: unknown, message: string | undefined }

function captureLog (): CoreLogger & { entries: LogEntry[] } {
  const entries: LogEntry[] = []
  const at = (level: LogEntry['level']) => (fields: unknown, message?: string) => { entries.push({ level, fields, message }) }
  return { entries, warn: at('warn'), info: at('info'), debug: at('debug') }
}

// Short timeouts: a silent server must fail a lookup in a fraction of a second, not the system's 5 s × 4.
function resolverFor (dns: TestDnsServer): Resolver {
  const resolver = new Resolver({ timeout: 80, tries: 1 })
  resolver.setServers([dns.address])
  return resolver
}

function discovery (t: Test, dns: TestDnsServer, options: Partial<DnsDiscoveryOptions>, log = captureLog()) {
  const changes: Array<readonly DiscoveredAddress[]> = []
  const d = new DnsDiscovery({
    name: 'api.test',
    type: 'A',
    port: 8080,
    scheme: 'http',
    minRefreshMs: 40,
    maxRefreshMs: 40,
    resolver: resolverFor(dns),
    ...options
  }, (addresses) => { changes.push(addresses) }, log)
  t.teardown(() => d.stop())
  return { d, changes, log }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
const urls = (addresses: readonly DiscoveredAddress[]): string[] => addresses.map((a) => a.url)

t.test('refreshDelayMs clamps the TTL to [min, max] and jitters it by ±10 %', async (t) => {
  t.equal(refreshDelayMs(5_000, 1_000, 10_000, () => 0.5), 5_000, 'a TTL within bounds is used')
  t.equal(refreshDelayMs(0, 1_000, 10_000, () => 0.5), 1_000, 'a TTL below the minimum is raised')
  t.equal(refreshDelayMs(3_600_000, 1_000, 10_000, () => 0.5), 10_000, 'a TTL above the maximum is lowered')
  t.equal(refreshDelayMs(undefined, 1_000, 10_000, () => 0.5), 1_000, 'no TTL: the minimum')
  t.equal(refreshDelayMs(5_000, 1_000, 10_000, () => 0), 5_000 * (1 - REFRESH_JITTER))
  t.equal(refreshDelayMs(5_000, 1_000, 10_000, () => 0.999999), Math.round(5_000 * (1 + REFRESH_JITTER * 0.999998)))
  for (let i = 0; i < 200; i++) {
    const wait = refreshDelayMs(2_000, 1_000, 10_000)
    if (wait < 1_800 || wait > 2_200) t.fail(`jitter out of ±10 %: ${wait}`)
  }
})

t.test('canonicalAddress gives one spelling per address', async (t) => {
  t.equal(canonicalAddress('::0:1'), '::1')
  t.equal(canonicalAddress('[2001:DB8:0:0::1]'), '2001:db8::1')
  t.equal(canonicalAddress('10.0.0.1'), '10.0.0.1')
  t.equal(canonicalAddress('FE80::1%eth0'), 'fe80::1%eth0', 'a zone id no URL can hold is kept as written')
})

t.test('the test DNS server answers what real resolvers ask, and refuses what it must', async (t) => {
  const dns = await startDnsServer(t, { 'Api.Test.': { a: ['127.0.0.1'], aaaa: ['::ffff:1.2.3.4'], ttl: 7 } })
  const resolver = resolverFor(dns)
  t.same(await resolver.resolve4('API.test', { ttl: true }), [{ address: '127.0.0.1', ttl: 7 }], 'names are case-insensitive')
  t.same(await resolver.resolve6('api.test', { ttl: true }), [{ address: '::ffff:1.2.3.4', ttl: 7 }])
  await t.rejects(resolver.resolve4('nope.test'), { code: 'ENOTFOUND' }, 'NXDOMAIN for an unknown name')
  await t.rejects(resolver.resolveSrv('api.test'), { code: 'ENODATA' }, 'NODATA for a known name without such records')
  dns.mode = 'servfail'
  await t.rejects(resolver.resolve4('api.test'), { code: 'ESERVFAIL' })
  dns.mode = 'silent'
  await t.rejects(resolver.resolve4('api.test'), { code: 'ETIMEOUT' })
  dns.mode = 'answer'

  // Raw datagrams: a question count other than one is a format error; a pointer loop is not followed.
  const socket = dgram.createSocket('udp4')
  t.teardown(() => socket.close())
  const ask = async (message: Buffer): Promise<Buffer | undefined> => {
    socket.send(message, dns.port, '127.0.0.1')
    const timer = sleep(200).then(() => undefined)
    const reply = once(socket, 'message').then(([data]) => data as Buffer)
    return Promise.race([reply, timer])
  }
  const header = (qdcount: number): Buffer => Buffer.from([0x12, 0x34, 0x01, 0x00, 0, qdcount, 0, 0, 0, 0, 0, 0])
  const formerr = await ask(header(0))
  t.equal(formerr !== undefined && formerr.readUInt16BE(2) & 0xf, 1, 'FORMERR without a question')
  const loop = Buffer.concat([header(1), Buffer.from([0xc0, 12, 0, 1, 0, 1])])
  const refused = await ask(loop)
  t.equal(refused !== undefined && refused.readUInt16BE(2) & 0xf, 1, 'FORMERR for a name that points at itself')
  t.equal(await ask(Buffer.from([1, 2, 3])), undefined, 'a datagram shorter than a header gets nothing')
})

t.test('A and AAAA records: one address set, canonical, deduplicated, sorted; delivered only when it changes', async (t) => {
  const dns = await startDnsServer(t, { 'api.test': { a: ['127.0.0.2', '127.0.0.1', '127.0.0.1'], aaaa: ['2001:DB8:0::1'], ttl: 0 } })
  const { d, changes } = discovery(t, dns, { maxRefreshMs: 60_000, minRefreshMs: 60_000 })
  t.equal(await d.start(), true)
  t.same(urls(d.addresses), ['http://127.0.0.1:8080', 'http://127.0.0.2:8080', 'http://[2001:db8::1]:8080'])
  t.same(d.addresses.map((a) => [a.address, a.port]), [['127.0.0.1', 8080], ['127.0.0.2', 8080], ['2001:db8::1', 8080]])
  t.equal(changes.length, 1, 'the first good lookup is delivered')
  t.equal(d.lastError, undefined)
  t.ok(d.lastSuccessAt !== undefined && Date.now() - d.lastSuccessAt < 1_000)

  // Same set in another order and spelling: nothing to deliver.
  dns.zone.set('api.test', { a: ['127.0.0.1', '127.0.0.2'], aaaa: ['2001:db8::0:1'], ttl: 0 })
  t.equal(await d.refreshNow(), true)
  t.equal(changes.length, 1, 'an unchanged set is not delivered again')

  dns.zone.set('api.test', { a: ['127.0.0.3'], ttl: 0 })
  t.equal(await d.refreshNow(), true, 'no AAAA records (NODATA) with good A records is a success')
  t.same(changes.map(urls), [urls(changes[0]), ['http://127.0.0.3:8080']])

  dns.zone.set('api.test', { aaaa: ['::1'], ttl: 0 })
  t.equal(await d.refreshNow(), true, 'and the other way round')
  t.same(urls(d.addresses), ['http://[::1]:8080'])
})

t.test('https scheme and a port from the options make the URLs', async (t) => {
  const dns = await startDnsServer(t, { 'api.test': { a: ['10.1.2.3'], ttl: 0 } })
  const { d } = discovery(t, dns, { scheme: 'https', port: 443 })
  await d.start()
  t.same(d.addresses, [{ address: '10.1.2.3', port: 443, url: 'https://10.1.2.3:443' }])
})

t.test('SRV records: each target resolved, the port from the record, the set deduplicated', async (t) => {
  const dns = await startDnsServer(t, {
    '_http._tcp.svc.test': {
      srv: [
        { priority: 0, weight: 10, port: 1001, target: 'p1.svc.test' },
        { priority: 0, weight: 10, port: 1002, target: 'p2.svc.test.' },
        { priority: 5, weight: 1, port: 1002, target: 'P2.svc.test' }, // the same target twice: one upstream
        { priority: 0, weight: 1, port: 1003, target: 'gone.svc.test' } // NXDOMAIN: contributes nothing
      ],
      ttl: 3600
    },
    'p1.svc.test': { a: ['127.0.0.1'], ttl: 0 },
    'p2.svc.test': { a: ['127.0.0.1'], aaaa: ['::1'], ttl: 0 }
  })
  const { d, changes } = discovery(t, dns, { name: '_http._tcp.svc.test', type: 'SRV', port: undefined, minRefreshMs: 60_000, maxRefreshMs: 60_000 })
  t.equal(await d.start(), true)
  t.same(urls(d.addresses), ['http://127.0.0.1:1001', 'http://127.0.0.1:1002', 'http://[::1]:1002'])
  t.equal(d.lastError, undefined, 'a target without records is not an error')

  // One target times out: the SRV records answered, so a success, and that target keeps its last good addresses.
  dns.zone.get('p2.svc.test')!.mode = 'silent'
  dns.zone.get('p1.svc.test')!.a = ['127.0.0.5']
  t.equal(await d.refreshNow(), true)
  t.same(urls(d.addresses), ['http://127.0.0.5:1001', 'http://127.0.0.1:1002', 'http://[::1]:1002'].sort())
  t.match(d.lastError, /p2\.svc\.test: ETIMEOUT/)
  delete dns.zone.get('p2.svc.test')!.mode

  dns.zone.get('_http._tcp.svc.test')!.srv = [
    { priority: 0, weight: 1, port: 1002, target: 'p2.svc.test' },
    { priority: 0, weight: 1, port: 1004, target: '127.0.0.9' }, // an address as target: taken as it is
    { priority: 0, weight: 1, port: 1005, target: '.' } // RFC 2782: "no service here"
  ]
  await d.refreshNow()
  t.same(changes.map(urls).at(-1), ['http://127.0.0.1:1002', 'http://127.0.0.9:1004', 'http://[::1]:1002'], 'a target that left the SRV answer leaves the set')
  t.equal(d.lastError, undefined)
})

t.test('the next lookup waits for the TTL, clamped to [min, max]', async (t) => {
  // One second of TTL (DNS counts whole seconds): SRV by its target's TTL (SRV answers carry none in node), A by its own.
  const dns = await startDnsServer(t, {
    'slow.test': { a: ['127.0.0.1'], ttl: 1 },
    '_x._tcp.slow.test': { srv: [{ priority: 0, weight: 0, port: 1, target: 'target.test' }], ttl: 0 },
    'target.test': { a: ['127.0.0.1'], ttl: 1 },
    'zero.test': { a: ['127.0.0.1'], ttl: 0 },
    'long.test': { a: ['127.0.0.1'], ttl: 3600 }
  })
  const within = discovery(t, dns, { name: 'slow.test', minRefreshMs: 50, maxRefreshMs: 5_000 })
  const srv = discovery(t, dns, { name: '_x._tcp.slow.test', type: 'SRV', port: undefined, minRefreshMs: 50, maxRefreshMs: 5_000 })
  const raised = discovery(t, dns, { name: 'zero.test', minRefreshMs: 150, maxRefreshMs: 5_000 })
  const lowered = discovery(t, dns, { name: 'long.test', minRefreshMs: 20, maxRefreshMs: 100 })
  await Promise.all([within.d.start(), srv.d.start(), raised.d.start(), lowered.d.start()])
  const asked = (name: string, type: string): number => dns.queries.filter((q) => q.name === name && q.type === type).length
  await eventually(() => asked('_x._tcp.slow.test', 'SRV') >= 2 && asked('slow.test', 'A') >= 2, 3_000)
  await sleep(100)
  for (const d of [within, srv, raised, lowered]) d.d.stop()
  const gaps = (name: string, type = 'A'): number[] => {
    const times = dns.queries.filter((q) => q.name === name && q.type === type).map((q) => q.at)
    return times.slice(1).map((at, i) => at - times[i])
  }
  const slow = gaps('slow.test')
  t.ok(slow.length >= 1 && slow.every((gap) => gap >= 900 && gap <= 1_500), `a TTL within bounds is the wait: ${slow.join(', ')}`)
  t.ok(gaps('_x._tcp.slow.test', 'SRV').every((gap) => gap >= 900 && gap <= 1_500), `SRV waits by its targets' TTL: ${gaps('_x._tcp.slow.test', 'SRV').join(', ')}`)
  const zero = gaps('zero.test')
  t.ok(zero.length >= 3 && zero.every((gap) => gap >= 150 * 0.9 - 5), `a 0 s TTL waits the minimum: ${zero.join(', ')}`)
  const long = gaps('long.test')
  t.ok(long.length >= 5 && long.every((gap) => gap <= 400), `a 1 h TTL waits the maximum: ${long.join(', ')}`)
  t.ok(long.every((gap) => gap >= 100 * 0.9 - 5), `and no less: ${long.join(', ')}`)
})

t.test('a failing DNS keeps the last good set, warns once per failure streak and retries at the minimum', async (t) => {
  const dns = await startDnsServer(t, { 'api.test': { a: ['127.0.0.1'], aaaa: ['::1'], ttl: 3600 } })
  const log = captureLog()
  const { d, changes } = discovery(t, dns, { minRefreshMs: 30, maxRefreshMs: 60_000 }, log)
  t.equal(await d.start(), true)
  const good = urls(d.addresses)
  const warnings = (): number => log.entries.filter((e) => e.level === 'warn').length

  for (const [what, breakIt] of [
    ['timeouts', () => { dns.mode = 'silent' }],
    ['SERVFAIL', () => { dns.mode = 'servfail' }],
    ['NXDOMAIN', () => { dns.zone.delete('api.test') }],
    ['NODATA', () => { dns.zone.set('api.test', { ttl: 0 }) }]
  ] as const) {
    const before = dns.queries.length
    breakIt()
    t.equal(await d.refreshNow(), false, `${what}: the lookup fails`)
    t.ok(d.lastError !== undefined, `${what}: lastError says why (${d.lastError})`)
    const failedAt = Date.now()
    // Retried at the minimum (30 ms), not the last TTL (1 h): several more questions within a few hundred ms.
    t.ok(await eventually(() => dns.queries.length >= before + 8, 2_000), `${what}: retried at the minimum`)
    t.same(urls(d.addresses), good, `${what}: the last good set is kept`)
    t.equal(changes.length, 1, `${what}: nothing delivered`)
    t.equal(warnings(), 1, `${what}: one warning for the whole streak`)
    t.ok(d.lastSuccessAt !== undefined && d.lastSuccessAt <= failedAt, `${what}: the last success came before the failure (same millisecond counts: the clock has no finer grain)`)
    dns.mode = 'answer'
    dns.zone.set('api.test', { a: ['127.0.0.1'], aaaa: ['::1'], ttl: 3600 })
    // A retry under way may still be failing: the first lookup that starts after the fix succeeds.
    t.ok(await eventually(async () => d.refreshNow(), 2_000), `${what}: recovers`)
    t.equal(d.lastError, undefined)
    t.ok(log.entries.at(-1)?.level === 'info' && /works again/.test(log.entries.at(-1)?.message ?? ''), 'recovery is logged')
    log.entries.length = 0
  }
})

t.test('a part that fails keeps its last good addresses while the rest is refreshed', async (t) => {
  const dns = await startDnsServer(t, { 'api.test': { a: ['127.0.0.1'], aaaa: ['::1'], ttl: 0 } })
  const { d, changes } = discovery(t, dns, { minRefreshMs: 60_000, maxRefreshMs: 60_000 })
  await d.start()
  dns.typeModes.AAAA = 'silent'
  dns.zone.set('api.test', { a: ['127.0.0.2'], aaaa: ['::2'], ttl: 0 })
  t.equal(await d.refreshNow(), true, 'A answered: a success')
  t.same(urls(d.addresses), ['http://127.0.0.2:8080', 'http://[::1]:8080'], 'the new A records, the last good AAAA ones')
  t.match(d.lastError, /AAAA api\.test: ETIMEOUT/, 'the failed part is reported')
  t.equal(changes.length, 2)
  delete dns.typeModes.AAAA
  await d.refreshNow()
  t.same(urls(d.addresses), ['http://127.0.0.2:8080', 'http://[::2]:8080'])
  t.equal(d.lastError, undefined)
})

t.test('a first lookup that fails resolves false and delivers once DNS answers', async (t) => {
  const dns = await startDnsServer(t)
  const { d, changes } = discovery(t, dns, { minRefreshMs: 30, maxRefreshMs: 30 })
  t.equal(await d.start(), false, 'NXDOMAIN at start: false, no throw')
  t.same(d.addresses, [])
  t.equal(d.lastSuccessAt, undefined)
  t.equal(changes.length, 0, 'nothing delivered, not even an empty set')
  dns.zone.set('api.test', { a: ['127.0.0.1'], ttl: 0 })
  t.ok(await eventually(() => changes.length === 1, 2_000), 'the retry timer delivers it')
  t.same(urls(changes[0]), ['http://127.0.0.1:8080'])
})

t.test('stop() ends the lookups; a listener that throws is offered the set again', async (t) => {
  const dns = await startDnsServer(t, { 'api.test': { a: ['127.0.0.1'], ttl: 0 } })
  const log = captureLog()
  let calls = 0
  const d = new DnsDiscovery({ name: 'api.test', type: 'A', port: 80, scheme: 'http', minRefreshMs: 20, maxRefreshMs: 20, resolver: resolverFor(dns) },
    () => { calls++; if (calls === 1) throw new Error('listener broke') }, log)
  t.teardown(() => d.stop())
  t.equal(await d.start(), true, "a listener's throw is not a DNS failure")
  t.ok(log.entries.some((e) => e.level === 'warn' && /listener failed/.test(e.message ?? '')))
  t.ok(await eventually(() => calls === 2, 2_000), 'the same set is delivered again after the next lookup')
  await sleep(100)
  t.equal(calls, 2, 'and then not again')
  d.stop()
  const asked = dns.queries.length
  await sleep(150)
  t.equal(dns.queries.length, asked, 'no lookup after stop()')
})

t.test('options are checked', async (t) => {
  const log = captureLog()
  const base: DnsDiscoveryOptions = { name: 'a.test', type: 'A', port: 80, scheme: 'http', minRefreshMs: 10, maxRefreshMs: 20 }
  t.throws(() => new DnsDiscovery({ ...base, port: undefined }, () => {}, log), { code: 'FST_STICKY_INVALID_OPTION', message: /dns\.port/ })
  t.throws(() => new DnsDiscovery({ ...base, minRefreshMs: 30 }, () => {}, log), { code: 'FST_STICKY_INVALID_OPTION', message: /dns\.maxRefresh/ })
  t.throws(() => new DnsDiscovery({ ...base, name: '' }, () => {}, log), { code: 'FST_STICKY_INVALID_OPTION', message: /dns\.name/ })
  t.doesNotThrow(() => new DnsDiscovery({ ...base, type: 'SRV', port: undefined }, () => {}, log), 'SRV needs no port')
})

// ---- end to end: two gateways on one Redis, each with its own discovery, 50 clients ----------------------------

interface Gateway extends TestGateway {
  readonly discovery: DnsDiscovery
  readonly discovered: DiscoveredPool
  members (): string[]
}

t.test('two gateways follow SRV records: upstreams come and go while 50 clients keep theirs', async (t) => {
  const redis = await startRedis(t)
  const servers = await startUpstreams(t, ['s1', 's2', 's3'])
  const prefix = uniquePrefix()
  const srvName = '_http._tcp.shop.test'
  const srvOf = (list: TestUpstream[]) => list.map((u) => ({ priority: 0, weight: 1, port: u.port, target: 'node.shop.test' }))
  const dns = await startDnsServer(t, { [srvName]: { srv: srvOf(servers.slice(0, 2)), ttl: 0 }, 'node.shop.test': { a: ['127.0.0.1'], ttl: 0 } })

  const log = captureLog()
  const startOne = async (): Promise<Gateway> => {
    const gateway = await startGateway(t, {
      redis: redis.url,
      prefix,
      // Fifty clients from one address: past the default per-client budget of new bindings.
      newBindings: false,
      // The marker is not part of the public options type: members come at run time, from discovery.
      pools: { shop: { upstreams: [], [kMembersAtRunTime]: true } as StickyPoolOptions }
    })
    const salt = await gateway.app.sticky.store.sharedSalt()
    const pool = gateway.app.sticky.pool('shop')
    const discovered = new DiscoveredPool(pool, (a) => discoveredUpstreamId(salt, 'shop', a.address, a.port), log)
    const discovery = new DnsDiscovery({ name: srvName, type: 'SRV', port: undefined, scheme: 'http', minRefreshMs: 50, maxRefreshMs: 100, resolver: resolverFor(dns) },
      (addresses) => discovered.apply(addresses), log)
    const sweep = setInterval(() => { void discovered.sweep() }, 100)
    sweep.unref()
    t.teardown(() => { clearInterval(sweep); discovery.stop() })
    t.equal(await discovery.start(), true)
    return { ...gateway, discovery, discovered, members: () => pool.upstreams.map((u) => u.id).sort() }
  }
  const g1 = await startOne()
  const g2 = await startOne()
  const gateways = [g1, g2]
  const salt = await g1.app.sticky.store.sharedSalt()
  const idOf = (server: TestUpstream): string => discoveredUpstreamId(salt, 'shop', '127.0.0.1', server.port)
  const [s1, s2, s3] = servers
  const agree = (ids: string[]): Promise<boolean> => eventually(() => gateways.every((g) => JSON.stringify(g.members()) === JSON.stringify([...ids].sort())), 5_000)

  t.ok(await agree([idOf(s1), idOf(s2)]), 'both gateways have the two discovered upstreams')
  for (const server of servers) {
    const id = idOf(server)
    t.match(id, DISCOVERED_ID_RE)
    t.notOk(id.includes('127') || id.includes(String(server.port)) || /\d+\.\d+/.test(id), `${id} carries neither the address nor the port`)
  }
  t.equal(g1.app.sticky.pool('shop').upstreams.find((u) => u.id === idOf(s1))?.url, s1.url)

  // Each client: a jar and the upstream server it is on; the second request goes through the other gateway.
  interface Client { jar: CookieJar, server: string }
  const clients: Client[] = []
  const visit = async (client: Client, gateway: Gateway) => {
    const response = await get(`${gateway.url}/page`, { jar: client.jar })
    if (response.status !== 200) t.fail(`${gateway.url} answered ${response.status}: ${response.body}`)
    return { server: response.json().upstream as string, newCookie: response.setCookies.length > 0 }
  }
  const bind = async (count: number): Promise<Client[]> => {
    const made: Client[] = []
    for (let i = 0; i < count; i++) {
      const client: Client = { jar: new CookieJar(), server: '' }
      client.server = (await visit(client, gateways[i % 2])).server
      const again = await visit(client, gateways[(i + 1) % 2])
      if (again.server !== client.server) t.fail(`client moved between gateways: ${client.server} → ${again.server}`)
      made.push(client)
    }
    clients.push(...made)
    return made
  }
  // Every client through both gateways: who keeps its server, who moved (and agrees on where through both).
  const census = async (): Promise<{ kept: number, moved: Client[] }> => {
    const moved: Client[] = []
    let kept = 0
    await Promise.all(clients.map(async (client) => {
      const first = await visit(client, g1)
      const second = await visit(client, g2)
      if (second.server !== first.server || second.newCookie) t.fail(`gateways disagree on a client: ${first.server} / ${second.server}`)
      if (first.server === client.server && !first.newCookie) kept++
      else {
        moved.push({ ...client, server: first.server })
        client.server = first.server
      }
    }))
    return { kept, moved }
  }
  const countOn = (list: Client[], server: string): number => list.filter((c) => c.server === server).length

  const first = await bind(50)
  t.ok(countOn(first, 's1') >= 20 && countOn(first, 's2') >= 20, `least-sessions spreads 50 clients: s1 ${countOn(first, 's1')}, s2 ${countOn(first, 's2')}`)
  t.notOk(clients.some((c) => /127\.0\.0\.1|:\d{4,5}/.test(decodeURIComponent(c.jar.header()))), 'no cookie carries an address or a port')

  t.test('a third upstream in DNS is added on both gateways and takes the new clients', async (t) => {
    dns.zone.get(srvName)!.srv = srvOf([s1, s2, s3])
    t.ok(await agree([idOf(s1), idOf(s2), idOf(s3)]), 'both gateways added it')
    const added = await bind(20)
    t.ok(countOn(added, 's3') >= 15, `new clients fill it first: ${countOn(added, 's3')} of 20 on s3`)
    const { kept, moved } = await census()
    t.equal(kept, 70, 'every client kept its upstream')
    t.same(moved, [])
  })

  t.test('an upstream that leaves DNS and comes back is undrained under the same id; nobody moves', async (t) => {
    dns.zone.get(srvName)!.srv = srvOf([s1, s3])
    t.ok(await eventually(() => gateways.every((g) => g.app.sticky.pool('shop').state(idOf(s2)) === 'draining'), 5_000), 'drained on both gateways')
    t.same(g1.members(), [idOf(s1), idOf(s2), idOf(s3)].sort(), 'still a member: it has sessions')
    // Twelve: enough that least-sessions would give s2 (24 sessions against s3's 20) some of them, were it not draining.
    const during = await bind(12)
    t.equal(countOn(during, 's2'), 0, 'a draining upstream gets no new client')
    dns.zone.get(srvName)!.srv = srvOf([s1, s2, s3])
    t.ok(await eventually(() => gateways.every((g) => g.app.sticky.pool('shop').state(idOf(s2)) === 'active'), 5_000), 'active again on both')
    t.same(g2.members(), [idOf(s1), idOf(s2), idOf(s3)].sort(), 'the same id: the address is the same upstream')
    const { kept } = await census()
    t.equal(kept, clients.length, 'every client kept its upstream')
  })

  t.test('a DNS failure keeps the membership', async (t) => {
    dns.mode = 'silent'
    t.ok(await eventually(() => gateways.every((g) => g.discovery.lastError !== undefined), 3_000), 'both gateways see the failure')
    await sleep(300)
    dns.mode = 'servfail'
    await sleep(200)
    for (const g of gateways) t.same(g.members(), [idOf(s1), idOf(s2), idOf(s3)].sort())
    t.ok(gateways.every((g) => g.app.sticky.pool('shop').upstreams.every((u) => g.app.sticky.pool('shop').state(u.id) === 'active')), 'nothing drained')
    dns.mode = 'answer'
    t.ok(await eventually(() => gateways.every((g) => g.discovery.lastError === undefined), 3_000))
    const { kept } = await census()
    t.equal(kept, clients.length)
  })

  t.test('an upstream that leaves DNS keeps its clients while it answers; once it stops they move and it is removed', async (t) => {
    dns.zone.get(srvName)!.srv = srvOf([s2, s3])
    t.ok(await eventually(() => gateways.every((g) => g.app.sticky.pool('shop').state(idOf(s1)) === 'draining'), 5_000), 'drained on both gateways')
    const onS1 = clients.filter((c) => c.server === 's1').length
    t.ok(onS1 > 0)
    let { kept, moved } = await census()
    t.equal(kept, clients.length, `its ${onS1} clients stay while it answers`)
    t.same(g1.members(), [idOf(s1), idOf(s2), idOf(s3)].sort())

    await s1.close()
    ;({ kept, moved } = await census())
    t.equal(moved.length, onS1, 'exactly the clients of the vanished upstream moved')
    t.equal(kept, clients.length - onS1, 'everyone else kept theirs')
    t.notOk(moved.some((c) => c.server === 's1'))
    t.ok(await agree([idOf(s2), idOf(s3)]), 'with no session left it is removed on both gateways')
    t.same(await g1.app.sticky.sessionCounts('shop'), await g2.app.sticky.sessionCounts('shop'), 'and both count the same')
    ;({ kept, moved } = await census())
    t.equal(kept, clients.length, 'the moved clients stay where they went')
  })

  t.test('the log names what discovery did', async (t) => {
    const said = log.entries.filter((e) => e.level === 'info').map((e) => e.message ?? '')
    for (const what of ['added', 'draining', 'undrained', 'removed']) t.ok(said.some((m) => m.includes(`upstream ${what}`)), what)
  })
})
