import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import path from 'node:path'
import t, { type Test } from 'tap'
import Redis from 'ioredis'
import { request } from 'undici'
import { startRedis, uniquePrefix } from '../support/redis'
import { startUpstreams } from '../support/upstreams'
import { eventually } from '../support/eventually'

const SECRET = 'agreement-secret-0123456789-abcdefghijkl'
const GATEWAYS = 3
const KEYS = 50
const PER_KEY = 10
const PROBES = 10

// Run with tsx's loader in this very process (not the tsx CLI, which would put a process in between): killing the
// PID we started then stops the gateway itself.
async function startGatewayProcess (t: Test, env: Record<string, string>): Promise<string> {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', path.join(__dirname, 'fixtures', 'near-cache-gateway.ts')], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  t.teardown(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill('SIGKILL')
    await once(child, 'exit')
  })
  let out = ''
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => { out += chunk })
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gateway did not start: ${out}`)), 40_000)
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk
      const match = /listening (http:\/\/\S+)/.exec(out)
      if (match !== null) { clearTimeout(timer); resolve(match[1]) }
    })
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`gateway exited (${String(code)}): ${out}`)) })
  })
}

async function upstreamOf (url: string, tenant: string): Promise<string> {
  const response = await request(`${url}/item`, { headers: { 'x-tenant': tenant } })
  const body = await response.body.json() as { upstream?: string }
  if (response.statusCode !== 200 || body.upstream === undefined) throw new Error(`${url} answered ${response.statusCode}`)
  return body.upstream
}

async function bindingKeys (admin: Redis, prefix: string): Promise<Map<string, string>> {
  const found = new Map<string, string>()
  let cursor = '0'
  for (let i = 0; i < 1000; i++) {
    const [next, keys] = await admin.scan(cursor, 'MATCH', prefix + '*:b:*', 'COUNT', 1000)
    // Read in one round trip (a pipeline), in key order.
    const values = keys.length === 0 ? [] : await admin.mget(...keys)
    for (const [i, key] of keys.entries()) found.set(key.slice(key.indexOf(':b:') + 3), (values[i] ?? '').split('|')[0])
    cursor = next
    if (cursor === '0') break
  }
  return found
}

t.test('three gateway processes with near caches on one Redis agree on every binding', async (t) => {
  const redis = await startRedis(t)
  const admin = new Redis(redis.url)
  t.teardown(() => admin.disconnect())
  const upstreams = await startUpstreams(t)
  const prefix = uniquePrefix()
  // This test is about agreement through the store, not about failing fast: on a busy two-core machine running three
  // gateways, 500 requests, Redis and the upstreams, the 250 ms command timeout can expire, and a request whose
  // store call timed out is routed degraded (rendezvous hash), which need not be the store's winner. A longer timeout
  // keeps every decision in the store; the test checks that none was degraded.
  const env = {
    REDIS_URL: redis.url,
    STICKY_PREFIX: prefix,
    STICKY_SECRET: SECRET,
    UPSTREAMS: upstreams.map((u) => `${u.id}=${u.url}`).join(','),
    REDIS_COMMAND_TIMEOUT_MS: '5000'
  }
  const gateways = await Promise.all(Array.from({ length: GATEWAYS }, async () => startGatewayProcess(t, env)))

  // 500 concurrent first requests over 50 keys, spread over the three gateways.
  const answers = await Promise.all(Array.from({ length: KEYS * PER_KEY }, async (_, i) => {
    const tenant = 'tenant-' + (i % KEYS)
    return { tenant, upstream: await upstreamOf(gateways[i % GATEWAYS], tenant) }
  }))
  const byTenant = new Map<string, Set<string>>()
  for (const { tenant, upstream } of answers) byTenant.set(tenant, (byTenant.get(tenant) ?? new Set()).add(upstream))
  const split = [...byTenant.values()].filter((set) => set.size > 1).length
  const reports = await Promise.all(gateways.map(async (url) => (await (await request(`${url}/__test/stats`)).body.json()) as { decisions: { degraded: number, new: number, hit: number }, errors: Record<string, number> }))
  t.comment(`decisions per gateway: ${JSON.stringify(reports.map(({ decisions: { degraded, new: made, hit }, errors }) => ({ degraded, new: made, hit, errors })))}`)
  t.same(reports.map((report) => report.decisions.degraded), [0, 0, 0], 'every decision was made through the store')
  if (split > 0) t.comment(`split keys: ${JSON.stringify([...byTenant].filter(([, set]) => set.size > 1).map(([tenant]) => [tenant, answers.filter((a) => a.tenant === tenant).map((a, i) => a.upstream + '@' + String(i % GATEWAYS))]))}`)
  t.equal(split, 0, `every one of the ${KEYS} keys got one upstream from all ${KEYS * PER_KEY} racing requests`)
  const stored = await bindingKeys(admin, prefix)
  t.equal(stored.size, KEYS, 'one binding per key in Redis')
  t.same(new Set(stored.values()), new Set(['a', 'b', 'c']), 'spread over every upstream')

  // Every gateway, asked again (now from its near cache), gives the same answer.
  let disagreements = 0
  await Promise.all([...byTenant].map(async ([tenant, set]) => {
    const expected = [...set][0]
    for (const url of gateways) if (await upstreamOf(url, tenant) !== expected) disagreements++
  }))
  t.equal(disagreements, 0, 'every gateway agrees afterwards')

  // A move made by gateway 0 reaches the near caches of gateways 1 and 2.
  const latencies: number[] = []
  for (let p = 0; p < PROBES; p++) {
    const tenant = `probe-${p}`
    const before = await bindingKeys(admin, prefix)
    const from = await upstreamOf(gateways[0], tenant)
    const keyId = [...(await bindingKeys(admin, prefix)).keys()].find((key) => !before.has(key)) as string
    for (const url of gateways.slice(1)) {
      t.equal(await upstreamOf(url, tenant), from, 'the others agree', { diagnostic: false })
      await upstreamOf(url, tenant) // a cache hit from now on
    }
    const statsBefore = await Promise.all(gateways.slice(1).map(async (url) => (await request(`${url}/__test/stats`)).body.json() as Promise<{ invalidations: number }>))
    const to = ['a', 'b', 'c'].find((id) => id !== from) as string
    const moved = await (await request(`${gateways[0]}/__test/rebind/${keyId}/${from}/${to}`, { method: 'POST' })).body.json() as { swapped: boolean, at: number }
    t.ok(moved.swapped, 'gateway 0 moved it', { diagnostic: false })
    // Each gateway notes when the invalidation reached it; the latency is measured on the host's one clock, from just
    // before gateway 0 ran the move, without the HTTP round trips of this test.
    await Promise.all(gateways.slice(1).map(async (url) => {
      let at: number | null = null
      for (let i = 0; i < 200 && at === null; i++) {
        at = ((await (await request(`${url}/__test/invalidated/${keyId}`)).body.json()) as { at: number | null }).at
        if (at === null) await new Promise((resolve) => setTimeout(resolve, 10))
      }
      latencies.push(at === null ? Infinity : at - moved.at)
      t.ok(await eventually(async () => await upstreamOf(url, tenant) === to), 'and routes by the move', { diagnostic: false })
    }))
    const statsAfter = await Promise.all(gateways.slice(1).map(async (url) => (await request(`${url}/__test/stats`)).body.json() as Promise<{ invalidations: number }>))
    t.ok(statsAfter.every((s, i) => s.invalidations > statsBefore[i].invalidations), 'through their invalidation feed', { diagnostic: false })
  }
  latencies.sort((x, y) => x - y)
  const max = latencies[latencies.length - 1]
  t.comment(`a move made by one gateway reached the others' near caches after: median ${latencies[Math.floor(latencies.length / 2)]} ms, max ${max} ms (${latencies.length} observations)`)
  t.ok(max < 50, `within 50 ms (max ${max} ms)`)
})
