import { spawn } from 'node:child_process'
import { once } from 'node:events'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import Redis from 'ioredis'
import t from 'tap'
import type { Test } from 'tap'
import { CookieJar, get } from './http'
import { startRedis, uniquePrefix } from './redis'
import { MAX_ECHO_BODY_BYTES, startUpstreams } from './upstreams'

function isAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch {
    return false
  }
  // An orphan killed after its parent exited stays a zombie until init reaps it: it is dead already.
  try {
    return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'))
  } catch {
    return true
  }
}

/** Polls until `pid` is gone (a killed child may linger briefly before it is reaped). */
async function waitGone (pid: number, timeoutMs = 5_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (isAlive(pid)) {
    if (Date.now() > deadline) return false
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  return true
}

function client (t: Test, url: string): Redis {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => 50 })
  // Refused connections while the server is stopped are expected here.
  redis.on('error', () => {})
  t.teardown(() => redis.disconnect())
  return redis
}

t.test('startRedis: a private server that answers PING and keeps its port across restart', async (t) => {
  const server = await startRedis(t)
  t.match(server.url, /^redis:\/\/127\.0\.0\.1:\d+$/)
  t.equal(server.url, `redis://127.0.0.1:${server.port}`)
  t.not(server.port, 6379, 'never the default port')
  t.ok(isAlive(server.pid))

  const redis = client(t, server.url)
  await redis.connect()
  t.equal(await redis.ping(), 'PONG')
  const key = `${uniquePrefix()}k`
  await redis.set(key, 'v')
  t.equal(await redis.get(key), 'v')
  t.same(await redis.config('GET', 'save'), ['save', ''], 'no RDB snapshots')
  t.same(await redis.config('GET', 'appendonly'), ['appendonly', 'no'], 'no AOF')

  const firstPid = server.pid
  await server.restart()
  t.ok(await waitGone(firstPid), 'old process is gone after restart')
  t.not(server.pid, firstPid, 'a new process')
  t.ok(isAlive(server.pid))
  t.equal(await redis.ping(), 'PONG', 'the client reconnects to the same port')
  t.equal(await redis.get(key), null, 'a restarted server starts empty')

  const secondPid = server.pid
  await server.stop()
  t.notOk(isAlive(secondPid), 'process is gone after stop()')
  await server.stop()
  t.pass('stop() twice is a no-op')
  await t.rejects(redis.ping(), 'the server is really down')

  await server.restart()
  t.equal(await redis.ping(), 'PONG', 'restart() after stop() brings it back on the same port')
})

t.test('startRedis: teardown kills the server when the test ends', async (t) => {
  let pid = 0
  await t.test('owner', async (t) => {
    pid = (await startRedis(t)).pid
    t.ok(isAlive(pid))
  })
  t.ok(pid > 0)
  t.notOk(isAlive(pid), 'gone right after the owning test ended')
})

t.test('startRedis: two servers get two ports', async (t) => {
  const [one, two] = await Promise.all([startRedis(t), startRedis(t)])
  t.not(one.port, two.port)
  t.not(one.pid, two.pid)
})

t.test('startRedis: a server that cannot start rejects with its output', async (t) => {
  await t.rejects(startRedis(t, { args: ['--no-such-directive', 'x'] }), /exited .*before answering PING[\s\S]*no-such-directive/i)
})

t.test('startRedis: the server dies with the test process, however it ends', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sticky-helpers-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const script = path.join(dir, 'owner.ts')
  // A test process that starts Redis, reports the PID, then ends without running teardown.
  fs.writeFileSync(script, [
    `import { startRedis } from ${JSON.stringify(path.join(__dirname, 'redis'))}`,
    'const noTeardown = { teardown () {} } as any',
    'startRedis(noTeardown).then((server) => {',
    '  process.stdout.write(`${server.pid}\\n`)',
    "  if (process.argv[2] === 'throw') setTimeout(() => { throw new Error('boom') }, 10)",
    "  if (process.argv[2] === 'exit') setTimeout(() => process.exit(3), 10)",
    '  if (process.argv[2] === \'hang\') setInterval(() => {}, 1000)',
    '})'
  ].join('\n'))

  for (const mode of ['throw', 'exit', 'hang'] as const) {
    await t.test(mode, async (t) => {
      const child = spawn(process.execPath, ['--import', 'tsx', script, mode], {
        cwd: path.join(__dirname, '..', '..'),
        env: { ...process.env, NODE_OPTIONS: '' },
        stdio: ['ignore', 'pipe', 'pipe']
      })
      let out = ''
      child.stdout.on('data', (c: Buffer) => { out += c.toString() })
      child.stderr.resume()
      const exited = once(child, 'exit')
      const deadline = Date.now() + 15_000
      while (!/^\d+\n/.test(out) && Date.now() < deadline && child.exitCode === null) {
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
      const pid = Number.parseInt(out, 10)
      t.ok(pid > 0, `child reported the redis pid (${out.trim()})`)
      // 'hang' stands for tap's last resort on a timed-out file: SIGKILL, no exit handlers.
      if (mode === 'hang') child.kill('SIGKILL')
      await exited
      t.ok(await waitGone(pid), `redis-server ${pid} is gone after the owner ended (${mode})`)
      if (isAlive(pid)) process.kill(pid, 'SIGKILL')
    })
  }
})

