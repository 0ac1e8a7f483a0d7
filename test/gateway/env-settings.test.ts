import t from 'tap'
import { readGatewayEnv } from '../../lib/gateway/env-settings'

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
