/**
 * A tiny stateful upstream for the Express example: it counts each visitor's requests in its own memory, keyed by
 * its own session cookie `echo_sid`, so a visitor who reaches another replica starts again from 1. It also echoes
 * WebSocket messages, prefixed with its id. It knows nothing about the gateway or its routing cookie.
 */
import { randomBytes } from 'node:crypto'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { WebSocketServer } from 'ws'

/** The app's own session cookie (not the gateway's routing cookie). */
export const ECHO_SESSION_COOKIE = 'echo_sid'

/** What every HTTP request gets, as JSON. */
export interface EchoAnswer {
  /** The upstream's id. */
  upstream: string
  /** Requests of this visitor counted here (1 on a visitor's first request to this replica). */
  visits: number
  /** The request's method and URL, as the upstream received them. */
  method: string
  url: string
  /** `true` when the gateway says the visitor's session moved here from an upstream that went down. */
  rebound: boolean
}

/** A running echo upstream. */
export interface EchoUpstream {
  readonly id: string
  /** `http://127.0.0.1:<port>` */
  readonly url: string
  /** Stops the server (open WebSockets included) and forgets every visitor. */
  close (): Promise<void>
}

// Demo-sized bound: a script hammering the upstream cannot grow its memory without limit.
const MAX_VISITORS = 10_000

/**
 * Starts one echo upstream on 127.0.0.1.
 * @param port - 0 for a free one
 */
export async function startEchoUpstream (id: string, port: number): Promise<EchoUpstream> {
  const visits = new Map<string, number>()
  const server = http.createServer((req, res) => {
    const sid = /(?:^|;\s*)echo_sid=([A-Za-z0-9_-]+)/.exec(req.headers.cookie ?? '')?.[1]
    const known = sid !== undefined && visits.has(sid)
    const session = known ? sid : randomBytes(12).toString('base64url')
    if (!known && visits.size >= MAX_VISITORS) visits.clear()
    const count = (visits.get(session) ?? 0) + 1
    visits.set(session, count)
    const answer: EchoAnswer = { upstream: id, visits: count, method: req.method ?? '', url: req.url ?? '', rebound: req.headers['x-sticky-rebound'] === '1' }
    if (!known) res.setHeader('set-cookie', `${ECHO_SESSION_COOKIE}=${session}; Path=/; HttpOnly; SameSite=Lax`)
    res.setHeader('content-type', 'application/json; charset=utf-8')
    req.resume()
    req.on('end', () => { res.end(JSON.stringify(answer)) })
  })
  const wss = new WebSocketServer({ server })
  wss.on('connection', (socket) => {
    socket.on('message', (data) => { socket.send(`${id}: ${String(data)}`) })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', () => { server.off('error', reject); resolve() })
  })
  let closing: Promise<void> | undefined
  return {
    id,
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close () {
      closing ??= new Promise<void>((resolve) => {
        for (const client of wss.clients) client.terminate()
        wss.close()
        server.closeAllConnections()
        server.close(() => resolve())
      })
      return closing
    }
  }
}