t.test('uniquePrefix', async (t) => {
  const a = uniquePrefix()
  t.match(a, /^sticky-t-[0-9a-f-]{36}:$/)
  t.not(a, uniquePrefix())
})

t.test('startUpstreams: echo servers with ids, hit counts and special paths', async (t) => {
  const ups = await startUpstreams(t)
  t.same(ups.map((u) => u.id), ['a', 'b', 'c'])
  t.equal(new Set(ups.map((u) => u.port)).size, 3)
  const [a, b] = ups
  t.equal(a.url, `http://127.0.0.1:${a.port}`)

  const res = await get(`${a.url}/hello?x=1`, { headers: { 'x-test': 'yes' } })
  t.equal(res.status, 200)
  t.equal(res.headers['x-upstream-id'], 'a')
  t.match(res.json(), { upstream: 'a', method: 'GET', url: '/hello?x=1', headers: { 'x-test': 'yes' }, body: '' })
  t.equal(a.hits, 1)
  t.equal(b.hits, 0)

  const posted = await get(`${b.url}/api`, { method: 'POST', body: { n: 1 } })
  t.match(posted.json(), { upstream: 'b', method: 'POST', body: '{"n":1}', headers: { 'content-type': 'application/json' } })
  t.equal(b.hits, 1)

  const big = await get(`${b.url}/big`, { method: 'PUT', body: Buffer.alloc(MAX_ECHO_BODY_BYTES + 10, 'x') })
  t.equal(big.json().body.length, MAX_ECHO_BODY_BYTES, 'echoed body is capped at 1 MiB')

  const cookie = await get(`${a.url}/shop/set-cookie/app_sid/abc123`)
  t.same(cookie.setCookies, ['app_sid=abc123; Path=/'], 'set-cookie works behind a prefix')
  t.equal(cookie.json().upstream, 'a')

  const unavailable = await get(`${a.url}/status/503`)
  t.equal(unavailable.status, 503)
  t.equal(unavailable.json().upstream, 'a')
  const empty = await get(`${a.url}/status/204`, { method: 'DELETE' })
  t.equal(empty.status, 204)
  t.equal(empty.body, '')
  t.equal(empty.headers['x-upstream-id'], 'a')
  t.equal(a.hits, 4)
})

t.test('startUpstreams: custom ids, closed at teardown', async (t) => {
  let url = ''
  await t.test('owner', async (t) => {
    const [x] = await startUpstreams(t, ['x'])
    url = x.url
    t.equal((await get(url)).json().upstream, 'x')
  })
  await t.rejects(get(url, { timeoutMs: 2_000 }), 'closed after the owning test ended')
})

t.test('CookieJar: stores, replaces and deletes like a browser', async (t) => {
  const jar = new CookieJar()
  t.equal(jar.header(), '')
  jar.store(['a=1; Path=/; HttpOnly', 'b=2; Max-Age=60', 'c=x=y; SameSite=Lax'])
  t.equal(jar.header(), 'a=1; b=2; c=x=y')
  jar.store('a=one')
  t.equal(jar.get('a'), 'one')
  jar.store('b=; Max-Age=0')
  t.notOk(jar.has('b'), 'Max-Age=0 deletes')
  jar.store('c=; Expires=Thu, 01 Jan 1970 00:00:00 GMT')
  t.notOk(jar.has('c'), 'a past Expires deletes')
  jar.store('d=1; Max-Age=10; Expires=Thu, 01 Jan 1970 00:00:00 GMT')
  t.equal(jar.get('d'), '1', 'Max-Age wins over Expires')
  jar.store(['garbage', '=nameless'])
  t.equal(jar.size, 2)
  t.equal(`${jar}`, 'a=one; d=1')

  const [up] = await startUpstreams(t, ['u'])
  const browser = new CookieJar()
  await get(`${up.url}/set-cookie/sid/s1`, { jar: browser })
  t.equal(browser.get('sid'), 's1', 'get() stores Set-Cookie into the jar')
  const echoed = await get(`${up.url}/`, { jar: browser, cookie: 'extra=1' })
  t.equal(echoed.json().headers.cookie, 'sid=s1; extra=1', 'and sends it back, with explicit cookies last')
})
