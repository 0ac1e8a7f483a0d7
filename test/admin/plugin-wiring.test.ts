import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { Writable } from 'node:stream'
import t, { type Test } from 'tap'
import Fastify from 'fastify'
import { register as globalRegistry, Registry } from 'prom-client'
import sticky from '../../lib/index'
import { METRIC_NAMES } from '../../lib/admin/metrics'
import { TEST_SECRET } from '../support/gateway'
import { CookieJar, get } from '../support/http'
import { startUpstreams } from '../support/upstreams'
import { ADMIN_TOKEN, parsePrometheus, sum } from './admin-gateway'

/** An upstream that misbehaves on every request: resets the connection, or never answers. */
async function startBrokenUpstream (t: Test, behaviour: 'reset' | 'hang'): Promise<string> {
  const server = http.createServer((request) => {
    if (behaviour === 'reset') request.socket.destroy()
  })
  t.teardown(() => new Promise<void>((resolve) => {
    server.closeAllConnections()
    server.close(() => resolve())
  }))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

t.test('admin and metrics options wire the admin API, the response hook and forward errors', async (t) => {
  const [a, b] = await startUpstreams(t, ['a', 'b'])
  const resetting = await startBrokenUpstream(t, 'reset')
  const hanging = await startBrokenUpstream(t, 'hang')
  const registry = new Registry()
  const logs: string[] = []
  const app = Fastify({ logger: { level: 'debug', stream: new Writable({ write (chunk, _e, done) { logs.push(String(chunk)); done() } }) } })
  t.teardown(() => app.close())
  await app.register(sticky, {
    secret: TEST_SECRET,
    pools: {
      shop: { upstreams: [{ id: a.id, url: a.url }, { id: b.id, url: b.url }] },
      resets: { upstreams: [{ id: 'r', url: resetting }] },
      hangs: { upstreams: [{ id: 'h', url: hanging }] },
      empty: { upstreams: [{ id: 'e', url: a.url }] }
    },
    defaults: { pool: 'shop' },
    timeouts: { headers: 300 },
    admin: { token: ADMIN_TOKEN },
    metrics: { registry }
  })
  app.all('/resets/*', { config: { sticky: { pool: 'resets' } } }, (_q, reply) => reply.forward())
  app.all('/hangs/*', { config: { sticky: { pool: 'hangs' } } }, (_q, reply) => reply.forward())
  app.all('/empty/*', { config: { sticky: { pool: 'empty' } } }, (_q, reply) => reply.forward())
  app.all('/*', { config: { sticky: true } }, (_q, reply) => reply.forward())
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  await app.sticky.drain('empty', 'e')

  const jar = new CookieJar()
  for (let i = 0; i < 4; i++) t.equal((await get(`${url}/cart`, { jar })).status, 200)
  t.equal((await get(`${url}/resets/x`)).status, 502)
  t.equal((await get(`${url}/hangs/x`)).status, 504)
  t.equal((await get(`${url}/empty/x`)).status, 503)

  const scrape = await get(`${url}/_sticky/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
  t.equal(scrape.status, 200)
  const samples = parsePrometheus(scrape.body)
  t.equal(sum(samples, METRIC_NAMES.requests, { pool: 'shop', route: '/*', decision: 'new' }), 1)
  t.equal(sum(samples, METRIC_NAMES.requests, { pool: 'shop', route: '/*', decision: 'hit' }), 3)
  t.equal(sum(samples, METRIC_NAMES.requests, { pool: 'empty', route: '/empty/*', decision: 'unavailable' }), 1)
  t.equal(sum(samples, METRIC_NAMES.forwardErrors, { pool: 'resets', status: '502' }), 1, 'a reset upstream: 502')
  t.equal(sum(samples, METRIC_NAMES.forwardErrors, { pool: 'hangs', status: '504' }), 1, 'a silent upstream: 504')
  t.equal(sum(samples, METRIC_NAMES.forwardErrors, { pool: 'empty', status: '503' }), 1, 'no upstream: 503')
  t.ok(sum(samples, METRIC_NAMES.storeDuration + '_count', { operation: 'get' }) >= 3, 'the store is instrumented')
  t.equal(sum(samples, METRIC_NAMES.sessions, { pool: 'shop' }), 1)

  const upstreams = await get(`${url}/_sticky/upstreams`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
  t.match(upstreams.json(), [{ pool: 'shop', id: 'a' }, { pool: 'shop', id: 'b' }, { pool: 'resets', id: 'r' }, { pool: 'hangs', id: 'h' }, { pool: 'empty', id: 'e', state: 'draining' }])
  t.same(upstreams.setCookies, [], 'admin routes are not sticky')
  t.equal((await get(`${url}/_sticky/upstreams`)).status, 401)
  t.equal((await get(`${url}/_sticky/`)).status, 200, 'the status page')
  t.equal(a.hits + b.hits, 4, 'no admin request was proxied')

  const routed = logs.filter((line) => line.includes('fastify-sticky: routed')).map((line) => JSON.parse(line) as Record<string, unknown>)
  t.ok(routed.length >= 4, 'every decision is logged at debug')
  t.match(routed[0], { level: 20, reqId: /.+/, pool: 'shop', upstream: /^[ab]$/, decision: 'new' })
  const value = jar.get('sticky') as string
  t.notOk(logs.some((line) => line.includes(value) || line.includes(value.split('.')[1])), 'never the cookie nor its binding id')
  t.notOk(logs.some((line) => line.includes(ADMIN_TOKEN)), 'never the token')
})

t.test('metrics: true uses the global registry, once per process, and gives it back on close', async (t) => {
  const [a] = await startUpstreams(t, ['a'])
  const options = { secret: TEST_SECRET, pools: { shop: { upstreams: [{ id: a.id, url: a.url }] } }, metrics: true }
  const first = Fastify()
  await first.register(sticky, options)
  await first.ready()
  t.ok(globalRegistry.getSingleMetric(METRIC_NAMES.requests), 'registered globally')
  const second = Fastify()
  await t.rejects(async () => { await second.register(sticky, options).ready() }, { code: 'FST_STICKY_INVALID_OPTION', message: /metrics\.registry already holds sticky_\* metrics/ })
  await second.close()
  await first.close()
  t.equal(globalRegistry.getSingleMetric(METRIC_NAMES.requests), undefined, 'removed on close')
  const third = Fastify()
  t.teardown(() => third.close())
  await third.register(sticky, options)
  await third.ready()
  t.pass('registered again after the first closed')
})

t.test('without admin and metrics nothing is added: /_sticky is an ordinary path', async (t) => {
  const [a] = await startUpstreams(t, ['a'])
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(sticky, { secret: TEST_SECRET, pools: { shop: { upstreams: [{ id: a.id, url: a.url }] } } })
  app.all('/*', { config: { sticky: true } }, (_q, reply) => reply.forward())
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  t.equal((await get(`${url}/_sticky/upstreams`)).json().upstream, 'a', 'proxied like any path')
  t.equal(globalRegistry.getSingleMetric(METRIC_NAMES.requests), undefined)
  await t.rejects(async () => {
    const bad = Fastify()
    try {
      await bad.register(sticky, { secret: TEST_SECRET, pools: { shop: { upstreams: [{ id: a.id, url: a.url }] } }, admin: { token: 'short' } }).ready()
    } finally {
      await bad.close()
    }
  }, { code: 'FST_STICKY_INVALID_OPTION', message: /admin\.token must be a string of at least 16 characters/ })
})
