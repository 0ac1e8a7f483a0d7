import fastifyCookie from '@fastify/cookie'
import Fastify from 'fastify'
import net from 'node:net'
import t from 'tap'
import { createRoutingCookieCodec, newBindingId } from '../../lib/affinity/routing-cookie'
import sticky from '../../lib/index'
import { startGateway, TEST_SECRET } from '../support/gateway'
import { CookieJar, get } from '../support/http'
import { startUpstreams } from '../support/upstreams'

function routingCookie (setCookies: string[], name = 'sticky'): string | undefined {
  return setCookies.find((line) => line.startsWith(name + '='))
}

t.test('first response sets the routing cookie; later requests reach the same upstream', async (t) => {
  const upstreams = await startUpstreams(t)
  const gateway = await startGateway(t, { upstreams })
  const jar = new CookieJar()
  const first = await get(`${gateway.url}/cart?x=1`, { jar })
  t.equal(first.status, 200)
  const line = routingCookie(first.setCookies)
  t.ok(line, 'a routing cookie on the first response')
  t.match(line, /; Path=\//)
  t.match(line, /; HttpOnly/)
  t.match(line, /; SameSite=Lax/)
  t.notMatch(line, /Secure/, 'not Secure over plain HTTP')
  t.notMatch(line, /Max-Age|Expires/, 'a session cookie by default')
  const upstream = first.json().upstream
  t.equal(first.json().url, '/cart?x=1', 'path and query forwarded')
  for (let i = 0; i < 10; i++) {
    const again = await get(`${gateway.url}/cart`, { jar })
    t.equal(again.json().upstream, upstream, `request ${i + 2} on the same upstream`)
    t.equal(routingCookie(again.setCookies), undefined, 'no new cookie while bound')
  }
  t.equal(gateway.app.sticky.stats.new, 1)
  t.equal(gateway.app.sticky.stats.hit, 10)
})

t.test('the cookie reveals no upstream address, even decoded', async (t) => {
  const upstreams = await startUpstreams(t)
  const gateway = await startGateway(t, { upstreams })
  for (let i = 0; i < 6; i++) {
    const response = await get(`${gateway.url}/`)
    const value = decodeURIComponent((routingCookie(response.setCookies) ?? '').split(';')[0].split('=').slice(1).join('='))
    const decodedParts = value.split('.').map((part) => Buffer.from(part, 'base64').toString('latin1') + Buffer.from(part, 'base64url').toString('latin1'))
    for (const u of upstreams) {
      for (const needle of ['127.0.0.1', String(u.port), u.url]) {
        t.notOk(value.includes(needle), `cookie has no ${needle}`)
        t.notOk(decodedParts.some((p) => p.includes(needle)), `decoded cookie has no ${needle}`)
      }
    }
  }
})

t.test('new sessions go to the upstream with the fewest sessions, weights respected', async (t) => {
  const upstreams = await startUpstreams(t)
  const gateway = await startGateway(t, {
    pools: { shop: { upstreams: [{ id: 'a', url: upstreams[0].url, weight: 2 }, { id: 'b', url: upstreams[1].url }, { id: 'c', url: upstreams[2].url }] } },
    newBindings: false // forty new sessions from one address: past the default per-client budget
  })
  const seen: Record<string, number> = { a: 0, b: 0, c: 0 }
  for (let i = 0; i < 40; i++) seen[(await get(`${gateway.url}/`)).json().upstream]++
  t.same(seen, { a: 20, b: 10, c: 10 }, 'weight 2 gets twice the sessions')
  t.same(await gateway.app.sticky.sessionCounts('shop'), { a: 20, b: 10, c: 10 }, 'store-wide counts agree')
  await t.rejects(gateway.app.sticky.sessionCounts('nope'), { code: 'FST_STICKY_UNKNOWN_POOL', message: /no pool named "nope"/, statusCode: 404 })
  // The API's errors are coded, so a route that passes an operator's input through answers 404/409, not 500.
  const api = gateway.app.sticky
  t.throws(() => api.pool('nope'), { code: 'FST_STICKY_UNKNOWN_POOL' })
  t.throws(() => api.state('shop', 'zz'), { code: 'FST_STICKY_UNKNOWN_UPSTREAM', message: /pool "shop" has no upstream "zz"/ })
  await t.rejects(api.drain('shop', 'zz'), { code: 'FST_STICKY_UNKNOWN_UPSTREAM' })
  await t.rejects(api.sessions('nope', 'a'), { code: 'FST_STICKY_UNKNOWN_POOL' })
  await t.rejects(api.pool('shop').remove('zz'), { code: 'FST_STICKY_UNKNOWN_UPSTREAM' })
  await t.rejects(api.pool('shop').add({ id: 'a', url: upstreams[0].url }), { code: 'FST_STICKY_UPSTREAM_EXISTS', statusCode: 409 })
})

t.test('forged, garbled, oversized and unknown-upstream cookies: 2xx and a fresh cookie', async (t) => {
  const upstreams = await startUpstreams(t)
  const logs: string[] = []
  const gateway = await startGateway(t, { upstreams, fastify: { logger: { level: 'debug', stream: { write: (line: string) => { logs.push(line) } } } } })
  const good = createRoutingCookieCodec([TEST_SECRET])
  const other = createRoutingCookieCodec(['another-secret-0123456789-abcdefghijkl'])
  const bid = newBindingId()
  const valid = good.sign({ bindingId: bid, upstreamId: 'a', createdAt: Date.now() })
  const bad = [
    'garbage', '', '.', '..', '...', '1', '1.2.3.4.5', 'x'.repeat(300), 'x'.repeat(5000), '%', '%zz', '%00%01',
    '\u00e9\u00e8', valid.slice(0, -2), valid + 'x', valid.replace('.a.', '.b.'), valid.toUpperCase(),
    other.sign({ bindingId: bid, upstreamId: 'a', createdAt: Date.now() }),
    good.sign({ bindingId: bid, upstreamId: 'nope', createdAt: Date.now() }),
    good.sign({ bindingId: 'short', upstreamId: 'a', createdAt: Date.now() }),
    '1.' + bid + '.a.abc', ' ' + valid + ' ', '"' + valid + '"', 'sticky=nested', '=;=;=',
    '{"upstream":"a"}', '../../etc/passwd', '<script>'
  ]
  t.ok(bad.length >= 20)
  for (const value of bad) {
    const response = await get(`${gateway.url}/x`, { headers: { cookie: `sticky=${encodeURIComponent(value)}` } })
    t.equal(response.status, 200, `answered 200 for ${JSON.stringify(value.slice(0, 30))}`)
    t.ok(routingCookie(response.setCookies), 'with a fresh routing cookie')
  }
  const rejected = gateway.app.sticky.stats.invalidCookie
  t.ok(rejected['bad-signature'] + rejected.oversized + rejected['unknown-upstream'] + rejected.garbled >= bad.length - 2, 'counted')
  t.ok(rejected.oversized >= 2, 'oversized counted')
  t.ok(rejected['unknown-upstream'] >= 1, 'unknown upstream counted')
  t.ok(logs.some((l) => l.includes('affinity key ignored')), 'logged at debug')
  // repeated cookie names and raw junk in the Cookie header
  for (const header of ['sticky=a; sticky=b', 'sticky', ';;;', 'sticky=%E0%A4%A']) {
    const response = await get(`${gateway.url}/x`, { headers: { cookie: header } })
    t.equal(response.status, 200, `Cookie: ${header}`)
  }
})

t.test('a cookie signed by an older secret is honoured and re-issued under the newest', async (t) => {
  const upstreams = await startUpstreams(t)
  const oldSecret = 'the-old-secret-0123456789-abcdefghijklm'
  const before = await startGateway(t, { upstreams, secret: oldSecret })
  const first = await get(`${before.url}/`)
  const upstream = first.json().upstream
  const oldValue = (routingCookie(first.setCookies) as string).split(';')[0].slice('sticky='.length)
  await before.app.close()
  // The memory store died with the first gateway: the cookie alone brings the client back to its upstream.
  const after = await startGateway(t, { upstreams, secret: [TEST_SECRET, oldSecret] })
  const second = await get(`${after.url}/`, { cookie: `sticky=${oldValue}` })
  t.equal(second.json().upstream, upstream, 'same upstream')
  const renewed = routingCookie(second.setCookies)
  t.ok(renewed, 're-issued')
  const renewedValue = decodeURIComponent((renewed as string).split(';')[0].slice('sticky='.length))
  t.same(createRoutingCookieCodec([TEST_SECRET]).verify(renewedValue).ok, true, 'signed by the newest secret')
  const third = await get(`${after.url}/`, { cookie: `sticky=${encodeURIComponent(renewedValue)}` })
  t.equal(third.json().upstream, upstream)
  t.equal(routingCookie(third.setCookies), undefined, 'no more re-issue')
})

t.test('cookie options, and Secure behind a trusted proxy saying https', async (t) => {
  const upstreams = await startUpstreams(t)
  const gateway = await startGateway(t, {
    upstreams,
    fastify: { trustProxy: true },
    cookie: { name: 'route', path: '/app', maxAge: '1h', sameSite: 'strict', domain: 'example.test' }
  })
  const response = await get(`${gateway.url}/app/x`, { headers: { 'x-forwarded-proto': 'https' } })
  const line = routingCookie(response.setCookies, 'route') as string
  t.match(line, /; Secure/)
  t.match(line, /; Max-Age=3600/)
  t.match(line, /; Path=\/app/)
  t.match(line, /; Domain=example.test/)
  t.match(line, /; SameSite=Strict/)
  const untrusted = await startGateway(t, { upstreams })
  const plain = await get(`${untrusted.url}/`, { headers: { 'x-forwarded-proto': 'https' } })
  t.notMatch(routingCookie(plain.setCookies), /Secure/, 'X-Forwarded-Proto ignored without trustProxy')
})

t.test('stateless routes: key:false and sticky:false balance round robin without cookies', async (t) => {
  const upstreams = await startUpstreams(t)
  const gateway = await startGateway(t, {
    upstreams,
    routes (app) {
      app.get('/assets/*', { config: { sticky: { key: false } } }, (_request, reply) => reply.forward())
      app.get('/plain/*', { config: { sticky: false } }, (_request, reply) => reply.forward())
      app.get('/local', async (request) => ({ sticky: request.sticky }))
    }
  })
  for (const path of ['/assets/x', '/plain/y']) {
    const seen = []
    for (let i = 0; i < 6; i++) {
      const response = await get(gateway.url + path)
      t.equal(routingCookie(response.setCookies), undefined, `${path}: no cookie`)
      seen.push(response.json().upstream)
    }
    t.same(seen.slice(0, 3).sort(), ['a', 'b', 'c'], `${path}: each upstream in turn`)
    t.same(seen.slice(3), seen.slice(0, 3), `${path}: then again in the same order`)
  }
  t.same((await get(gateway.url + '/local')).json(), { sticky: null }, 'routes that do not forward are untouched')
})

t.test('upstream failures answer 502/503/504 with a short JSON body, never a 500 or an address', async (t) => {
  const upstreams = await startUpstreams(t, ['a'])
  const down = await startGateway(t, { upstreams })
  await upstreams[0].close()
  const refused = await get(`${down.url}/x`)
  t.equal(refused.status, 503, 'the only upstream refuses: no upstream left')
  t.same(Object.keys(refused.json()).sort(), ['code', 'error', 'message', 'requestId', 'statusCode'])
  t.equal(refused.json().code, 'FST_STICKY_NO_UPSTREAM')
  t.equal(refused.headers['retry-after'], '10', 'Retry-After: the cool-down')
  t.notMatch(refused.body, /127\.0\.0\.1|ECONNREFUSED/, 'no internal detail')

  // An upstream that answers garbage: 502.
  const garbage = net.createServer((socket) => { socket.once('data', () => socket.end('this is not HTTP\r\n\r\n')) })
  await new Promise<void>((resolve) => garbage.listen(0, '127.0.0.1', resolve))
  t.teardown(() => garbage.close())
  const bad = await startGateway(t, { pools: { shop: { upstreams: [{ id: 'g', url: `http://127.0.0.1:${(garbage.address() as net.AddressInfo).port}` }] } } })
  const badResponse = await get(`${bad.url}/x`)
  t.equal(badResponse.status, 502)
  t.equal(badResponse.json().code, 'FST_STICKY_BAD_GATEWAY')
  t.equal(typeof badResponse.json().requestId, 'string')

  // An upstream that accepts but never answers: 504 after the headers timeout.
  const hanging = await startUpstreams(t, ['slow'])
  hanging[0].server.removeAllListeners('request')
  hanging[0].server.on('request', () => { /* never answers */ })
  const slow = await startGateway(t, { upstreams: hanging, timeouts: { headers: 200 } })
  const started = Date.now()
  const timedOut = await get(`${slow.url}/x`)
  t.equal(timedOut.status, 504)
  t.equal(timedOut.json().code, 'FST_STICKY_UPSTREAM_TIMEOUT')
  t.ok(Date.now() - started < 3000, 'within the configured timeout, not undici\'s 300 s')
})

t.test('request bodies stream through; methods pass', async (t) => {
  const upstreams = await startUpstreams(t, ['a'])
  const gateway = await startGateway(t, {
    upstreams,
    routes (app) {
      app.removeAllContentTypeParsers()
      app.addContentTypeParser('*', (_request, payload, done) => { done(null, payload) })
      app.all('/*', { config: { sticky: true } }, (_request, reply) => reply.forward())
    }
  })
  const body = 'x'.repeat(200_000)
  const response = await get(`${gateway.url}/upload`, { method: 'PUT', body, headers: { 'content-type': 'application/octet-stream' } })
  t.equal(response.json().method, 'PUT')
  t.equal(response.json().body.length, body.length)
  const bad = await get(`${gateway.url}/%E0%A4%A`)
  t.not(bad.status, 500, 'a malformed path is not a 500')
})

t.test('cookiePlugin: false routes the same without @fastify/cookie; a failover replaces the new cookie, never adds one', async (t) => {
  const [b] = await startUpstreams(t, ['b'])
  const dead = await startUpstreams(t, ['a'])
  await dead[0].close()
  let seenCookies: unknown = 'unset'
  const gateway = await startGateway(t, {
    cookiePlugin: false,
    pools: { shop: { upstreams: [{ id: 'a', url: dead[0].url }, { id: 'b', url: b.url }] } },
    newBindings: false,
    routes: (app) => {
      app.all('/*', { config: { sticky: true } }, (request, reply) => {
        seenCookies = (request as unknown as { cookies?: unknown }).cookies
        return reply.forward()
      })
    }
  })
  t.notOk(gateway.app.hasPlugin('@fastify/cookie'), 'not registered')
  for (let i = 0; i < 4; i++) {
    // Upstream `b` sets a cookie of its own: it must reach the client beside ours.
    const jar = new CookieJar()
    const first = await get(`${gateway.url}/set-cookie/app/v${i}`, { jar })
    t.equal(first.status, 200)
    t.equal(first.json().upstream, 'b', 'the dead upstream was failed over')
    const ours = first.setCookies.filter((line) => line.startsWith('sticky='))
    t.equal(ours.length, 1, `one routing cookie (${first.setCookies.join(' | ')})`)
    t.ok(first.setCookies.some((line) => line.startsWith(`app=v${i}`)), 'the upstream\'s own cookie too')
    t.match(first.setCookies.at(-1), /^sticky=/, 'ours after the upstream\'s, as with @fastify/cookie (the last of one name wins)')
    t.match(first.headers['cache-control'], /private/, 'kept out of shared caches')
    const again = await get(`${gateway.url}/`, { jar })
    t.equal(again.json().upstream, 'b', 'the cookie it kept sticks')
    t.equal(again.json().headers.cookie, `app=v${i}`, 'the routing cookie is stripped, the app\'s passed on')
  }
  t.equal(String(seenCookies), 'undefined', 'request.cookies is left to the app (nothing parsed it)')

  const withPlugin = await startGateway(t, { pools: { shop: { upstreams: [{ id: 'b', url: b.url }] } } })
  t.ok(withPlugin.app.hasPlugin('@fastify/cookie'), 'registered by default, as documented')
  await t.rejects(startGateway(t, { cookiePlugin: 'no' as unknown as boolean, upstreams: [b] }), { code: 'FST_STICKY_INVALID_OPTION', message: /cookiePlugin/ })
})

t.test('with the app\'s own @fastify/cookie, the routing cookie is written through it: its parseOptions apply, and it comes last', async (t) => {
  const [a] = await startUpstreams(t, ['a'])
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(fastifyCookie, { parseOptions: { partitioned: true, priority: 'high' } })
  await app.register(sticky, { secret: TEST_SECRET, cookie: { secure: true, sameSite: 'none' }, pools: { shop: { upstreams: [{ id: 'a', url: a.url }] } } })
  app.all('/*', { config: { sticky: true } }, (_request, reply) => reply.forward())
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  const first = await get(`${url}/set-cookie/app/v1`)
  t.equal(first.setCookies.length, 2)
  t.match(first.setCookies[0], /^app=v1/)
  t.match(first.setCookies[1], /^sticky=.*; HttpOnly; Secure; Partitioned; Priority=High; SameSite=None$/, 'the app\'s parseOptions, as before')
})
