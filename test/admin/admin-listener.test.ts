/**
 * Issue #16 finding 3: on the proxied applications' origin, any of their pages' scripts can call the admin API (and
 * once read the status page's token). `admin.listen` serves the admin API, status page and metrics on a listener of
 * their own, and nothing of them on the public app.
 */
import net from 'node:net'
import { Writable } from 'node:stream'
import t, { type Test } from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import { Registry } from 'prom-client'
import type { AdminUpstreamView } from '../../lib/admin/routes'
import sticky, { type StickyPluginOptions } from '../../lib/index'
import { openBrowser } from '../support/browser'
import { TEST_SECRET } from '../support/gateway'
import { CookieJar, get } from '../support/http'
import { startUpstreams, type TestUpstream } from '../support/upstreams'
import { ADMIN_TOKEN } from './admin-gateway'

const AUTH = { authorization: `Bearer ${ADMIN_TOKEN}` }
const hits = (upstreams: TestUpstream[]): number => upstreams.reduce((total, u) => total + u.hits, 0)

interface Gateway {
  readonly app: FastifyInstance
  readonly logs: string[]
}

/** A gateway whose only routes are sticky `/shop/*`: any other path is the app's own 404. */
async function startGateway (t: Test, upstreams: TestUpstream[], admin: StickyPluginOptions['admin']): Promise<Gateway> {
  const logs: string[] = []
  const app = Fastify({ logger: { level: 'info', stream: new Writable({ write (chunk, _e, done) { logs.push(String(chunk)); done() } }) } })
  t.teardown(() => app.close())
  await app.register(sticky, {
    secret: TEST_SECRET,
    pools: { shop: { upstreams: upstreams.map((u) => ({ id: u.id, url: u.url })) } },
    admin,
    metrics: { registry: new Registry() }
  })
  app.all('/shop/*', { config: { sticky: true } }, (_request, reply) => reply.forward())
  return { app, logs }
}

t.test('admin.listen is checked at register, naming the option', async (t) => {
  const cases: Array<[unknown, RegExp]> = [
    [9090, /admin\.listen must be an object \{ port, host\? \}, got 9090/],
    [{}, /admin\.listen\.port must be a port number from 0 to 65535/],
    [{ port: -1 }, /admin\.listen\.port must be a port number from 0 to 65535 \(0: any free port\), got -1/],
    [{ port: 65536 }, /admin\.listen\.port .* got 65536/],
    [{ port: '9090' }, /admin\.listen\.port .* got "9090"/],
    [{ port: 90.5 }, /admin\.listen\.port/],
    [{ port: 9090, host: '' }, /admin\.listen\.host must be an IP address or a host name, got ""/],
    [{ port: 9090, host: 'a b' }, /admin\.listen\.host .* got "a b"/],
    [{ port: 9090, host: 127001 }, /admin\.listen\.host/],
    [{ port: 9090, address: '127.0.0.1' }, /admin\.listen\.address is not a known option \(known: port, host\)/]
  ]
  for (const [listen, message] of cases) {
    const app = Fastify()
    await t.rejects(async () => {
      await app.register(sticky, { secret: TEST_SECRET, pools: { shop: { upstreams: [{ id: 'a', url: 'http://127.0.0.1:9' }] } }, admin: { token: ADMIN_TOKEN, listen: listen as never } }).ready()
    }, { code: 'FST_STICKY_INVALID_OPTION', message }, JSON.stringify(listen))
    await app.close()
  }
})

