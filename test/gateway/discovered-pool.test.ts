import t from 'tap'
import type { CoreLogger } from '../../lib/core/logger'
import type { StickyPool } from '../../lib/core/sticky-api'
import type { DiscoveredAddress } from '../../lib/gateway/dns-discovery'
import { DISCOVERED_ID_RE, DiscoveredPool, discoveredUpstreamId } from '../../lib/gateway/discovered-pool'
import { ID_RE } from '../../lib/options/pool'
import { eventually } from '../support/eventually'
import { startGateway } from '../support/gateway'
import { startRedis, uniquePrefix } from '../support/redis'

interface LogEntry { level: 'warn' | 'info' | 'debug', fields: unknown, message: string | undefined }

function captureLog (): CoreLogger & { entries: LogEntry[] } {
  const entries: LogEntry[] = []
  const at = (level: LogEntry['level']) => (fields: unknown, message?: string) => { entries.push({ level, fields, message }) }
  return { entries, warn: at('warn'), info: at('info'), debug: at('debug') }
}

const SALT = 'a-salt-shared-by-every-gateway-0123456789'
const address = (ip: string, port = 8080): DiscoveredAddress => ({ address: ip, port, url: `http://${ip}:${port}` })
const A = address('10.0.0.1')
const B = address('10.0.0.2')
const C = address('10.0.0.3')
const idOf = (a: DiscoveredAddress): string => discoveredUpstreamId(SALT, 'shop', a.address, a.port)

t.test('discoveredUpstreamId: stable, keyed, opaque', async (t) => {
  const id = discoveredUpstreamId(SALT, 'shop', '10.0.0.1', 8080)
  t.equal(id.length, 13)
  t.match(id, DISCOVERED_ID_RE)
  t.match(id, ID_RE, 'a valid upstream id (it goes into routing cookies and Redis keys)')
  t.equal(discoveredUpstreamId(SALT, 'shop', '10.0.0.1', 8080), id, 'the same address is the same upstream')
  t.notOk(id.includes('10.0') || id.includes('8080') || /\d+\.\d+/.test(id), 'neither the address nor the port in clear')
  const others = [
    discoveredUpstreamId(SALT, 'shop', '10.0.0.1', 8081),
    discoveredUpstreamId(SALT, 'shop', '10.0.0.2', 8080),
    discoveredUpstreamId(SALT, 'cart', '10.0.0.1', 8080),
    discoveredUpstreamId(SALT + 'x', 'shop', '10.0.0.1', 8080)
  ]
  t.equal(new Set([id, ...others]).size, 5, 'port, address, pool and salt each change it')
  t.equal(discoveredUpstreamId(SALT, 'shop', '[2001:DB8:0::1]', 443), discoveredUpstreamId(SALT, 'shop', '2001:db8::1', 443),
    'one IPv6 address, one id, however it is written')
  t.throws(() => discoveredUpstreamId('', 'shop', '10.0.0.1', 80), TypeError)
  t.throws(() => discoveredUpstreamId(SALT, 'shop', '10.0.0.1', 0), TypeError)
})

t.test('DiscoveredPool applies discovered sets to a pool and never touches static upstreams', async (t) => {
  // Static members: one named like a discovered id (13 characters starting with "d"): the id shape alone proves nothing.
  const gateway = await startGateway(t, {
    pools: { shop: { upstreams: [{ id: 'static', url: 'http://127.0.0.1:9' }, { id: 'dashboard-api', url: 'http://127.0.0.1:10' }] } }
  })
  const pool = gateway.app.sticky.pool('shop')
  const store = gateway.app.sticky.store
  const log = captureLog()
  const discovered = new DiscoveredPool(pool, idOf, log, { weight: 3 })
  const members = (): string[] => pool.upstreams.map((u) => u.id).sort()
  const statics = ['dashboard-api', 'static']
  const staticsUntouched = (): boolean => statics.every((id) => pool.state(id) === 'active') && statics.every((id) => members().includes(id))
  const bind = async (key: string, upstreamId: string): Promise<void> => { await store.bindIfAbsent('shop', key, upstreamId, 60_000) }

  await discovered.apply([A, B])
  t.same(members(), [...statics, idOf(A), idOf(B)].sort(), 'new addresses are added')
  t.same(pool.upstreams.find((u) => u.id === idOf(A)), { id: idOf(A), url: 'http://10.0.0.1:8080', weight: 3, maxSessions: Infinity }, 'with the URL and weight')

  await discovered.apply([B])
  t.same(members(), [...statics, idOf(B)].sort(), 'a vanished upstream with no session is drained and removed at once')
  t.ok(staticsUntouched(), 'static upstreams stay, active')

  await bind('k1', idOf(B))
  await discovered.apply([C])
  t.equal(pool.state(idOf(B)), 'draining', 'a vanished upstream with a session is drained')
  t.ok(members().includes(idOf(B)), 'and stays a member while it has sessions')
  t.same([...discovered.drainedByDiscovery], [idOf(B)])
  await discovered.sweep()
  t.ok(members().includes(idOf(B)), 'a sweep keeps it while the session lives')
  await store.delete('shop', 'k1')
  await discovered.sweep()
  t.notOk(members().includes(idOf(B)), 'a sweep removes it once its sessions are gone')
  t.same([...discovered.drainedByDiscovery], [])
  t.ok(staticsUntouched())

  await discovered.apply([B, C])
  t.ok(members().includes(idOf(B)), 'an address removed earlier comes back as the same upstream')
  t.equal(pool.state(idOf(B)), 'active')

  await bind('k2', idOf(C))
  await discovered.apply([B])
  t.equal(pool.state(idOf(C)), 'draining')
  await discovered.apply([B, C])
  t.equal(pool.state(idOf(C)), 'active', 'one drained by discovery is undrained when it comes back')

  await pool.drain(idOf(C)) // an operator's drain
  await discovered.apply([B])
  t.equal(pool.state(idOf(C)), 'draining')
  t.same([...discovered.drainedByDiscovery], [], 'not drained by discovery: not remembered as such')
  await discovered.apply([B, C])
  t.equal(pool.state(idOf(C)), 'draining', "an operator's drain is never undrained by discovery")
  t.ok(staticsUntouched(), 'static upstreams are still untouched')

  const said = log.entries.map((e) => `${e.level} ${e.message ?? ''}`)
  t.notOk(said.some((m) => m.startsWith('warn')), `no warning: ${said.filter((m) => m.startsWith('warn')).join('; ')}`)
  t.ok(said.some((m) => m.includes('upstream removed')))
})

