/**
 * Config files as an operator writes them, and gets them wrong: every error names the file, the dotted path and
 * what was expected; values from the environment never show; the route table picks the most specific route.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { parseAllDocuments } from 'yaml'
import schema from '../../lib/gateway/config.schema.json'
import { parseConfigText } from '../../lib/gateway/config-file'
import { gatewaySettingsFromConfig } from '../../lib/gateway/gateway-config'
import { RouteTable } from '../../lib/gateway/route-table'
import { resolveOptions } from '../../lib/options'

const SECRET = 'config-secret-0123456789-abcdefghijklmn'
const POOLS = 'pools:\n  shop:\n    upstreams: [{ id: a, url: "http://10.0.0.1:80" }, { id: b, url: "http://10.0.0.2:80" }]\n'
const ROUTES = 'routes:\n  - match: { prefix: /shop }\n'

function settingsOf (text: string, env: NodeJS.ProcessEnv = {}, file = 'gateway.yaml'): ReturnType<typeof gatewaySettingsFromConfig> {
  return gatewaySettingsFromConfig(parseConfigText(file, text, env))
}

t.test('bad configs: each error names the file, the path and the expectation', async (t) => {
  const cases: Array<[string, string, RegExp]> = [
    ['YAML syntax', 'pools: [\n', /^gateway\.yaml:\d+:\d+: not valid YAML/],
    ['not a mapping', '- a\n', /^gateway\.yaml: the top level must be a mapping/],
    ['unknown top-level key', `${POOLS}${ROUTES}listn: {}\n`, /^gateway\.yaml: listn is not a known key \(known at the top level: listen, trustProxy/],
    ['unknown nested key', `${POOLS}routes:\n  - match: { prefx: /x }\n`, /^gateway\.yaml: routes\[0\]\.match\.prefx is not a known key \(known at routes\[0\]\.match: prefix, path, host, methods\)/],
    ['no routes', POOLS, /^gateway\.yaml: routes is required/],
    ['bad upstream url', 'pools:\n  shop:\n    upstreams: [{ id: a, url: "http://10.0.0.1:80" }, { id: b, url: "10.0.0.2" }]\n' + ROUTES, /^gateway\.yaml: pools\.shop\.upstreams\[1\]\.url must be an http\(s\) origin URL .*got "10\.0\.0\.2"/],
    ['bad upstream id', 'pools:\n  shop:\n    upstreams: [{ id: "a b", url: "http://10.0.0.1:80" }]\n' + ROUTES, /^gateway\.yaml: pools\.shop\.upstreams\[0\]\.id must match/],
    ['bad duration', `${POOLS}${ROUTES}defaults: { idleTimeout: 30 minutes }\n`, /^gateway\.yaml: defaults\.idleTimeout must be a duration \(milliseconds, or '500ms'/],
    ['bad strategy', 'pools:\n  shop:\n    strategy: fastest\n    upstreams: [{ id: a, url: "http://10.0.0.1:80" }]\n' + ROUTES, /^gateway\.yaml: pools\.shop\.strategy must be one of "least-sessions"/],
    ['unknown pool', `${POOLS}routes:\n  - match: { prefix: /x }\n    pool: cart\n`, /^gateway\.yaml: routes\[0\]\.pool must name one of the pools \(shop\), got "cart"/],
    ['pool needed', `${POOLS}  api:\n    upstreams: [{ id: c, url: "http://10.0.0.3:80" }]\n${ROUTES}`, /^gateway\.yaml: routes\[0\]\.pool is required when there is more than one pool \(shop, api\)/],
    ['prefix and path', `${POOLS}routes:\n  - match: { prefix: /x, path: /y }\n`, /^gateway\.yaml: routes\[0\]\.match takes prefix or path, not both/],
    ['star inside a path', `${POOLS}routes:\n  - match: { path: "/a/*/b" }\n`, /routes\[0\]\.match path may use \* only as its whole last segment/],
    ['bad route key', `${POOLS}routes:\n  - match: {}\n    sticky: { key: { header: "bad header" } }\n`, /^gateway\.yaml: routes\[0\]\.sticky\.key/],
    ['bad plugin value', `${POOLS}${ROUTES}cookie: { name: "a;b" }\n`, /^gateway\.yaml: cookie\.name must be a cookie name token/],
    ['redis needs a secret', `${POOLS}${ROUTES}redis: redis://127.0.0.1:6379\n`, /^gateway\.yaml: secret is required with redis/],
    ['short secret', `${POOLS}${ROUTES}secret: short\n`, /^gateway\.yaml: secret\[0\] must be a string of at least 32 characters/],
    ['A record without port', 'pools:\n  shop:\n    upstreams: { dns: shop.local }\n' + ROUTES, /^gateway\.yaml: pools\.shop\.upstreams\.port is required with type A/],
    ['bad name server', 'pools:\n  shop:\n    upstreams: { dns: shop.local, port: 80, servers: [dns.example] }\n' + ROUTES, /^gateway\.yaml: pools\.shop\.upstreams\.servers\[0\] must be an IP address/],
    ['Permanent needs absoluteTimeout', `${POOLS}routes:\n  - sessionPersistence: { cookie: { lifetimeType: Permanent } }\n`, /^gateway\.yaml: routes\[0\]\.sessionPersistence\.absoluteTimeout is required with lifetimeType Permanent/],
    ['Header needs a name', `${POOLS}routes:\n  - sessionPersistence: { type: Header }\n`, /^gateway\.yaml: routes\[0\]\.sessionPersistence\.header\.name is required with type Header/],
    ['stateless with persistence', `${POOLS}routes:\n  - sticky: false\n    sessionPersistence: { type: Cookie }\n`, /routes\[0\]\.sessionPersistence needs a sticky route/],
    ['a sessionName another pool has', `${POOLS}  api:\n    upstreams: [{ id: c, url: "http://10.0.0.3:80" }]\nroutes:\n  - pool: api\n    sessionPersistence: { sessionName: sticky }\n`, /^gateway\.yaml: routes\[0\]\.sessionPersistence \(pool "api"'s cookie name\) must be a cookie name no other pool uses \(pool "shop" uses it\)/],
    ['a bad cookie path', `${POOLS}routes:\n  - sessionPersistence: { cookie: { path: "no-slash" } }\n`, /^gateway\.yaml: routes\[0\]\.sessionPersistence \(pool "shop"'s cookie path\) must be a path starting with/],
    ['two cookies for one pool', `${POOLS}routes:\n  - sessionPersistence: { sessionName: one }\n  - match: { prefix: /b }\n    sessionPersistence: { sessionName: two }\n`, /routes\[1\]\.sessionPersistence sets pool "shop"'s cookie otherwise than routes\[0\] does/],
    ['tunnel grace above grace', `${POOLS}${ROUTES}shutdown: { grace: 1s, tunnelGrace: 2s }\n`, /shutdown\.tunnelGrace must be at most shutdown\.grace/],
    ['health token without admin', `${POOLS}${ROUTES}health: { requireToken: true }\n`, /health\.requireToken needs admin\.token/]
  ]
  for (const [name, text, expected] of cases) {
    t.throws(() => settingsOf(text), { message: expected }, name)
  }
  t.throws(() => settingsOf('{"pools": ', {}, 'gateway.json'), { message: /^gateway\.json: not valid JSON/ }, 'JSON by its extension')
})

t.test('${ENV} interpolation: numbers stay numbers, defaults apply, a missing variable is named, secrets are never shown', async (t) => {
  const settings = settingsOf(`listen: { port: "\${PORT}", host: "\${HOST:-0.0.0.0}" }\nsecret: "\${STICKY_SECRET}"\nredis: "\${REDIS_URL}"\n${POOLS}${ROUTES}`, {
    PORT: '8080', STICKY_SECRET: SECRET, REDIS_URL: 'redis://:hunter2-password@10.0.0.9:6379'
  })
  t.same([settings.port, settings.host, settings.plugin.secret, settings.plugin.redis], [8080, '0.0.0.0', [SECRET], 'redis://:hunter2-password@10.0.0.9:6379'])
  t.throws(() => settingsOf(`secret: "\${NOPE}"\n${POOLS}${ROUTES}`), { message: 'gateway.yaml: secret uses ${NOPE}, which is not set in the environment' })
  const escaped = settingsOf(`${POOLS}${ROUTES}admin: { token: "$\${literal}-0123456789abcdef" }\n`)
  t.equal(escaped.adminToken, '${literal}-0123456789abcdef', '$${ writes a literal ${')
  let message = ''
  try {
    settingsOf(`${POOLS}${ROUTES}cookie: { domain: "\${DOMAIN}" }\n`, { DOMAIN: 'not a domain; secret-value-123' })
  } catch (error) {
    message = (error as Error).message
  }
  t.match(message, /^gateway\.yaml: cookie\.domain must be a domain name \(labels of letters, digits and inner hyphens\), got "\*\*\*"$/)
  t.notMatch(message, /secret-value-123/, 'the value from the environment is not printed back')
  // A long value is quoted cut short: the cut copy must not show either.
  const long = 'S3cr3t'.repeat(15)
  for (const text of [`pools:\n  p:\n    upstreams: [{ id: a, url: "\${LONG}" }]\n${ROUTES}`, `${POOLS}${ROUTES}logging: { level: "\${LONG}" }\n`, `${POOLS}${ROUTES}redis: "\${LONG}"\nsecret: "${SECRET}"\n`]) {
    let shown = ''
    try { settingsOf(text, { LONG: long }) } catch (error) { shown = (error as Error).message }
    t.match(shown, /^gateway\.yaml: /)
    t.notMatch(shown, /S3cr3tS3cr3t/, `no part of a long value from the environment: ${shown}`)
  }
})

t.test('what a config becomes: pools, routes, Gateway API sessionPersistence, DNS pools, restart-only keys', async (t) => {
  const settings = settingsOf(`secret: "${SECRET}"
pools:
  shop:
    upstreams: [{ id: a, url: "http://10.0.0.1:80" }]
  chat:
    upstreams: { dns: chat.default.svc.cluster.local, type: SRV, refresh: { min: 2s, max: 30s }, servers: ["127.0.0.1:5353"] }
routes:
  - name: shop
    match: { prefix: /shop }
    pool: shop
    sessionPersistence: { type: Cookie, sessionName: shop-id, cookie: { path: /shop }, cookieConfig: { lifetimeType: Permanent }, absoluteTimeout: 1h, idleTimeout: 10m }
  - match: { prefix: /static }
    pool: shop
    sticky: false
  - match: { path: "/chat/:room" }
    pool: chat
    sticky: { key: { query: room }, failover: strict }
`)
  const file = settings.file!
  t.same(file.routes.map((r) => r.sticky), [
    { pool: 'shop', key: 'cookie', idleTimeout: '10m', maxLifetime: '1h' },
    { pool: 'shop', key: false },
    { key: { query: 'room' }, failover: 'strict', pool: 'chat' }
  ])
  t.same(file.routes.map((r) => r.name), ['shop', 'routes[1]', 'routes[2]'])
  const resolved = resolveOptions(settings.plugin)
  t.same([resolved.pools.shop.cookieName, resolved.pools.shop.cookiePath, resolved.pools.shop.cookieMaxAgeSeconds], ['shop-id', '/shop', 3600], 'the pool takes the route\'s cookie')
  t.same(resolved.pools.chat.upstreams, [], 'a DNS pool starts empty; discovery fills it')
  t.same(file.discovery, [{ pool: 'chat', name: 'chat.default.svc.cluster.local', type: 'SRV', port: undefined, scheme: 'http', minRefreshMs: 2000, maxRefreshMs: 30_000, weight: 1, servers: ['127.0.0.1:5353'] }])
  t.same(file.health, { livePath: '/livez', readyPath: '/readyz', requireToken: false })
  t.same(file.shutdown, { graceMs: 10_000, tunnelGraceMs: 5_000 })
  t.ok(file.restartOnly['pools.shop'] !== undefined && file.restartOnly.secret !== undefined, 'pool settings and the secret are restart-only')
  t.notOk(JSON.stringify(file.restartOnly).includes('10.0.0.1'), 'a static upstream list is not restart-only: a reload changes it in place')
  const header = settingsOf(`${POOLS}routes:\n  - sessionPersistence: { type: Header, sessionName: x-session }\n`)
  t.same(header.file!.routes[0].sticky, { pool: 'shop', key: { header: 'x-session' } })
  const withDefaults = settingsOf(`${POOLS}${ROUTES}defaults: { key: { header: x-user }, idleTimeout: 5m }\n`)
  t.equal(withDefaults.plugin.defaults, undefined, 'defaults are applied by each route, not registered (a reload can change them)')
  t.same(withDefaults.file!.routes[0].sticky, { key: { header: 'x-user' }, idleTimeout: '5m', pool: 'shop' })
  t.throws(() => settingsOf(`${POOLS}${ROUTES}defaults: { failover: sometimes }\n`), { message: /^gateway\.yaml: defaults\.failover must be one of/ })
  const handoff = settingsOf(`${POOLS}${ROUTES}handoff: { secret: "\${HANDOFF_SECRET}", hold: 300ms }\n`, { HANDOFF_SECRET: SECRET })
  t.same(handoff.plugin.handoff, { secret: SECRET, hold: '300ms' }, 'handoff goes to the plugin as written')
  t.equal(resolveOptions(handoff.plugin).handoff?.holdMs, 300)
  t.throws(() => settingsOf(`${POOLS}${ROUTES}handoff: { secret: "\${HANDOFF_SECRET}" }\n`, { HANDOFF_SECRET: 'short' }), { message: /^gateway\.yaml: handoff\.secret must be a string of at least 32 characters, got "5 characters"$/ })
  const memory = settingsOf(`${POOLS}${ROUTES}`)
  t.equal(memory.generatedSecret, true, 'without redis a random secret is made, as with the environment')
})

t.test('the route table: the most specific route wins, whatever the file order', async (t) => {
  const table = new RouteTable([
    { match: {}, payload: 'everything' },
    { match: { prefix: '/shop' }, payload: 'shop' },
    { match: { prefix: '/shop/cart/' }, payload: 'cart' },
    { match: { path: '/shop/:id/reviews' }, payload: 'reviews' },
    { match: { path: '/shop/special/reviews' }, payload: 'exact' },
    { match: { prefix: '/shop', methods: ['POST'] }, payload: 'shop-post' },
    { match: { prefix: '/', host: '*.example.com' }, payload: 'wildcard-host' },
    { match: { prefix: '/', host: 'api.example.com' }, payload: 'api-host' },
    { match: { path: '/files/*' }, payload: 'files' }
  ])
  const cases: Array<[string, string, string, string]> = [
    ['GET', 'gw.local', '/', 'everything'],
    ['GET', 'gw.local', '/shop', 'shop'],
    ['GET', 'gw.local', '/shop/', 'shop'],
    ['GET', 'gw.local', '/shopping', 'everything'],
    ['GET', 'gw.local', '/shop/cart/1?x=/y', 'cart'],
    ['GET', 'gw.local', '/shop/cart', 'cart'],
    ['GET', 'gw.local', '/shop/42/reviews', 'reviews'],
    ['GET', 'gw.local', '/shop/special/reviews', 'exact'],
    ['POST', 'gw.local', '/shop/x', 'shop-post'],
    ['GET', 'www.example.com', '/shop', 'wildcard-host'],
    ['GET', 'API.example.com', '/shop', 'api-host'],
    ['GET', 'example.com', '/shop', 'shop'],
    ['GET', 'gw.local', '/files/a/b/c', 'files'],
    ['GET', 'gw.local', '/files/', 'files'],
    ['GET', 'evil.com/.example.com', '/shop', 'shop'],
    ['GET', 'evil.com?.example.com', '/shop', 'shop'],
    ['GET', 'a.example.com:99:98', '/shop', 'shop']
  ]
  for (const [method, host, url, expected] of cases) t.equal(table.find(method, host, url), expected, `${method} ${host}${url}`)
  t.equal(new RouteTable([{ match: { prefix: '/a' }, payload: 1 }]).find('GET', 'h', '/b'), undefined, 'no route: undefined')
  const methods = new RouteTable([{ match: { methods: ['GET'] }, payload: 'get' }, { match: { methods: ['POST'] }, payload: 'post' }])
  t.same(['GET', 'HEAD', 'POST', 'PUT'].map((m) => methods.find(m, 'h', '/')), ['get', 'get', 'post', undefined], 'a route that takes GET takes HEAD')
})

t.test('the shipped examples validate, and docs/gateway.md documents every key of the schema', async (t) => {
  const root = join(__dirname, '..', '..')
  const env = { STICKY_SECRET: SECRET, REDIS_URL: 'redis://127.0.0.1:6379', ADMIN_TOKEN: 'admin-token-0123456789' }
  const example = readFileSync(join(root, 'examples', 'gateway', 'gateway.yaml'), 'utf8')
  t.ok(settingsOf(example, env, 'examples/gateway/gateway.yaml').file!.routes.length >= 3, 'examples/gateway/gateway.yaml')
  // The Kubernetes example carries its gateway config in a ConfigMap.
  const configMap = parseAllDocuments(readFileSync(join(root, 'examples', 'kubernetes', 'gateway.yaml'), 'utf8'))
    .map((document) => document.toJS() as { kind?: string, data?: Record<string, string> })
    .find((document) => document.kind === 'ConfigMap')
  const embedded = Object.values(configMap?.data ?? {})[0]
  t.ok(embedded !== undefined && settingsOf(embedded, env, 'kubernetes ConfigMap').file!.discovery.length > 0, 'the Kubernetes ConfigMap (DNS discovery)')
  const docs = readFileSync(join(root, 'docs', 'gateway.md'), 'utf8')
  for (const key of Object.keys(schema.properties)) t.match(docs, `### \`${key}\``, `docs/gateway.md: ${key}`)
})