t.test('admin.listen: the admin API, status page and metrics on their own port, nothing of them on the public one', async (t) => {
  const upstreams = await startUpstreams(t, ['a', 'b'])
  const gw = await startGateway(t, upstreams, { token: ADMIN_TOKEN, listen: { port: 0 } })
  t.equal(gw.app.sticky.admin, undefined, 'not listening before the app is ready')
  const url = await gw.app.listen({ host: '127.0.0.1', port: 0 })
  const admin = gw.app.sticky.admin
  t.match(admin, { address: /^http:\/\/127\.0\.0\.1:\d+$/, url: /^http:\/\/127\.0\.0\.1:\d+\/_sticky\/$/ }, 'loopback by default')
  if (admin === undefined) return
  t.not(admin.address, url, 'another port than the app\'s')
  t.ok(gw.logs.some((line) => line.includes('fastify-sticky: admin listening') && line.includes(admin.url)), 'logged with its URL')

  const jar = new CookieJar()
  const client = (await get(`${url}/shop/cart`, { jar })).json().upstream as string
  t.ok(client === 'a' || client === 'b', 'the app proxies its sticky routes')
  const before = hits(upstreams)

  const list = await get(`${admin.url}upstreams`, { headers: AUTH })
  t.equal(list.status, 200, 'the API answers on the admin port with the token')
  t.same(list.json<AdminUpstreamView[]>().map((u) => [u.id, u.state, u.sessions]), [['a', 'active', client === 'a' ? 1 : 0], ['b', 'active', client === 'b' ? 1 : 0]])
  t.equal((await get(`${admin.url}upstreams`)).status, 401, 'and only with it')
  const page = await get(admin.url)
  t.equal(page.status, 200, 'the status page')
  t.match(page.headers['content-security-policy'], /default-src 'none'/)
  const metrics = await get(`${admin.url}metrics`, { headers: AUTH })
  t.equal(metrics.status, 200)
  t.match(metrics.body, /sticky_requests_total\{[^}]*decision="new"[^}]*\} 1/, 'the metrics, with the app\'s traffic')
  const cookie = jar.get('sticky') as string
  t.equal((await get(`${admin.url}bindings/${cookie}`, { headers: AUTH })).json().upstream, client, 'binding look-ups')
  const drained = await get(`${admin.url}upstreams/${client}/drain`, { method: 'POST', headers: { ...AUTH, 'x-sticky-admin': '1' } })
  t.equal(drained.status, 200)
  t.equal(gw.app.sticky.state('shop', client), 'draining', 'a drain on the admin port drains the app\'s upstream')
  t.equal((await get(`${url}/shop/next`, { jar })).json().upstream, client, 'its bound client stays')

  for (const [method, path] of [['GET', '/'], ['GET', '/upstreams'], ['GET', '/metrics'], [`POST`, `/upstreams/${client}/undrain`], ['GET', `/bindings/${cookie}`], ['DELETE', `/bindings/${cookie}`]]) {
    const response = await get(`${url}/_sticky${path}`, { method, headers: { ...AUTH, 'x-sticky-admin': '1' } })
    t.equal(response.status, 404, `public ${method} /_sticky${path}: the app's own 404, even with the token`)
    t.same(response.json(), { message: `Route ${method}:/_sticky${path} not found`, error: 'Not Found', statusCode: 404 }, 'Fastify\'s not-found answer, nothing of the admin API')
  }
  t.equal(gw.app.sticky.state('shop', client), 'draining', 'the public port undrained nothing')
  t.equal(hits(upstreams), before + 1, 'and proxied nothing but the client\'s request')

  await gw.app.close()
  t.equal(gw.app.sticky.admin, undefined, 'forgotten when the app closes')
  await t.rejects(get(`${admin.url}upstreams`, { headers: AUTH, timeoutMs: 2000 }), 'the admin port is closed with the app')
})

t.test('admin.listen with a cookie authHook: the cookie is read there too, and state changes need the header', async (t) => {
  const upstreams = await startUpstreams(t, ['a'])
  const gw = await startGateway(t, upstreams, {
    listen: { port: 0, host: '127.0.0.1' },
    authHook: (request, reply, done) => {
      if (request.cookies['ops-session'] === 'ok') done()
      else reply.code(401).send({ statusCode: 401, error: 'Unauthorized', message: 'Unauthorized' })
    }
  })
  await gw.app.listen({ host: '127.0.0.1', port: 0 })
  const admin = gw.app.sticky.admin?.url as string
  t.equal((await get(`${admin}upstreams`)).status, 401)
  t.equal((await get(`${admin}upstreams`, { cookie: 'ops-session=ok' })).status, 200, '@fastify/cookie is on the admin listener')
  t.equal((await get(`${admin}upstreams/a/drain`, { method: 'POST', cookie: 'ops-session=ok' })).status, 403, 'cookie alone: refused')
  t.equal((await get(`${admin}upstreams/a/drain`, { method: 'POST', cookie: 'ops-session=ok', headers: { 'x-sticky-admin': '1' } })).status, 200)
  t.equal(gw.app.sticky.state('shop', 'a'), 'draining')
})

t.test('admin.listen on a port in use: ready() fails naming admin.listen and the address', async (t) => {
  const blocker = net.createServer()
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => blocker.close(() => resolve())))
  const port = (blocker.address() as net.AddressInfo).port
  const upstreams = await startUpstreams(t, ['a'])
  const gw = await startGateway(t, upstreams, { token: ADMIN_TOKEN, listen: { port } })
  await t.rejects(async () => { await gw.app.ready() }, { message: new RegExp(`^fastify-sticky: admin\\.listen cannot listen on 127\\.0\\.0\\.1:${port} \\(.*EADDRINUSE`) })
  t.equal(gw.app.sticky.admin, undefined)
})

t.test('the status page on the admin listener, in Chromium: sign in, drain, undrain', async (t) => {
  const upstreams = await startUpstreams(t, ['a', 'b'])
  const gw = await startGateway(t, upstreams, { token: ADMIN_TOKEN, listen: { port: 0 } })
  await gw.app.listen({ host: '127.0.0.1', port: 0 })
  const { page, errors } = await openBrowser(t)
  await page.goto(gw.app.sticky.admin?.url as string)
  await page.locator('#token').fill(ADMIN_TOKEN)
  await page.locator('#login-form button').click()
  await page.locator('tr[data-upstream="shop/b"] button[data-action="drain"]').click()
  await page.locator('tr[data-upstream="shop/b"] .state', { hasText: 'draining' }).waitFor()
  t.equal(gw.app.sticky.state('shop', 'b'), 'draining', 'the page\'s drain call carries what the API asks of it')
  await page.locator('tr[data-upstream="shop/b"] button[data-action="undrain"]').click()
  await page.locator('tr[data-upstream="shop/b"] .state', { hasText: 'active' }).waitFor()
  t.equal(gw.app.sticky.state('shop', 'b'), 'active')
  t.same(errors, [], 'no console errors, CSP violations or uncaught exceptions')
})