t.test('a member this gateway never saw in DNS is drained only after its grace; one it saw, at once', async (t) => {
  const gateway = await startGateway(t, { pools: { shop: { upstreams: [{ id: 'static', url: 'http://127.0.0.1:9' }] } } })
  const pool = gateway.app.sticky.pool('shop')
  const log = captureLog()
  // Two gateways' discoveries on one pool: the first has found B, the second's DNS has not caught up yet.
  const ahead = new DiscoveredPool(pool, idOf, log, { unseenGraceMs: 300 })
  const behind = new DiscoveredPool(pool, idOf, log, { unseenGraceMs: 300 })
  const startedAt = Date.now()
  await ahead.apply([A, B])
  await behind.apply([A])
  await behind.sweep()
  t.equal(pool.state(idOf(B)), 'active', 'not drained by a gateway that has not seen it yet')
  t.ok(await eventually(async () => {
    await behind.sweep()
    return !pool.upstreams.some((u) => u.id === idOf(B))
  }, 2_000), 'drained and removed once absent for the grace')
  t.ok(Date.now() - startedAt >= 300, 'not before')
  await behind.apply([B])
  await behind.apply([C])
  t.notOk(pool.upstreams.some((u) => u.id === idOf(B)), 'an address this gateway saw leave is drained (and, without sessions, removed) at once')
  t.notOk(pool.upstreams.some((u) => u.id === idOf(A)), 'so is one it saw before')
  t.ok(pool.upstreams.some((u) => u.id === idOf(C)))
})

t.test('applies run one at a time, and the latest set wins', async (t) => {
  const redis = await startRedis(t)
  const gateway = await startGateway(t, { redis: redis.url, prefix: uniquePrefix(), pools: { shop: { upstreams: [{ id: 'static', url: 'http://127.0.0.1:9' }] } } })
  const real = gateway.app.sticky.pool('shop')
  // The real pool view, with every call counted while it runs: two at once would be a broken queue.
  let running = 0
  let most = 0
  const counted = <A extends unknown[], R>(fn: (...args: A) => Promise<R>) => async (...args: A): Promise<R> => {
    running++
    most = Math.max(most, running)
    try { return await fn(...args) } finally { running-- }
  }
  const pool: StickyPool = {
    name: real.name,
    get upstreams () { return real.upstreams },
    state: (id) => real.state(id),
    sessionCounts: counted(() => real.sessionCounts()),
    drain: counted((id: string) => real.drain(id)),
    undrain: counted((id: string) => real.undrain(id)),
    add: counted((u: Parameters<StickyPool['add']>[0]) => real.add(u)),
    remove: counted((id: string) => real.remove(id))
  }
  const log = captureLog()
  const discovered = new DiscoveredPool(pool, idOf, log)
  const first = discovered.apply([A])
  await new Promise((resolve) => setImmediate(resolve)) // the first apply is under way
  const second = discovered.apply([A, B])
  const third = discovered.apply([C])
  await Promise.all([first, second, third])
  t.equal(most, 1, 'never two pool changes at once')
  t.same(real.upstreams.map((u) => u.id).sort(), ['static', idOf(C)].sort(), 'the latest set is the one applied')
  t.notOk(log.entries.some((e) => (e.fields as { upstream?: string }).upstream === idOf(B)), 'a set replaced while waiting is never applied')
  const sweeps = await Promise.all([discovered.sweep(), discovered.sweep(), discovered.apply([C])])
  t.same(sweeps, [undefined, undefined, undefined])
  t.equal(most, 1)
})

t.test('a store error is logged, never thrown; a sweep finishes the apply once the store is back', async (t) => {
  const redis = await startRedis(t)
  const gateway = await startGateway(t, { redis: redis.url, prefix: uniquePrefix(), pools: { shop: { upstreams: [{ id: 'static', url: 'http://127.0.0.1:9' }] } } })
  const pool = gateway.app.sticky.pool('shop')
  const log = captureLog()
  const discovered = new DiscoveredPool(pool, idOf, log)
  await discovered.apply([A])

  await redis.stop()
  await discovered.apply([A, B])
  t.ok(log.entries.some((e) => e.level === 'warn' && /not added/.test(e.message ?? '')), 'the failed add is logged as a warning')
  await discovered.sweep()
  t.pass('neither apply nor sweep threw')

  await redis.restart()
  const inStore = async (): Promise<string[]> => Object.entries(await gateway.app.sticky.store.upstreamStates('shop'))
    .filter(([, status]) => status.admin === 'active').map(([id]) => id)
  // The restarted Redis is empty: the next sweeps put back what DNS says.
  t.ok(await eventually(async () => {
    await discovered.sweep()
    const ids = await inStore().catch((): string[] => [])
    return ids.includes(idOf(A)) && ids.includes(idOf(B))
  }, 8_000), 'both discovered upstreams are in the store again')
})
