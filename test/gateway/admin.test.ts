/**
 * The `fastify-sticky` command (`npm run gateway`) as an operator runs it, on real processes: the admin API on ADMIN_PORT (issue #16 finding 3),
 * the same-origin mode kept with a warning, and no password echoed from a bad REDIS_URL or UPSTREAMS (finding 9).
 */
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { startGatewayCommand, type ExampleProcess } from '../support/example-process'
import { CookieJar, get } from '../support/http'
import { startRedis, uniquePrefix } from '../support/redis'
import { startUpstreams } from '../support/upstreams'

const TOKEN = 'gateway-admin-token-0123456789'
const AUTH = { authorization: `Bearer ${TOKEN}` }
const SECRET = 'gateway-secret-0123456789-abcdefghijklm'

interface Spawned {
  readonly process: ExampleProcess
  readonly stdout: () => string
  readonly stderr: () => string
}

/** Runs the compiled `fastify-sticky` command (what `npm run gateway` runs) with `env` over the current environment. */
function spawnGateway (t: Test, env: Record<string, string>): Spawned {
  const spawned = startGatewayCommand(t, env)
  return { process: spawned, stdout: () => spawned.output().out, stderr: () => spawned.output().err }
}

/** @returns the listening line, once printed */
async function listeningLine (gateway: Spawned): Promise<string> {
  return (await gateway.process.waitFor(/^.*listening on.*$/m))[0]
}

/** @returns the exit code of a gateway that stops by itself */
async function exitCode (gateway: Spawned): Promise<number | null> {
  return await gateway.process.exited()
}

async function stop (t: Test, gateway: Spawned): Promise<void> {
  t.equal(await gateway.process.signal('SIGTERM'), 0, 'SIGTERM closes cleanly')
}

// Every subtest runs its own gateway processes on ports of their own: they run side by side, as most of their time is
// spent waiting for a child process to start or exit.
t.jobs = 5

t.test('ADMIN_PORT: the admin API on its own loopback listener, nothing of it on the public port', async (t) => {
  const upstreams = await startUpstreams(t, ['a', 'b'])
  const gateway = spawnGateway(t, { UPSTREAMS: upstreams.map((u) => `${u.id}=${u.url}`).join(','), ADMIN_TOKEN: TOKEN, ADMIN_PORT: '0' })
  const line = await listeningLine(gateway)
  const match = /listening on (http:\/\/\S+) \(.*admin API and status page at (http:\/\/127\.0\.0\.1:\d+\/_sticky\/)[;)]/.exec(line)
  t.ok(match, `the line names both addresses: ${line}`)
  if (match === null) return
  const [, url, admin] = match
  t.not(new URL(admin).port, new URL(url).port)

  const jar = new CookieJar()
  const client = (await get(`${url}/cart`, { jar })).json().upstream as string
  const list = await get(`${admin}upstreams`, { headers: AUTH })
  t.equal(list.status, 200, 'the API on the admin port')
  t.same(list.json().map((u: { id: string, sessions: number }) => [u.id, u.sessions]), [['a', client === 'a' ? 1 : 0], ['b', client === 'b' ? 1 : 0]])
  t.equal((await get(`${admin}upstreams`)).status, 401, 'behind the token')
  t.match((await get(admin)).body, /<title>fastify-sticky · status<\/title>/, 'the status page')
  t.equal((await get(`${admin}upstreams/${client}/drain`, { method: 'POST', headers: AUTH })).status, 403, 'a drain without x-sticky-admin is refused')
  t.equal((await get(`${admin}upstreams/${client}/drain`, { method: 'POST', headers: { ...AUTH, 'x-sticky-admin': '1' } })).status, 200, 'with it, drained')
  t.equal((await get(`${url}/next`, { jar })).json().upstream, client, 'the bound client stays')
  const fresh = await Promise.all(Array.from({ length: 4 }, async () => (await get(`${url}/`)).json().upstream as string))
  t.notOk(fresh.includes(client), 'new clients go elsewhere')

  const publicAdmin = await get(`${url}/_sticky/upstreams`, { headers: AUTH })
  t.equal(publicAdmin.status, 200)
  t.ok(typeof publicAdmin.json().upstream === 'string' && !Array.isArray(publicAdmin.json()), 'on the public port /_sticky/ is an application path like any other: proxied')
  t.notMatch(gateway.stderr(), /warning/, 'no same-origin warning')
  await stop(t, gateway)
  await t.rejects(get(`${admin}upstreams`, { headers: AUTH, timeoutMs: 2000 }), 'the admin port closed with the gateway')
})

