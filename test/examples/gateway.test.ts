import { spawn } from 'node:child_process'
import { once } from 'node:events'
import t from 'tap'
import { readGatewayEnv } from '../../examples/gateway-env'
import { buildGateway } from '../../examples/gateway'
import { CookieJar, get } from '../support/http'
import { startRedis, uniquePrefix } from '../support/redis'
import { startUpstreams } from '../support/upstreams'

const SECRET = 'gateway-secret-0123456789-abcdefghijklm'

t.test('readGatewayEnv: defaults and every variable', async (t) => {
  const minimal = readGatewayEnv({ UPSTREAMS: 'a=http://127.0.0.1:4001,b=http://127.0.0.1:4002/' })
  t.equal(minimal.port, 3000)
  t.equal(minimal.host, '127.0.0.1')
  t.equal(minimal.generatedSecret, true)
  t.equal(minimal.trustProxy, false)
  t.same(minimal.plugin.pools, { default: { upstreams: [{ id: 'a', url: 'http://127.0.0.1:4001' }, { id: 'b', url: 'http://127.0.0.1:4002/' }] } })
  t.equal(minimal.plugin.redis, undefined, 'no REDIS_URL → in-memory store')
  const full = readGatewayEnv({
    UPSTREAMS: 'a=http://127.0.0.1:4001', PORT: '8080', HOST: '0.0.0.0', REDIS_URL: 'redis://127.0.0.1:6390',
    STICKY_SECRET: `${SECRET},${SECRET}-old`, STICKY_KEY: 'cookie', STICKY_COOKIE: 'route', STICKY_PREFIX: 'gw:',
    TRUST_PROXY: 'true', STICKY_IDLE_TIMEOUT: '90', STICKY_MAX_LIFETIME: '2h', ADMIN_TOKEN: 'tok-0123456789abcdef', LOG_LEVEL: 'warn'
  })
  t.same([full.port, full.host, full.trustProxy, full.logLevel, full.adminToken, full.generatedSecret], [8080, '0.0.0.0', true, 'warn', 'tok-0123456789abcdef', false])
  t.equal(full.adminListen, undefined, 'no ADMIN_PORT: the admin API stays on the public port')
  t.same(full.plugin.admin, { token: 'tok-0123456789abcdef' })
  const listener = readGatewayEnv({ UPSTREAMS: 'a=http://x:1', ADMIN_TOKEN: 'tok-0123456789abcdef', ADMIN_PORT: '9090' })
  t.same([listener.adminListen, listener.plugin.admin], [{ host: '127.0.0.1', port: 9090 }, { token: 'tok-0123456789abcdef', listen: { host: '127.0.0.1', port: 9090 } }], 'ADMIN_PORT: a listener of its own, on loopback')
  t.same(readGatewayEnv({ UPSTREAMS: 'a=http://x:1', ADMIN_TOKEN: 'tok-0123456789abcdef', ADMIN_PORT: '0', ADMIN_HOST: '::1' }).adminListen, { host: '::1', port: 0 })
  t.same(full.plugin.secret, [SECRET, `${SECRET}-old`])
  t.same([full.plugin.redis, full.plugin.prefix, full.plugin.cookie], ['redis://127.0.0.1:6390', 'gw:', { name: 'route' }])
  t.same(full.plugin.defaults, { pool: 'default', key: 'cookie', idleTimeout: 90_000, maxLifetime: '2h' })
  t.equal(readGatewayEnv({ UPSTREAMS: 'a=http://x:1', TRUST_PROXY: '10.0.0.0/8, ::1' }).trustProxy, '10.0.0.0/8,::1')
  t.equal(readGatewayEnv({ UPSTREAMS: 'a=http://x:1', TRUST_PROXY: '2' }).trustProxy, 2, 'a number is a hop count')
  const keyOf = (STICKY_KEY: string): unknown => readGatewayEnv({ UPSTREAMS: 'a=http://x:1', STICKY_KEY }).plugin.defaults?.key
  t.same(['ip', 'header:X-Tenant', 'query:room', 'learn:JSESSIONID'].map(keyOf), ['ip', { header: 'X-Tenant' }, { query: 'room' }, { learn: 'JSESSIONID' }])
})

