/**
 * WebSocket through the Express door's `'upgrade'` listener: the same affinity as HTTP (cookie on the 101), echo
 * through the tunnel, failover before the 101, tunnel caps, the two handshake clocks, refusals relayed, close().
 */
import http from 'node:http'
import { once } from 'node:events'
import net, { type AddressInfo } from 'node:net'
import type { StickyPoolOptions } from '../../lib/express/index'
import t, { type Test } from 'tap'
import WebSocket, { WebSocketServer } from 'ws'
import { startGateway } from '../helpers/gateway'
import { get } from '../helpers/http'
import { startRedis, uniquePrefix } from '../helpers/redis'
import { eventually } from '../store/binding-store.contract'
import { startExpressGateway, type Host } from './express-gateway'

interface WsUpstream { id: string, url: string, server: http.Server, wss: WebSocketServer, closes: number }

// A real WebSocket upstream: echoes "<id>:<message>", greets with the Cookie header it got, answers HTTP with its id.
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
    t.teardown(() => stop(upstream))
  }
  return result
}

async function stop (upstream: WsUpstream): Promise<void> {
  for (const client of upstream.wss.clients) client.terminate()
  upstream.wss.close()
  upstream.server.closeAllConnections()
  await new Promise((resolve) => upstream.server.close(resolve))
}

interface Opened { ws: WebSocket, setCookie: string[], first: string }
async function open (url: string, cookie?: string): Promise<Opened> {
  const ws = new WebSocket(url, { headers: cookie === undefined ? {} : { cookie } })
  let setCookie: string[] = []
  ws.once('upgrade', (response) => { setCookie = (response.headers['set-cookie'] as string[] | undefined) ?? [] })
  const [first] = await once(ws, 'message')
  return { ws, setCookie, first: String(first) }
}

async function refused (url: string): Promise<{ status: number, headers: http.IncomingHttpHeaders, body: string }> {
  const ws = new WebSocket(url)
  ws.on('error', () => {})
  const [, response] = await once(ws, 'unexpected-response') as [unknown, http.IncomingMessage]
  let body = ''
  response.setEncoding('utf8').on('data', (c: string) => { body += c })
  await once(response, 'end')
  ws.terminate()
  return { status: response.statusCode ?? 0, headers: response.headers, body }
}

const poolOf = (upstreams: Array<{ id: string, url: string }>): Record<string, StickyPoolOptions> =>
  ({ shop: { upstreams: upstreams.map((u) => ({ id: u.id, url: u.url })), cooldown: '1h' } })

for (const host of ['express5', 'node'] as Host[]) {
  t.test(`${host}: same affinity as HTTP, cookie on the 101, echo, close both ways`, async (t) => {
    const upstreams = await startWsUpstreams(t, ['a', 'b', 'c'])
    const gateway = await startExpressGateway(t, { pools: poolOf(upstreams), host })
    const wsUrl = gateway.url.replace('http:', 'ws:') + '/live'
    const first = await open(wsUrl)
    t.equal(first.setCookie.length, 1, 'the 101 of a new client carries the routing cookie')
    t.match(first.setCookie[0], /^sticky=[^;]+; Path=\/; HttpOnly; SameSite=Lax$/)
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
    const page = await get(`${gateway.url}/page`, { headers: { cookie } })
    t.equal(page.json().upstream, upstream, 'HTTP and WebSocket share one binding')

    const target = upstreams.find((u) => u.id === upstream) as WsUpstream
    const closesBefore = target.closes
    first.ws.close()
    t.ok(await eventually(() => target.closes > closesBefore, 2000), 'closing the client closes the upstream side')
    const other = await open(wsUrl, cookie)
    for (const client of target.wss.clients) client.close(1001, 'bye')
    const [code] = await once(other.ws, 'close')
    t.equal(code, 1001, 'the upstream\'s close reaches the client')
  })
}

t.test('an HTTP cookie from a Fastify gateway routes the Express door\'s WebSocket (one Redis)', async (t) => {
  const redis = await startRedis(t)
  const upstreams = await startWsUpstreams(t, ['a', 'b', 'c'])
  const prefix = uniquePrefix()
  const fastify = await startGateway(t, { pools: poolOf(upstreams), redis: redis.url, prefix })
  const express = await startExpressGateway(t, { pools: poolOf(upstreams), redis: redis.url, prefix })
  for (let i = 0; i < 6; i++) {
    const page = await get(`${fastify.url}/page`)
    const opened = await open(express.url.replace('http:', 'ws:') + '/live', page.setCookies[0].split(';')[0])
    t.equal(opened.first.split(':')[0], page.json().upstream, `client ${i}: same upstream`)
    t.equal(opened.setCookie.length, 0)
    opened.ws.close()
  }
})

