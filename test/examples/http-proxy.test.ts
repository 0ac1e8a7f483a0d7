import { once } from 'node:events'
import t from 'tap'
import WebSocket from 'ws'
import { startHttpProxyExample } from '../../examples/http-proxy/index'
import { startExampleProcess } from '../support/example-process'
import { CookieJar, get } from '../support/http'

t.test('the http-proxy example: two echo upstreams behind stickyHttpProxy on /shop', async (t) => {
  const trace: string[] = []
  const example = await startHttpProxyExample({ port: 0, upstreamPorts: [0, 0], trace: (line) => { trace.push(line) } })
  t.teardown(() => example.close())
  const { url } = example
  t.same(example.upstreams.map((u) => u.id), ['a', 'b'])

  t.test('a visitor stays on one upstream, which counts its visits; the upstream sees the path without /shop', async (t) => {
    const jar = new CookieJar()
    const first = await get(`${url}/shop`, { jar })
    t.equal(first.status, 200)
    t.ok(jar.has('sticky') && jar.has('echo_sid'), 'the routing cookie and the app\'s own session cookie')
    const upstream = first.json().upstream as string
    t.same([first.json().visits, first.json().url], [1, '/'], 'http-proxy\'s default rewritePrefix: /shop is /')
    for (let i = 2; i <= 5; i++) {
      const post = i % 2 === 0
      const again = await get(`${url}/shop/cart?n=${i}`, { jar, method: post ? 'POST' : 'GET', body: post ? 'item=7' : undefined, headers: post ? { 'content-type': 'application/x-www-form-urlencoded' } : {} })
      t.same([again.status, again.json().upstream, again.json().visits, again.json().url, again.setCookies.length], [200, upstream, i, `/cart?n=${i}`, 0], `visit ${i}: same upstream, the count goes on, no new cookie`)
    }
    t.ok(trace.includes(`GET /shop → upstream ${upstream} (new) 200`) && trace.includes(`GET /shop/cart?n=5 → upstream ${upstream} (hit) 200`), 'one trace line per request, with the public path')
  })

  t.test('visitors without cookies are spread over both upstreams', async (t) => {
    const seen = new Set<string>()
    // Bounded: new visitors are balanced, so both show up within a few requests.
    for (let i = 0; i < 10 && seen.size < 2; i++) {
      const response = await get(`${url}/shop/`)
      t.equal(response.json().visits, 1, 'each one a new visitor there')
      seen.add(response.json().upstream)
    }
    t.same([...seen].sort(), ['a', 'b'])
  })

  t.test('a WebSocket under the prefix reaches the visitor\'s upstream', async (t) => {
    const jar = new CookieJar()
    const upstream = (await get(`${url}/shop/`, { jar })).json().upstream as string
    // Several sockets, so a lucky 50% guess would not pass.
    for (let i = 0; i < 3; i++) {
      const ws = new WebSocket(url.replace('http:', 'ws:') + '/shop/live', { headers: { cookie: jar.header() } })
      let setCookies: string[] = []
      ws.once('upgrade', (response) => { setCookies = (response.headers['set-cookie'] as string[] | undefined) ?? [] })
      await once(ws, 'open')
      ws.send(`hi ${i}`)
      const [message] = await once(ws, 'message')
      t.same([String(message), setCookies.filter((c) => c.startsWith('sticky=')).length], [`${upstream}: hi ${i}`, 0], `socket ${i}: the visitor's upstream, no new routing cookie`)
      ws.close()
      await once(ws, 'close')
    }
    t.equal((await get(`${url}/shop/after`, { jar })).json().visits, 2, 'and HTTP goes on counting there')
  })

  t.test('the gateway\'s own route, outside the prefix', async (t) => {
    t.same((await get(`${url}/healthz`)).json(), { ok: true })
    t.equal((await get(`${url}/elsewhere`)).status, 404, 'only /shop is proxied')
  })
})

t.test('npx tsx examples/http-proxy/index.ts: prints what to open, proxies, stops on Ctrl-C', async (t) => {
  const example = startExampleProcess(t, 'examples/http-proxy/index.ts', { PORT: '0', UPSTREAM_PORTS: '0,0' })
  const { waitFor } = example
  const [, url] = await waitFor(/^fastify-sticky http-proxy example: open (http:\/\/127\.0\.0\.1:\d+)\/shop\/ \(upstreams a, b; in-memory store\)\. Ctrl-C to stop\.$/m)
  const jar = new CookieJar()
  const first = await get(`${url}/shop/`, { jar })
  const again = await get(`${url}/shop/x`, { jar })
  t.same([first.status, again.json().upstream, again.json().visits, again.json().url, again.setCookies.length], [200, first.json().upstream, 2, '/x', 0])
  t.ok(await waitFor(/^ {2}GET \/shop\/x → upstream [ab] \(hit\) 200$/m), 'traced')
  t.equal(await example.interrupt(), 0, 'Ctrl-C closes cleanly')
  t.match(example.output().out, /stopping\n$/)
  t.equal(example.output().err, '', 'nothing on stderr')
})