t.test('readGatewayEnv: a bad value is one line naming the variable', async (t) => {
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ UPSTREAMS: '' }, /^UPSTREAMS must be set/],
    [{ UPSTREAMS: 'http://127.0.0.1:4001' }, /^UPSTREAMS must be a comma list of id=url/],
    [{ UPSTREAMS: 'a=127.0.0.1:4001' }, /^UPSTREAMS must be .*http\(s\) origin URLs/],
    [{ PORT: 'eighty' }, /^PORT must be a port number/],
    [{ LOG_LEVEL: 'loud' }, /^LOG_LEVEL must be/],
    [{ STICKY_SECRET: 'short' }, /^STICKY_SECRET must be .* at least 32 characters/],
    [{ REDIS_URL: 'localhost', STICKY_SECRET: SECRET }, /^REDIS_URL must be a redis:\/\//],
    [{ STICKY_PREFIX: 'a b' }, /^STICKY_PREFIX must be/],
    [{ STICKY_COOKIE: 'a;b' }, /^STICKY_COOKIE must be a cookie name/],
    [{ STICKY_KEY: 'header:' }, /^STICKY_KEY must be/],
    [{ STICKY_KEY: 'header:a b' }, /^STICKY_KEY must be/],
    [{ STICKY_KEY: 'magic' }, /^STICKY_KEY must be 'cookie', 'ip'/],
    [{ TRUST_PROXY: 'maybe' }, /^TRUST_PROXY must be/],
    [{ TRUST_PROXY: '999.1.1.1' }, /^TRUST_PROXY must be/],
    [{ TRUST_PROXY: '10.0.0.0/33' }, /^TRUST_PROXY must be/],
    [{ UPSTREAMS: 'a=http://127.0.0.1:4001,a=http://127.0.0.1:4002' }, /^UPSTREAMS must be .*unique ids/],
    [{ UPSTREAMS: 'a=http://u:p@127.0.0.1:4001' }, /^UPSTREAMS must be .*no credentials/],
    [{ UPSTREAMS: 'a=http://127.0.0.1:99999' }, /^UPSTREAMS must be .*origin URLs/],
    [{ REDIS_URL: 'redis://127.0.0.1:6390' }, /^STICKY_SECRET must be set when REDIS_URL is/],
    [{ STICKY_IDLE_TIMEOUT: '0' }, /^STICKY_IDLE_TIMEOUT must be a positive number of seconds/],
    [{ STICKY_MAX_LIFETIME: 'long' }, /^STICKY_MAX_LIFETIME must be/],
    [{ ADMIN_PORT: '9090' }, /^ADMIN_PORT applies to the admin API: set ADMIN_TOKEN too/],
    [{ ADMIN_TOKEN: 'tok-0123456789abcdef', ADMIN_PORT: 'admin' }, /^ADMIN_PORT must be a port number \(0-65535\), got "admin"/],
    [{ ADMIN_TOKEN: 'tok-0123456789abcdef', ADMIN_PORT: '65536' }, /^ADMIN_PORT must be a port number/],
    [{ ADMIN_TOKEN: 'tok-0123456789abcdef', ADMIN_HOST: '0.0.0.0' }, /^ADMIN_HOST applies with ADMIN_PORT/],
    [{ ADMIN_TOKEN: 'tok-0123456789abcdef', ADMIN_PORT: '9090', ADMIN_HOST: 'a b' }, /^ADMIN_HOST must be an IP address or a host name/],
    [{ ADMIN_TOKEN: 'tok-0123456789abcdef', ADMIN_PORT: '3000' }, /^ADMIN_PORT must be another port than PORT/]
  ]
  for (const [env, message] of cases) {
    t.throws(() => readGatewayEnv({ UPSTREAMS: 'a=http://127.0.0.1:4001', ...env }), { message }, JSON.stringify(env))
  }
})

