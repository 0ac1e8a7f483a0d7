import { once } from 'node:events'
import t from 'tap'
import WebSocket from 'ws'
import { startPrefixProxyExample } from '../../examples/prefix-proxy/index'
import { startExampleProcess } from '../support/example-process'
import { CookieJar, get } from '../support/http'

t.test('the prefix-proxy example: /shop and /api to two echo upstreams with stickyProxy', async (t) => {
  const trace: string[] = []
  const example = await startPrefixProxyExample({ port: 0, upstreamPorts: [0, 0], trace: (line) => { trace.push(line) } })
  t.teardown(() => example.close())
  const { url } = example
  t.same(example.upstreams.map((u) => u.id), ['a', 'b'])

  t.test('/shop: a visitor stays on one upstream, which counts its visits and sees the prefix kept', async (t) => {
    const jar = new CookieJar()
    const first = await get(`${url}/shop`, { jar })
    t.equal(first.status, 200)
    t.ok(jar.has('sticky') && jar.has('echo_sid'), 'the routing cookie and the app\'s own session cookie')
    const upstream = first.json().upstream as string
    t.same([first.json().visits, first.json().url], [1, '/shop'])
    for (let i = 2; i <= 5; i++) {
      const post = i % 2 === 0
      // A form body: the proxies' pass-through parser takes any content type.
      const again = await get(`${url}/shop/cart?n=${i}`, { jar, method: post ? 'POST' : 'GET', body: post ? 'item=7' : undefined, headers: post ? { 'content-type': 'application/x-www-form-urlencoded' } : {} })
      t.same([again.status, again.json().upstream, again.json().visits, again.json().url, again.setCookies.length], [200, upstream, i, `/shop/cart?n=${i}`, 0], `visit ${i}: same upstream, the count goes on, no new cookie`)
    }
    t.ok(trace.includes(`GET /shop → upstream ${upstream} (new) 200`) && trace.includes(`GET /shop/cart?n=5 → upstream ${upstream} (hit) 200`), 'one trace line per request')
  })

  t.test('/shop: visitors without cookies are spread over both upstreams', async (t) => {
    const seen = new Set<string>()
    // Bounded: new visitors are balanced, so both show up within a few requests.
    for (let i = 0; i < 10 && seen.size < 2; i++) {
      const response = await get(`${url}/shop/`)
      t.equal(response.json().visits, 1, 'each one a new visitor there')
      seen.add(response.json().upstream)
    }
    t.same([...seen].sort(), ['a', 'b'])
  })

  t.test('/shop: a WebSocket reaches the visitor\'s upstream', async (t) => {
    const jar = new CookieJar()
    const upstream = (await get(`${url}/shop/`, { jar })).json().upstream as string
    // Several sockets, so a lucky 50% guess would not pass.
    for (let i = 0; i < 3; i++) {
      const ws = new WebSocket(url.replace('http:', 'ws:') + '/shop/live', { headers: { cookie: jar.header() } })
      await once(ws, 'open')
      ws.send(`hi ${i}`)
      const [message] = await once(ws, 'message')
      t.equal(String(message), `${upstream}: hi ${i}`)
      ws.close()
      await once(ws, 'close')
    }
  })

  t.test('/api: the prefix stripped, sticky by x-tenant with no routing cookie', async (t) => {
    const first = await get(`${url}/api/orders?page=2`, { headers: { 'x-tenant': 'acme' } })
    t.equal(first.status, 200)
    t.equal(first.json().url, '/orders?page=2', 'rewritePrefix \'\': the upstream sees the path without /api')
    t.equal((await get(`${url}/api`, { headers: { 'x-tenant': 'acme' } })).json().url, '/', '/api is the upstream\'s /')
    t.notOk(first.setCookies.some((c) => c.startsWith('sticky=')), 'a header key sets no routing cookie')
    const acme = first.json().upstream as string
    // An API client that does keep the app's cookie: its count goes on, always on the tenant's upstream.
    const jar = new CookieJar()
    for (let i = 1; i <= 4; i++) {
      const again = await get(`${url}/api/orders/${i}`, { jar, headers: { 'x-tenant': 'acme' } })
      t.same([again.json().upstream, again.json().visits, again.json().url], [acme, i, `/orders/${i}`], `request ${i} of tenant acme`)
    }
    t.notOk(jar.has('sticky'), 'still no routing cookie')
    const tenants = new Set<string>()
    // Bounded: new tenants are balanced like new visitors.
    for (let i = 0; i < 10 && tenants.size < 2; i++) tenants.add((await get(`${url}/api/x`, { headers: { 'x-tenant': `tenant-${i}` } })).json().upstream)
    t.same([...tenants].sort(), ['a', 'b'], 'tenants are spread over both')
    t.equal((await get(`${url}/api/x`, { headers: { 'x-tenant': 'acme' } })).json().upstream, acme, 'and acme stays put')
  })

  t.test('the gateway\'s own route, outside the prefixes', async (t) => {
    t.same((await get(`${url}/healthz`)).json(), { ok: true })
    t.equal((await get(`${url}/elsewhere`)).status, 404, 'only /shop and /api are proxied')
  })
})

t.test('npx tsx examples/prefix-proxy/index.ts: prints what to open, proxies, stops on Ctrl-C', async (t) => {
  const example = startExampleProcess(t, 'examples/prefix-proxy/index.ts', { PORT: '0', UPSTREAM_PORTS: '0,0' })
  const { waitFor } = example
  const [, url] = await waitFor(/^fastify-sticky prefix-proxy example: open (http:\/\/127\.0\.0\.1:\d+)\/shop\/ or \1\/api\/ with x-tenant \(upstreams a, b; in-memory store\)\. Ctrl-C to stop\.$/m)
  const jar = new CookieJar()
  const first = await get(`${url}/shop/`, { jar })
  const again = await get(`${url}/shop/x`, { jar })
  t.same([first.status, again.json().upstream, again.json().visits, again.json().url, again.setCookies.length], [200, first.json().upstream, 2, '/shop/x', 0])
  t.equal((await get(`${url}/api/x`, { headers: { 'x-tenant': 'acme' } })).json().url, '/x', '/api without its prefix')
  t.ok(await waitFor(/^ {2}GET \/shop\/x → upstream [ab] \(hit\) 200$/m), 'traced')
  t.equal(await example.interrupt(), 0, 'Ctrl-C closes cleanly')
  t.match(example.output().out, /stopping\n$/)
  t.equal(example.output().err, '', 'nothing on stderr')
})
