import http from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import WebSocket, { WebSocketServer } from 'ws'
import { startGateway, type TestGateway } from '../helpers/gateway'
import { startUpstreams } from '../helpers/upstreams'
import { eventually } from '../store/binding-store.contract'

interface WsUpstream { id: string, url: string, server: http.Server, wss: WebSocketServer, closes: number }

// A real WebSocket upstream: echoes "<id>:<message>", and counts connections closed by the client side.
async function startWsUpstreams (t: Test, ids: string[]): Promise<WsUpstream[]> {
  const result: WsUpstream[] = []
  for (const id of ids) {
    const server = http.createServer((_req, res) => { res.end(JSON.stringify({ upstream: id })) })
    const wss = new WebSocketServer({ server })
    const upstream: WsUpstream = { id, url: '', server, wss, closes: 0 }
    wss.on('connection', (socket, req) => {
      socket.send(`${id}:hello:${req.headers.cookie ?? ''}`)
      socket.on('message', (data) => socket.send(`${id}:${String(data)}`))
      socket.on('close', () => { upstream.closes++ })
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    upstream.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    result.push(upstream)
    t.teardown(async () => {
      for (const client of wss.clients) client.terminate()
      wss.close()
      server.closeAllConnections()
      server.close()
    })
  }
  return result
}

interface Opened { ws: WebSocket, setCookie: string[], first: string }
async function open (url: string, cookie?: string): Promise<Opened> {
  const ws = new WebSocket(url, { headers: cookie === undefined ? {} : { cookie } })
  let setCookie: string[] = []
  ws.once('upgrade', (response) => { setCookie = (response.headers['set-cookie'] as string[] | undefined) ?? [] })
  const [first] = await once(ws, 'message')
  return { ws, setCookie, first: String(first) }
}

async function refused (url: string): Promise<number> {
  const ws = new WebSocket(url)
  ws.on('error', () => {})
  const [, response] = await once(ws, 'unexpected-response') as [unknown, http.IncomingMessage]
  response.resume()
  ws.terminate()
  return response.statusCode ?? 0
}

t.test('WebSocket: same affinity as HTTP, cookie on the 101, echo, close both ways', async (t) => {
  const upstreams = await startWsUpstreams(t, ['a', 'b', 'c'])
  const gateway: TestGateway = await startGateway(t, { pools: { shop: { upstreams: upstreams.map((u) => ({ id: u.id, url: u.url })) } } })
  const wsUrl = gateway.url.replace('http:', 'ws:') + '/live'
  const first = await open(wsUrl)
  t.equal(first.setCookie.length, 1, 'the 101 of a new client carries the routing cookie')
  t.match(first.setCookie[0], /^sticky=.*; HttpOnly; SameSite=Lax/)
  const upstream = first.first.split(':')[0]
  t.equal(first.first, `${upstream}:hello:`, 'the routing cookie does not reach the upstream')
  first.ws.send('ping')
  const [echo] = await once(first.ws, 'message')
  t.equal(String(echo), `${upstream}:ping`, 'messages flow both ways')
  const cookie = first.setCookie[0].split(';')[0]
  for (let i = 0; i < 3; i++) {
    const again = await open(wsUrl, `${cookie}; app=1`)
    t.equal(again.first, `${upstream}:hello:app=1`, 'a bound client reaches the same upstream')
    t.equal(again.setCookie.length, 0, 'and gets no new cookie')
    again.ws.close()
  }
  // The HTTP routes share the binding.
  const response = await fetch(`${gateway.url}/page`, { headers: { cookie } })
  t.equal((await response.json() as { upstream: string }).upstream, upstream, 'HTTP and WebSocket share one binding')

  // Client closes → the upstream side closes.
  const target = upstreams.find((u) => u.id === upstream) as WsUpstream
  const closesBefore = target.closes
  first.ws.close()
  t.ok(await eventually(() => target.closes > closesBefore, 2000), 'closing the client closes the upstream side')
  // Upstream closes → the client closes.
  const other = await open(wsUrl, cookie)
  for (const client of target.wss.clients) client.close(1001, 'bye')
  const [code] = await once(other.ws, 'close')
  t.equal(code, 1001, 'the upstream\'s close reaches the client')
  // Upstream killed mid-connection → the client side closes.
  const killed = await open(wsUrl, cookie)
  for (const client of target.wss.clients) client.terminate()
  await once(killed.ws, 'close')
  t.pass('an upstream that dies closes the client')
})

t.test('WebSocket failover, refusals, and gateway close', async (t) => {
  const upstreams = await startWsUpstreams(t, ['a', 'b'])
  const gateway = await startGateway(t, {
    pools: { shop: { upstreams: upstreams.map((u) => ({ id: u.id, url: u.url })), cooldown: '1h' } },
    routes (app) { app.all('/live/*', { config: { sticky: true } }, (_request, reply) => reply.forward()) }
  })
  const base = gateway.url.replace('http:', 'ws:')
  const first = await open(`${base}/live/x`)
  const bound = first.first.split(':')[0]
  const cookie = first.setCookie[0].split(';')[0]
  first.ws.close()
  const dead = upstreams.find((u) => u.id === bound) as WsUpstream
  for (const client of dead.wss.clients) client.terminate()
  dead.server.closeAllConnections()
  await new Promise((resolve) => dead.server.close(resolve))
  const moved = await open(`${base}/live/x`, cookie)
  t.not(moved.first.split(':')[0], bound, 'an upstream that refuses the connection: the upgrade goes to another one')
  t.equal(moved.setCookie.length, 1, 'with the new routing cookie on the 101')
  moved.ws.close()

  t.equal(await refused(`${base}/not-ours`), 404, 'an upgrade for a path the gateway does not route is refused cleanly')
  const live = upstreams.find((u) => u.id !== bound) as WsUpstream
  for (const client of live.wss.clients) client.terminate()
  live.server.closeAllConnections()
  await new Promise((resolve) => live.server.close(resolve))
  t.equal(await refused(`${base}/live/y`), 503, 'no upstream left: an HTTP 503 on the socket, not a reset')

  // gateway.close() ends open tunnels instead of hanging on them.
  const fresh = await startWsUpstreams(t, ['c'])
  const closing = await startGateway(t, { pools: { shop: { upstreams: [{ id: 'c', url: fresh[0].url }] } } })
  const held = await open(closing.url.replace('http:', 'ws:') + '/hold')
  const closed = once(held.ws, 'close')
  const started = Date.now()
  await closing.app.close()
  await closed
  t.ok(Date.now() - started < 2000, 'close() ended the tunnel promptly')
})

t.test('long-lived HTTP responses: a route timeout of 0 lets a slow stream through', async (t) => {
  const upstreams = await startUpstreams(t, ['a'])
  // The upstream answers with a chunk, then pauses longer than the plugin's body timeout, then ends.
  upstreams[0].server.removeAllListeners('request')
  upstreams[0].server.on('request', (_req: http.IncomingMessage, res: http.ServerResponse) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.write('data: one\n\n')
    setTimeout(() => res.end('data: two\n\n'), 2500)
  })
  const gateway = await startGateway(t, {
    upstreams,
    timeouts: { body: 1000 },
    routes (app) {
      app.get('/events', { config: { sticky: { timeout: 0 } } }, (_request, reply) => reply.forward())
      app.get('/short', { config: { sticky: true } }, (_request, reply) => reply.forward())
    }
  })
  const [events, short] = await Promise.all([
    fetch(`${gateway.url}/events`).then(async (r) => r.text()),
    fetch(`${gateway.url}/short`).then(async (r) => r.text()).catch((error: Error) => error.message)
  ])
  t.equal(events, 'data: one\n\ndata: two\n\n', 'the whole stream arrives')
  t.not(short, 'data: one\n\ndata: two\n\n', 'without the route timeout the body timeout cuts the pause')
})