t.test('readGatewayEnv: a bad value is echoed without its URL credentials', async (t) => {
  const long = 'p'.repeat(120)
  const cases: Array<[Record<string, string>, RegExp, string[]]> = [
    [{ REDIS_URL: 'redis://:supersecret@bad host', STICKY_SECRET: SECRET }, /^REDIS_URL must be a redis:\/\/ or rediss:\/\/ URL, got "redis:\/\/\*\*\*@bad host"$/, ['supersecret']],
    [{ REDIS_URL: `redis://admin:${long}@bad host`, STICKY_SECRET: SECRET }, /^REDIS_URL must be .*got "redis:\/\/\*\*\*@bad host"$/, ['admin', 'pppppppp']],
    [{ UPSTREAMS: 'a=http://u:pw@127.0.0.1:1' }, /^UPSTREAMS must be .*no credentials\), got "a=http:\/\/\*\*\*@127\.0\.0\.1:1"$/, [':pw']],
    [{ UPSTREAMS: `a=http://127.0.0.1:1,b=http://u:${long}@127.0.0.1:2` }, /^UPSTREAMS must be .*got "b=http:\/\/\*\*\*@127\.0\.0\.1:2"$/, ['pppppppp']],
    [{ REDIS_SENTINELS: ':supersecret@10.0.0.1:26379', REDIS_SENTINEL_NAME: 'm', STICKY_SECRET: SECRET }, /^REDIS_SENTINELS must be a comma list of host:port, got "\*\*\*@10\.0\.0\.1:26379"$/, ['supersecret']]
  ]
  for (const [env, message, secrets] of cases) {
    let error: Error | undefined
    try {
      readGatewayEnv({ UPSTREAMS: 'a=http://127.0.0.1:4001', ...env })
    } catch (thrown) {
      error = thrown as Error
    }
    t.match(error?.message, message, Object.keys(env).join(', '))
    for (const secret of secrets) t.notOk(error?.message.includes(secret), `without ${secret.slice(0, 8)}`)
  }
})

t.test('the gateway proxies every method and path with stickiness, bodies unparsed, on Redis', async (t) => {
  const upstreams = await startUpstreams(t)
  const redis = await startRedis(t)
  const settings = readGatewayEnv({
    UPSTREAMS: upstreams.map((u) => `${u.id}=${u.url}`).join(','), PORT: '0', STICKY_SECRET: SECRET,
    REDIS_URL: redis.url, STICKY_PREFIX: uniquePrefix(), LOG_LEVEL: 'silent'
  })
  const app = await buildGateway(settings)
  t.teardown(() => app.close())
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  const jar = new CookieJar()
  const upstream = (await get(`${url}/`, { jar })).json().upstream
  const json = await get(`${url}/api/items?q=1`, { jar, method: 'POST', body: '{"not":"parsed",', headers: { 'content-type': 'application/json' } })
  t.same([json.json().upstream, json.json().method, json.json().url, json.json().body], [upstream, 'POST', '/api/items?q=1', '{"not":"parsed",'], 'invalid JSON passes through untouched')
  const del = await get(`${url}/deep/path/x`, { jar, method: 'DELETE' })
  t.equal(del.json().upstream, upstream)
})

t.test('npm run gateway: prints a listening line; a bad variable stops it with one line', async (t) => {
  const upstreams = await startUpstreams(t, ['a'])
  const tsx = require.resolve('tsx/cli')
  const good = spawn(process.execPath, [tsx, 'examples/gateway.ts'], {
    env: { ...process.env, UPSTREAMS: `a=${upstreams[0].url}`, PORT: '0', LOG_LEVEL: 'silent' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  t.teardown(() => { if (good.exitCode === null) good.kill('SIGKILL') })
  let out = ''
  good.stdout.setEncoding('utf8')
  const listening = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no listening line: ' + out)), 20_000)
    good.stdout.on('data', (chunk: string) => {
      out += chunk
      const match = /listening on (http:\/\/\S+)/.exec(out)
      if (match !== null) { clearTimeout(timer); resolve(match[1]) }
    })
  })
  t.match(out, /in-memory store; random STICKY_SECRET/, 'says which store, warns about the random secret, even with LOG_LEVEL=silent')
  t.equal((await get(`${listening}/x`)).json().upstream, 'a')
  good.kill('SIGTERM')
  const [code] = await once(good, 'exit')
  t.equal(code, 0, 'SIGTERM closes cleanly')

  const bad = spawn(process.execPath, [tsx, 'examples/gateway.ts'], { env: { ...process.env, UPSTREAMS: 'nonsense', PORT: '0' }, stdio: ['ignore', 'pipe', 'pipe'] })
  let err = ''
  bad.stderr.setEncoding('utf8')
  bad.stderr.on('data', (chunk: string) => { err += chunk })
  const [badCode] = await once(bad, 'exit')
  t.equal(badCode, 2)
  t.equal(err.trim().split('\n').length, 1, 'exactly one line')
  t.match(err, /^gateway: UPSTREAMS must be/)
})
