import { spawn } from 'node:child_process'
import { once } from 'node:events'
import t from 'tap'
import WebSocket from 'ws'
import { startExpressExample } from '../../examples/express/index'
import { startExampleProcess } from '../support/example-process'
import { CookieJar, get } from '../support/http'

t.test('the Express example: two echo upstreams behind an Express gateway', async (t) => {
  const trace: string[] = []
  const example = await startExpressExample({ port: 0, upstreamPorts: [0, 0], trace: (line) => { trace.push(line) } })
  t.teardown(() => example.close())
  const { url } = example
  t.same(example.upstreams.map((u) => u.id), ['a', 'b'])

  t.test('a visitor stays on one upstream, which counts its visits', async (t) => {
    const jar = new CookieJar()
    const first = await get(`${url}/`, { jar })
    t.equal(first.status, 200)
    t.ok(jar.has('sticky') && jar.has('echo_sid'), 'the routing cookie and the app\'s own session cookie')
    const upstream = first.json().upstream as string
    t.equal(first.json().visits, 1)
    for (let i = 2; i <= 5; i++) {
      const again = await get(`${url}/page?n=${i}`, { jar, method: i % 2 === 0 ? 'POST' : 'GET', body: i % 2 === 0 ? 'form=1' : undefined })
      t.same([again.json().upstream, again.json().visits, again.json().url], [upstream, i, `/page?n=${i}`], `visit ${i}: same upstream, the count goes on`)
    }
    t.ok(trace.includes(`GET / → upstream ${upstream} (new) 200`) && trace.includes(`GET /page?n=5 → upstream ${upstream} (hit) 200`), 'one trace line per request')
    const other = new Set<string>()
    for (let i = 0; i < 4; i++) other.add((await get(`${url}/`)).json().upstream)
    t.same([...other].sort(), ['a', 'b'], 'visitors without cookies are spread over both')
    t.same((await get(`${url}/healthz`)).json(), { ok: true }, 'the gateway\'s own route')
  })

  t.test('a WebSocket reaches the visitor\'s upstream', async (t) => {
    const jar = new CookieJar()
    const upstream = (await get(`${url}/`, { jar })).json().upstream as string
    const ws = new WebSocket(url.replace('http:', 'ws:') + '/live', { headers: { cookie: jar.header() } })
    await once(ws, 'open')
    ws.send('hi')
    const [message] = await once(ws, 'message')
    t.equal(String(message), `${upstream}: hi`)
    ws.close()
  })

  t.test('draining an upstream keeps its visitors and sends new ones to the other', async (t) => {
    const jar = new CookieJar()
    const upstream = (await get(`${url}/`, { jar })).json().upstream as string
    await example.sticky.api.drain('echo', upstream)
    t.teardown(() => example.sticky.api.undrain('echo', upstream))
    t.equal((await get(`${url}/`, { jar })).json().upstream, upstream)
    for (let i = 0; i < 3; i++) t.not((await get(`${url}/`)).json().upstream, upstream)
  })
})

t.test('npx tsx examples/express/index.ts: prints what to open, stops on Ctrl-C; loads no Fastify', async (t) => {
  const example = startExampleProcess(t, 'examples/express/index.ts', { PORT: '0', UPSTREAM_PORTS: '0,0' })
  const { waitFor } = example
  const [, url] = await waitFor(/^fastify-sticky Express example: open (http:\/\/127\.0\.0\.1:\d+) \(upstreams a, b; in-memory store\)\. Ctrl-C to stop\.$/m)
  // A process that never loaded Fastify: cookies are read and written all the same.
  const jar = new CookieJar()
  const first = await get(`${url}/`, { jar })
  const again = await get(`${url}/`, { jar })
  t.same([first.status, again.json().upstream, again.json().visits, again.setCookies.length], [200, first.json().upstream, 2, 0])
  t.ok(await waitFor(/^ {2}GET \/ → upstream [ab] \(hit\) 200$/m), 'traced')
  t.equal(await example.interrupt(), 0, 'Ctrl-C closes cleanly')
  t.match(example.output().out, /stopping\n$/)
  t.equal(example.output().err, '', 'nothing on stderr')
})

t.test('a bad variable is one line and exit 1', async (t) => {
  const child = spawn(process.execPath, [require.resolve('tsx/cli'), 'examples/express/index.ts'], {
    env: { ...process.env, PORT: '0', UPSTREAM_PORTS: '0' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let err = ''
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { err += chunk })
  const [code] = await once(child, 'exit')
  t.equal(code, 1)
  t.equal(err, 'fastify-sticky Express example: UPSTREAM_PORTS must be two comma-separated port numbers, got "0"\n')
})
