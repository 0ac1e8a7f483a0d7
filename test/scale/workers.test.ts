import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import t, { type Test } from 'tap'
import Redis from 'ioredis'
import { request } from 'undici'
import { readWorkers } from '../../lib/gateway/workers'
import { GATEWAY_COMMAND } from '../support/example-process'
import { startRedis, uniquePrefix } from '../support/redis'
import { startUpstreams } from '../support/upstreams'
import { eventually } from '../support/eventually'

const SECRET = 'workers-secret-0123456789-abcdefghijklmn'

// The compiled command, as `npm run gateway` runs it: the PID started here is the primary itself.
function startGatewayProcess (t: Test, env: Record<string, string>): { child: ChildProcess, out: () => string, err: () => string } {
  const child = spawn(process.execPath, [GATEWAY_COMMAND], { env: { ...process.env, LOG_LEVEL: 'silent', ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill('SIGKILL') // the workers see their primary go (IPC disconnect) and stop
    await once(child, 'exit')
  })
  let out = ''
  let err = ''
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => { out += chunk })
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => { err += chunk })
  return { child, out: () => out, err: () => err }
}

// The subtests share nothing (each has processes, upstreams and Redis of its own) and mostly wait on processes: they
// run side by side.
t.jobs = 3

t.test('readWorkers', async (t) => {
  t.equal(readWorkers({}), 1)
  t.equal(readWorkers({ WORKERS: '4' }), 4)
  t.ok(readWorkers({ WORKERS: 'auto' }) >= 1)
  for (const bad of ['0', '-1', '2.5', 'many', '1000']) {
    t.throws(() => readWorkers({ WORKERS: bad }), { message: /^WORKERS must be a whole number from 1 to 256 or 'auto'/ }, bad)
  }
})

t.test('WORKERS>1 with the in-memory store refuses to start, in one line', async (t) => {
  const upstreams = await startUpstreams(t, ['a'])
  const gateway = startGatewayProcess(t, { UPSTREAMS: `a=${upstreams[0].url}`, WORKERS: '2', PORT: '0' })
  const [code] = await once(gateway.child, 'exit')
  t.equal(code, 2)
  t.equal(gateway.err().trim().split('\n').length, 1, 'one line')
  t.match(gateway.err(), /^gateway: WORKERS=2 needs REDIS_URL: with the in-memory store each worker would keep bindings of its own/)
  t.equal(gateway.out(), '')
})

t.test('WORKERS=2 on Redis: one port, one listening line, every client stays on one upstream, SIGTERM stops all', async (t) => {
  const upstreams = await startUpstreams(t)
  const redis = await startRedis(t)
  const gateway = startGatewayProcess(t, {
    UPSTREAMS: upstreams.map((u) => `${u.id}=${u.url}`).join(','),
    WORKERS: '2',
    PORT: '0',
    REDIS_URL: redis.url,
    STICKY_SECRET: SECRET,
    STICKY_PREFIX: uniquePrefix()
  })
  const deadline = Date.now() + 40_000
  let match: RegExpExecArray | null = null
  while (match === null && Date.now() < deadline && gateway.child.exitCode === null) {
    match = /gateway listening on (http:\/\/\S+) \(Redis store, 2 workers\)/.exec(gateway.out())
    if (match === null) await new Promise((resolve) => setTimeout(resolve, 50))
  }
  if (match === null) throw new Error(`no listening line; stdout: ${gateway.out()} stderr: ${gateway.err()}`)
  const url = match[1]
  // Node children only.
  const childrenOf = (pid: number): number[] => spawnSync('ps', ['-o', 'pid=,comm=', '--ppid', String(pid)], { encoding: 'utf8' }).stdout
    .split('\n').map((line) => line.trim().split(/\s+/)).filter(([, comm]) => comm === 'node').map(([child]) => Number(child))
  const workers = childrenOf(gateway.child.pid as number)
  t.equal(workers.length, 2, 'two worker processes under the primary')

  // Watch which Redis connections carry routing commands: one per worker when both serve.
  const admin = new Redis(redis.url)
  t.teardown(() => admin.disconnect())
  const monitor = await admin.monitor()
  t.teardown(() => monitor.disconnect())
  const routing = new Set<string>()
  monitor.on('monitor', (_time: string, args: string[], source: string) => {
    // Commands run by a script are reported with the source 'lua'.
    if (source !== 'lua' && /^(evalsha|eval|get)$/i.test(args[0] ?? '')) routing.add(source)
  })

  // A fresh connection per request: the primary hands each to the next worker.
  const send = async (cookie?: string): Promise<{ upstream: string, cookie: string | undefined }> => {
    const response = await request(`${url}/cart`, { reset: true, headers: cookie === undefined ? {} : { cookie } })
    const body = await response.body.json() as { upstream: string }
    const setCookie = response.headers['set-cookie']
    return { upstream: body.upstream, cookie: setCookie === undefined ? undefined : String(setCookie).split(';')[0] }
  }
  const clients = await Promise.all(Array.from({ length: 40 }, async () => {
    const first = await send()
    return { upstream: first.upstream, cookie: first.cookie as string }
  }))
  t.equal(new Set(clients.map((c) => c.upstream)).size, 3, 'new clients spread over the three upstreams')
  let strays = 0
  await Promise.all(clients.map(async (client) => {
    for (let i = 0; i < 6; i++) if ((await send(client.cookie)).upstream !== client.upstream) strays++
  }))
  t.equal(strays, 0, '240 requests on fresh connections, each client on its one upstream')
  t.equal(routing.size, 2, `routing commands came from both workers' connections (${[...routing].join(', ')})`)
  t.equal(gateway.out().trim().split('\n').length, 1, 'one line on stdout, printed by the primary')

  // A worker that crashes is replaced; its clients' next requests land on the others, on the same upstreams.
  process.kill(workers[0], 'SIGKILL')
  let replaced: number[] = []
  for (let i = 0; i < 200 && replaced.length < 2; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100))
    replaced = childrenOf(gateway.child.pid as number).filter((pid) => pid !== workers[0])
  }
  t.equal(replaced.length, 2, 'a new worker took the crashed one\'s place')
  // The primary says it before it forks, but its stderr may reach this process after ps has shown the new worker.
  const crashLine = new RegExp(`gateway: worker ${workers[0]} exited \\(SIGKILL\\); starting another`)
  await eventually(() => crashLine.test(gateway.err()), 2000)
  t.match(gateway.err(), crashLine, 'said once, on stderr')
  let after = 0
  await Promise.all(clients.slice(0, 10).map(async (client) => {
    for (let i = 0; i < 3; i++) if ((await send(client.cookie)).upstream !== client.upstream) after++
  }))
  t.equal(after, 0, 'clients still on their upstreams')
  workers.splice(0, 1, ...replaced.filter((pid) => pid !== workers[1]))

  gateway.child.kill('SIGTERM')
  const [code] = await once(gateway.child, 'exit')
  t.equal(code, 0, 'the primary exits 0 on SIGTERM')
  const gone = (pid: number): boolean => {
    try {
      process.kill(pid, 0)
      return false
    } catch {
      return true
    }
  }
  t.ok(workers.every(gone), 'and its workers are gone')
  await t.rejects(request(`${url}/cart`, { reset: true }), 'nothing listens any more')
})