t.test('failover before the 101; nowhere left: 503 on the socket', async (t) => {
  const upstreams = await startWsUpstreams(t, ['a', 'b'])
  const gateway = await startExpressGateway(t, { pools: poolOf(upstreams) })
  const base = gateway.url.replace('http:', 'ws:')
  const first = await open(`${base}/live/x`)
  const bound = first.first.split(':')[0]
  const cookie = first.setCookie[0].split(';')[0]
  first.ws.close()
  await stop(upstreams.find((u) => u.id === bound) as WsUpstream)
  const moved = await open(`${base}/live/x`, cookie)
  t.not(moved.first.split(':')[0], bound, 'an upstream that refuses the connection: the upgrade goes to another one')
  t.equal(moved.setCookie.length, 1, 'with the new routing cookie on the 101')
  t.equal(gateway.sticky.api.state('shop', bound), 'down')
  moved.ws.close()
  await stop(upstreams.find((u) => u.id !== bound) as WsUpstream)
  const none = await refused(`${base}/live/y`)
  t.equal(none.status, 503, 'an HTTP 503 on the socket, not a reset')
  t.match(JSON.parse(none.body), { code: 'FST_STICKY_NO_UPSTREAM' })
})

t.test('an upstream\'s refusal is relayed; a silent one is a 504 and stays up; tunnel caps; close() ends tunnels', async (t) => {
  // Upstream "no": answers every upgrade with 403 and a Location naming its own origin.
  const no = http.createServer()
  no.on('upgrade', (_req, socket: net.Socket) => {
    const origin = `http://127.0.0.1:${(no.address() as AddressInfo).port}`
    socket.end(`HTTP/1.1 403 Forbidden\r\nLocation: ${origin}/login\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno`)
  })
  // Upstream "mute": accepts the TCP connection and never answers.
  const held: net.Socket[] = []
  const mute = net.createServer((socket) => { held.push(socket) })
  for (const server of [no, mute]) server.listen(0, '127.0.0.1')
  await Promise.all([once(no, 'listening'), once(mute, 'listening')])
  t.teardown(() => {
    for (const socket of held) socket.destroy()
    no.close()
    mute.close()
  })
  const urlOf = (server: net.Server): string => `http://127.0.0.1:${(server.address() as AddressInfo).port}`

  const refusing = await startExpressGateway(t, { pools: poolOf([{ id: 'no', url: urlOf(no) }]) })
  const relayed = await refused(refusing.url.replace('http:', 'ws:') + '/live')
  t.equal(relayed.status, 403, 'the upstream\'s status')
  t.equal(relayed.headers.location, '/login', 'Location without the upstream\'s origin')
  t.equal(relayed.body, 'no')
  t.equal(refusing.sticky.api.state('shop', 'no'), 'active', 'a refusal is an answer, not a failure')

  const silent = await startExpressGateway(t, { pools: poolOf([{ id: 'mute', url: urlOf(mute) }]), websocket: { handshakeTimeout: 300 } })
  const started = Date.now()
  const timedOut = await refused(silent.url.replace('http:', 'ws:') + '/live')
  t.equal(timedOut.status, 504)
  t.ok(Date.now() - started < 2000, 'after the handshake timeout')
  t.equal(silent.sticky.api.state('shop', 'mute'), 'active', 'connected but slow: not down')

  const upstreams = await startWsUpstreams(t, ['c'])
  const capped = await startExpressGateway(t, { pools: poolOf(upstreams), websocket: { maxTunnelsPerClient: 1 } })
  const wsUrl = capped.url.replace('http:', 'ws:') + '/live'
  const one = await open(wsUrl)
  const second = await refused(wsUrl)
  t.equal(second.status, 503, 'a second tunnel for the same client is refused')
  t.match(JSON.parse(second.body), { code: 'FST_STICKY_TUNNEL_LIMIT' })
  one.ws.close()
  await once(one.ws, 'close')
  // The gateway frees the place when it sees the client socket close, a moment after the client does.
  let kept: Opened | undefined
  t.ok(await eventually(async () => {
    kept = await open(wsUrl).catch(() => undefined)
    return kept !== undefined
  }, 2000), 'its place is free again once it closed')
  if (kept === undefined) return
  const closed = once(kept.ws, 'close')
  const closing = Date.now()
  await capped.sticky.close()
  await closed
  t.ok(Date.now() - closing < 2000, 'close() ended the tunnel promptly')
})
