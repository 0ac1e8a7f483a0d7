/**
 * A WebSocket (HTTP upgrade) tunnel from a client socket to an upstream, framework-free: the upgrade request is
 * sent with node:http, the upstream's 101 is relayed with our Set-Cookie added, and the two sockets are piped both
 * ways (with backpressure), each side's close closing the other. The same two clocks as the Fastify door's tunnel:
 * connecting (past it, the upstream was never reached), then the answer (past it, a 504 and no verdict on the
 * upstream). Framework-free: the Express door and the Fastify door (lib/fastify/websocket.ts) both open theirs here.
 */
import http, { type IncomingMessage } from 'node:http'
import https from 'node:https'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { HANDSHAKE_TIMEOUT_CODE } from '../core/failure'

/** Tunnel settings. */
export interface TunnelOptions {
  /** Longest wait for the TCP (and TLS) connection to the upstream. */
  readonly connectTimeoutMs: number
  /** Longest wait for the upstream's answer once connected. */
  readonly handshakeTimeoutMs: number
  /** A tunnel with no traffic either way for this long is closed; 0 never. */
  readonly idleTimeoutMs: number
}

/** One attempt: where it goes and what it sends. */
export interface TunnelAttempt {
  /** The upgrade's method (GET). */
  readonly method: string
  /** The upstream's origin URL. */
  readonly upstreamUrl: string
  /** The request target to send (already checked like an HTTP request's). */
  readonly path: string
  /** The request headers to send (hop-by-hop removed, forwarding headers written, `Connection`/`Upgrade` ours). */
  readonly headers: Record<string, unknown>
  /** Serialized Set-Cookie values to add to the 101. */
  readonly setCookies: readonly string[]
  /**
   * Called once the tunnel is open with a function that ends it the reconnect-friendly way (for when its session
   * moves to another upstream); returns what to call when the tunnel closes.
   */
  readonly onOpen?: (goAway: () => void) => () => void
}

// A WebSocket close frame from the server side (unmasked), code 1012 "service restart": clients reconnect, and the
// reconnect is routed to the session's new upstream.
const GO_AWAY_FRAME = Buffer.from([0x88, 0x02, 0x03, 0xf4])

/** What the attempt reports before it is established: one of these, or nothing if the client left first. */
export interface TunnelCallbacks {
  /** The upstream could not be reached, broke the connection or was too slow, before its 101. */
  readonly onFailure: (error: Error & { code?: string }) => void
  /** The upstream answered with something other than 101: the caller relays it as an ordinary response. */
  readonly onResponse: (response: IncomingMessage) => void
  /** The 101 is about to be written on the client socket (the caller lets go of its own response object). */
  readonly onEstablished: () => void
}

/**
 * Opens one tunnel attempt from `client` (whose upgrade request's first bytes after the head are `head`).
 * @param sockets - every established tunnel's client socket, kept until it closes (ended by the door on close)
 */
export function openTunnel (
  client: Socket, head: Buffer, attempt: TunnelAttempt, options: TunnelOptions, sockets: Set<Duplex>, callbacks: TunnelCallbacks
): void {
  const url = new URL(attempt.upstreamUrl)
  const secure = url.protocol === 'https:'
  let settled = false
  let timer: NodeJS.Timeout | undefined
  const upstreamRequest = (secure ? https : http).request({
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port: url.port === '' ? (secure ? 443 : 80) : Number(url.port),
    method: attempt.method,
    path: attempt.path,
    headers: { ...attempt.headers, host: url.host } as http.OutgoingHttpHeaders,
    agent: false
  })
  const settle = (): boolean => {
    if (settled) return false
    settled = true
    clearTimeout(timer)
    client.off('close', clientLeft)
    return true
  }
  const fail = (code: string): void => {
    if (!settle()) return
    upstreamRequest.destroy()
    callbacks.onFailure(Object.assign(new Error('upstream upgrade failed'), { code }))
  }
  // The client hung up first: nobody to answer, and nothing the upstream did wrong.
  const clientLeft = (): void => {
    if (settle()) upstreamRequest.destroy()
  }
  client.once('close', clientLeft)
  timer = setTimeout(() => { fail('UND_ERR_CONNECT_TIMEOUT') }, options.connectTimeoutMs)
  upstreamRequest.once('socket', (socket: Socket) => {
    socket.once(secure ? 'secureConnect' : 'connect', () => {
      if (settled) return
      clearTimeout(timer)
      timer = setTimeout(() => { fail(HANDSHAKE_TIMEOUT_CODE) }, options.handshakeTimeoutMs)
    })
  })
  upstreamRequest.on('error', (error: NodeJS.ErrnoException) => { fail(error.code ?? 'ECONNRESET') })
  upstreamRequest.on('response', (response) => {
    if (!settle()) {
      response.destroy()
      return
    }
    callbacks.onResponse(response)
  })
  upstreamRequest.on('upgrade', (response, upstream: Socket, upstreamHead: Buffer) => {
    if (!settle()) {
      upstream.destroy()
      return
    }
    callbacks.onEstablished()
    client.write(statusLine(response) + headerLines(response.rawHeaders, attempt.setCookies) + '\r\n')
    if (upstreamHead.length > 0) client.write(upstreamHead)
    if (head.length > 0) upstream.write(head)
    sockets.add(client)
    let forget: (() => void) | undefined
    const close = (): void => {
      forget?.()
      sockets.delete(client)
      client.destroy()
      upstream.destroy()
    }
    // The old upstream's frames stop first; a frame it was half way through sending is cut (the client then sees
    // a protocol error instead of 1012, and reconnects all the same).
    const goAway = (): void => {
      upstream.unpipe(client)
      upstream.destroy()
      client.end(GO_AWAY_FRAME)
    }
    forget = attempt.onOpen?.(goAway)
    client.on('close', close)
    upstream.on('close', close)
    client.on('error', close)
    upstream.on('error', close)
    if (options.idleTimeoutMs > 0) {
      client.setTimeout(options.idleTimeoutMs, close)
      upstream.setTimeout(options.idleTimeoutMs, close)
    }
    // pipe() applies backpressure both ways; a half-close is passed on, a full close tears both down.
    upstream.pipe(client)
    client.pipe(upstream)
  })
  upstreamRequest.end()
}

function statusLine (response: IncomingMessage): string {
  return `HTTP/1.1 ${response.statusCode ?? 502} ${response.statusMessage ?? ''}\r\n`
}

function headerLines (rawHeaders: readonly string[], setCookies: readonly string[]): string {
  let lines = ''
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) lines += `${rawHeaders[i]}: ${rawHeaders[i + 1]}\r\n`
  for (const value of setCookies) lines += `Set-Cookie: ${value}\r\n`
  return lines
}
