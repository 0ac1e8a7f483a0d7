/**
 * Real WebSocket upstreams and a client for them, shared by every front door's tests (and usable from bench/: no
 * tap import; the owner is anything with a `teardown`).
 */
import http from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import WebSocket, { WebSocketServer } from 'ws'
import type { TeardownOwner } from './teardown-owner'

/** What a WebSocket upstream sends first on every connection, as JSON. */
export interface WsHello {
  upstream: string
  /** The handshake's request target as the upstream got it. */
  url: string
  headers: http.IncomingHttpHeaders
}

/** A running WebSocket upstream (see {@link startWsUpstreams}). */
export interface WsUpstream {
  /** The id to configure in a pool (`{ id, url }`). */
  readonly id: string
  /** `http://127.0.0.1:<port>` */
  readonly url: string
  readonly server: http.Server
  readonly wss: WebSocketServer
  /** Connections the client side (the gateway) closed so far. */
  closes: number
  /** Ends every connection and the server (the port refuses from then on); safe to call twice. */
  close (): Promise<void>
}

/**
 * Starts one WebSocket echo server per id on 127.0.0.1 (free ports), closed at the owner's teardown. Every
 * connection is greeted with a {@link WsHello}, then each message comes back as `<id>:<message>`. Plain HTTP is
 * answered `{ upstream, url, headers }` as JSON with `x-upstream-id`, so HTTP and WebSocket can be checked for one
 * binding.
 *
 * @param owner - runs the teardown (a tap test)
 * @param ids - upstream ids, one server each
 * @returns the running upstreams, in `ids` order
 * @example
 * const upstreams = await startWsUpstreams(t, ['a', 'b'])
 * const opened = await openSocket(gatewayUrl.replace('http:', 'ws:') + '/live')
 * t.equal(opened.setCookie.length, 1)
 */
export async function startWsUpstreams (owner: TeardownOwner, ids: readonly string[]): Promise<WsUpstream[]> {
  const upstreams: WsUpstream[] = []
  // Registered before listening, so servers started before a failure are closed too.
  owner.teardown(() => Promise.all(upstreams.map((u) => u.close())))
  for (const id of ids) upstreams.push(await startWsUpstream(id))
  return upstreams
}

async function startWsUpstream (id: string): Promise<WsUpstream> {
  const server = http.createServer((req, res) => {
    res.setHeader('x-upstream-id', id)
    res.setHeader('content-type', 'application/json; charset=utf-8')
    res.end(JSON.stringify({ upstream: id, url: req.url ?? '', headers: req.headers }))
  })
  const wss = new WebSocketServer({ server })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  let closing: Promise<void> | undefined
  const upstream: WsUpstream = {
    id,
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    server,
    wss,
    closes: 0,
    close () {
      // Upgraded sockets are no longer the HTTP server's to close: ended here, or server.close() would wait on them.
      closing ??= new Promise<void>((resolve) => {
        for (const client of wss.clients) client.terminate()
        wss.close()
        server.closeAllConnections()
        server.close(() => resolve())
      })
      return closing
    }
  }
  wss.on('connection', (socket, req) => {
    const hello: WsHello = { upstream: id, url: req.url ?? '', headers: req.headers }
    socket.send(JSON.stringify(hello))
    socket.on('message', (data) => socket.send(`${id}:${String(data)}`))
    socket.on('close', () => { upstream.closes++ })
  })
  return upstream
}

/** An open client connection (see {@link openSocket}). */
export interface OpenedSocket {
  readonly ws: WebSocket
  /** The 101's Set-Cookie headers (empty when none). */
  readonly setCookie: string[]
  /** The upstream's greeting. */
  readonly hello: WsHello
}

/**
 * Opens a WebSocket and waits for the upstream's greeting.
 * @param url - `ws://127.0.0.1:<port>/path`
 * @param cookie - a Cookie header value to send with the handshake
 * @returns the socket, the 101's Set-Cookie and the greeting
 * @throws Error when the handshake is refused or the socket fails before the greeting
 */
export async function openSocket (url: string, cookie?: string): Promise<OpenedSocket> {
  const ws = new WebSocket(url, { headers: cookie === undefined ? {} : { cookie } })
  let setCookie: string[] = []
  ws.once('upgrade', (response) => { setCookie = (response.headers['set-cookie'] as string[] | undefined) ?? [] })
  try {
    const [first] = await once(ws, 'message')
    return { ws, setCookie, hello: JSON.parse(String(first)) as WsHello }
  } catch (error) {
    ws.terminate()
    throw error
  }
}

/** A refused handshake's answer. */
export interface RefusedUpgrade {
  readonly status: number
  readonly headers: http.IncomingHttpHeaders
  readonly body: string
}

/**
 * Opens a WebSocket that is expected to be refused and reads the HTTP answer.
 * @param url - `ws://127.0.0.1:<port>/path`
 * @returns the status, headers and body of the refusal
 * @throws Error when the handshake succeeds or the socket fails without an HTTP answer
 */
export async function refusedUpgrade (url: string): Promise<RefusedUpgrade> {
  const ws = new WebSocket(url)
  ws.on('error', () => {})
  const opened = once(ws, 'open').then(() => { throw new Error(`expected ${url} to refuse the upgrade, it opened`) })
  opened.catch(() => {})
  const [, response] = await Promise.race([once(ws, 'unexpected-response'), opened]) as [unknown, http.IncomingMessage]
  let body = ''
  response.setEncoding('utf8').on('data', (c: string) => { body += c })
  await once(response, 'end')
  ws.terminate()
  return { status: response.statusCode ?? 0, headers: response.headers, body }
}