t.test('ADMIN_TOKEN without ADMIN_PORT: same-origin admin, as before, with a warning at start', async (t) => {
  const upstreams = await startUpstreams(t, ['a'])
  const gateway = spawnGateway(t, { UPSTREAMS: `a=${upstreams[0].url}`, ADMIN_TOKEN: TOKEN })
  const line = await listeningLine(gateway)
  t.match(line, /admin API and status page at \/_sticky\/ on this port/)
  const url = (/listening on (http:\/\/\S+)/.exec(line) as RegExpExecArray)[1]
  t.equal((await get(`${url}/_sticky/upstreams`, { headers: AUTH })).status, 200, 'the admin API on the public port')
  t.equal((await get(`${url}/_sticky/upstreams/a/drain`, { method: 'POST', headers: { ...AUTH, 'x-sticky-admin': '1' } })).status, 200)
  const warnings = gateway.stderr().trim().split('\n')
  t.equal(warnings.length, 1, 'one line on stderr, even with LOG_LEVEL=silent')
  t.match(warnings[0], /^gateway: warning: the admin API and status page share the public port, .* set ADMIN_PORT/)
  await stop(t, gateway)
})

t.test('ADMIN_PORT in use: one line naming ADMIN_HOST/ADMIN_PORT, exit 1', async (t) => {
  const upstreams = await startUpstreams(t, ['a'])
  const first = spawnGateway(t, { UPSTREAMS: `a=${upstreams[0].url}`, ADMIN_TOKEN: TOKEN, ADMIN_PORT: '0' })
  const admin = (/status page at (http:\/\/\S+?\/_sticky\/)/.exec(await listeningLine(first)) as RegExpExecArray)[1]
  const second = spawnGateway(t, { UPSTREAMS: `a=${upstreams[0].url}`, ADMIN_TOKEN: TOKEN, ADMIN_PORT: new URL(admin).port })
  t.equal(await exitCode(second), 1)
  t.match(second.stderr(), new RegExp(`^gateway: ADMIN_HOST/ADMIN_PORT: cannot listen on 127\\.0\\.0\\.1:${new URL(admin).port} \\(.*EADDRINUSE.*\\)\\n$`))
  await stop(t, first)
})

t.test('a bad REDIS_URL or UPSTREAMS stops the gateway with one line that holds no password', async (t) => {
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ REDIS_URL: 'redis://:supersecret@bad host', UPSTREAMS: 'a=http://u:pw@127.0.0.1:1', STICKY_SECRET: SECRET }, /^gateway: REDIS_URL must be a redis:\/\/ or rediss:\/\/ URL, got "redis:\/\/\*\*\*@bad host"\n$/],
    [{ UPSTREAMS: 'a=http://u:pw@127.0.0.1:1' }, /^gateway: UPSTREAMS must be .*, got "a=http:\/\/\*\*\*@127\.0\.0\.1:1"\n$/]
  ]
  // Started together; checked one after the other.
  const gateways = cases.map(([env]) => spawnGateway(t, { ...env, LOG_LEVEL: 'trace' }))
  const codes = await Promise.all(gateways.map(async (gateway) => exitCode(gateway)))
  for (const [i, [env, message]] of cases.entries()) {
    const gateway = gateways[i]
    t.equal(codes[i], 2, `${Object.keys(env).join(', ')}: exit 2`)
    t.match(gateway.stderr(), message, 'one line naming the variable')
    const output = gateway.stdout() + gateway.stderr()
    t.notOk(output.includes('supersecret'), 'no Redis password')
    t.notOk(/pw/.test(output), 'no upstream password')
  }
})

t.test('on a password-protected Redis, a right or a wrong REDIS_URL password is never logged, even at debug', async (t) => {
  const upstreams = await startUpstreams(t, ['a'])
  const redis = await startRedis(t)
  const client = new Redis(redis.url)
  await client.config('SET', 'requirepass', 'rightsecret')
  client.disconnect()
  const authed = redis.url.replace('redis://', 'redis://:rightsecret@')
  const base = { UPSTREAMS: `a=${upstreams[0].url}`, STICKY_SECRET: SECRET, STICKY_PREFIX: uniquePrefix(), LOG_LEVEL: 'debug' }

  // Both started at once; each is then checked on its own.
  const good = spawnGateway(t, { ...base, REDIS_URL: authed })
  const wrong = spawnGateway(t, { ...base, REDIS_URL: redis.url.replace('redis://', 'redis://:supersecret@') })
  const [goodLine, wrongLine] = await Promise.all([listeningLine(good), listeningLine(wrong)])
  const goodUrl = (/listening on (http:\/\/\S+)/.exec(goodLine) as RegExpExecArray)[1]
  t.equal((await get(`${goodUrl}/x`)).json().upstream, 'a')
  await stop(t, good)
  t.notMatch(good.stdout() + good.stderr(), /Redis is not reachable/, 'the right password: a Redis store')
  t.notOk((good.stdout() + good.stderr()).includes('rightsecret'), 'whose password no log line holds')

  const wrongUrl = (/listening on (http:\/\/\S+)/.exec(wrongLine) as RegExpExecArray)[1]
  t.equal((await get(`${wrongUrl}/x`)).json().upstream, 'a', 'a wrong one: routing degraded, still serving')
  await stop(t, wrong)
  const output = wrong.stdout() + wrong.stderr()
  t.match(output, /Redis is not reachable at start/, 'the logs say why')
  t.notOk(output.includes('supersecret'), 'and hold no password')
})
