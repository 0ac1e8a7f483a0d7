import net from 'node:net'
import t from 'tap'
import Redis from 'ioredis'
import { PROBATION_TTL_MS } from '../../lib/affinity/store-walk'
import { startGateway } from '../support/gateway'
import { CookieJar, get } from '../support/http'
import { startRedis, uniquePrefix } from '../support/redis'
import { startUpstreams } from '../support/upstreams'

// Sends raw bytes (with `Connection: close`) and returns the whole answer, for requests a normal client will not make.
async function rawRequest (url: string, request: string): Promise<string> {
  const { port } = new URL(url)
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), '127.0.0.1', () => socket.write(request))
    let data = ''
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => { data += chunk })
    socket.on('end', () => resolve(data))
    socket.on('error', reject)
  })
}

t.test('one routing cookie per pool: switching pools keeps both bindings', async (t) => {
  const upstreams = await startUpstreams(t, ['a', 'b', 'm1', 'm2'])
  const gateway = await startGateway(t, {
    pools: {
      shop: { upstreams: [{ id: 'a', url: upstreams[0].url }, { id: 'b', url: upstreams[1].url }] },
      models: { upstreams: [{ id: 'm1', url: upstreams[2].url }, { id: 'm2', url: upstreams[3].url }] }
    },
    defaults: { pool: 'shop' },
    routes (app) {
      app.all('/shop/*', { config: { sticky: true } }, (_request, reply) => reply.forward())
      app.all('/models/*', { config: { sticky: { pool: 'models' } } }, (_request, reply) => reply.forward())
    }
  })
  const jar = new CookieJar()
  const shop = (await get(`${gateway.url}/shop/1`, { jar })).json().upstream
  const models = (await get(`${gateway.url}/models/1`, { jar })).json().upstream
  t.ok(['a', 'b'].includes(shop) && ['m1', 'm2'].includes(models), 'each route reaches its own pool')
  t.ok(jar.has('sticky') && jar.has('sticky-models'), 'the default pool uses `sticky`, the other `sticky-models`')
  for (let i = 0; i < 3; i++) {
    const a = await get(`${gateway.url}/shop/${i}`, { jar })
    const m = await get(`${gateway.url}/models/${i}`, { jar })
    t.same([a.json().upstream, m.json().upstream, a.setCookies.length + m.setCookies.length], [shop, models, 0], 'both bindings hold, no new cookies')
  }
  t.equal(gateway.app.sticky.stats.invalidCookie['unknown-upstream'], 0)
})

t.test('what the upstream receives: no routing cookie, X-Forwarded-*, no Expect', async (t) => {
  const upstreams = await startUpstreams(t, ['a'])
  const gateway = await startGateway(t, { upstreams })
  const jar = new CookieJar()
  await get(`${gateway.url}/`, { jar })
  const echo = (await get(`${gateway.url}/x`, { jar, cookie: 'app=1; xsticky=keep', headers: { 'x-forwarded-for': '203.0.113.9', host: 'shop.example' } })).json()
  t.equal(echo.headers.cookie, 'app=1; xsticky=keep', 'the routing cookie is removed, the app\'s cookies are kept')
  t.equal(echo.headers['x-forwarded-for'], '127.0.0.1', 'without trustProxy the client\'s X-Forwarded-For is replaced by its address')
  t.equal(echo.headers['x-forwarded-proto'], 'http')
  t.equal(echo.headers['x-forwarded-host'], 'shop.example')
  const only = (await get(`${gateway.url}/x`, { jar })).json()
  t.equal(only.headers.cookie, undefined, 'a Cookie header holding only the routing cookie is dropped')
  // curl sends Expect: 100-continue for bodies over 1 MB; a plain socket shows what the gateway does with it.
  const expect = await rawRequest(gateway.url, 'POST /x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello')
  t.match(expect, /HTTP\/1\.1 200 OK/, 'Expect: 100-continue is not a 502')
  t.match(expect, /"body":"hello"/)

  const passing = await startGateway(t, { upstreams, cookie: { forward: true }, xForwarded: false })
  const jar2 = new CookieJar()
  await get(`${passing.url}/`, { jar: jar2 })
  const raw = (await get(`${passing.url}/x`, { jar: jar2 })).json()
  t.match(raw.headers.cookie, /^sticky=/, 'cookie.forward: true passes it on')
  t.equal(raw.headers['x-forwarded-for'], undefined, 'xForwarded: false adds none')
})

t.test('several cookies of the routing name: the one that verifies is used', async (t) => {
  const upstreams = await startUpstreams(t)
  const gateway = await startGateway(t, { upstreams })
  const first = await get(`${gateway.url}/`)
  const valid = first.setCookies[0].split(';')[0].slice('sticky='.length)
  for (let i = 0; i < 4; i++) {
    const response = await get(`${gateway.url}/`, { headers: { cookie: `sticky=stale-${i}; sticky=${valid}` } })
    t.equal(response.json().upstream, first.json().upstream)
    t.equal(response.setCookies.length, 0, 'no new binding, no new cookie')
  }
})

t.test('request targets reply-from cannot forward are a 400, never a 500', async (t) => {
  const upstreams = await startUpstreams(t, ['a'])
  const gateway = await startGateway(t, { upstreams })
  const absolute = await rawRequest(gateway.url, 'GET http://evil.example:80/abs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
  t.match(absolute, /^HTTP\/1\.1 400 /, 'absolute-form target')
  t.match(absolute, /FST_STICKY_BAD_REQUEST_TARGET/)
  const dots = await rawRequest(gateway.url, 'GET /a/%2e%2e/%2e%2e/etc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
  t.match(dots, /^HTTP\/1\.1 400 /, 'dot segments')
})

t.test('new clients are on probation until they come back with their cookie', async (t) => {
  const redis = await startRedis(t)
  const upstreams = await startUpstreams(t)
  const prefix = uniquePrefix()
  const gateway = await startGateway(t, { upstreams, redis: redis.url, prefix })
  const client = new Redis(redis.url)
  t.teardown(() => client.disconnect())
  const jar = new CookieJar()
  await get(`${gateway.url}/`, { jar })
  const [key] = await client.keys(prefix + '*:b:*')
  t.ok((await client.pttl(key)) <= PROBATION_TTL_MS, 'a first request binds for the probation time only')
  await get(`${gateway.url}/`, { jar })
  let extended = false
  for (let i = 0; i < 50 && !extended; i++) {
    extended = (await client.pttl(key)) > PROBATION_TTL_MS
    if (!extended) await new Promise((resolve) => setTimeout(resolve, 50))
  }
  t.ok(extended, 'coming back with the cookie extends it to the idle timeout')
})
