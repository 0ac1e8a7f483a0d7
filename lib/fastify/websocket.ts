/**
 * WebSocket (HTTP upgrade) through the same affinity as HTTP. @fastify/reply-from does not proxy upgrades, so an
 * `upgrade` event is routed through Fastify like a request (the route's affinity hook runs, Set-Cookie included),
 * and `reply.forward()` then opens a tunnel: the upstream's 101 is relayed with our routing cookie added, and the
 * two sockets are piped both ways (with backpressure), each side's close closing the other.
 */
import http, { ServerResponse, type IncomingMessage } from 'node:http'
import https from 'node:https'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { HANDSHAKE_TIMEOUT_CODE } from '../core/failure'

const kUpgradeSocket = Symbol('fastify-sticky.upgradeSocket')
const kUpgradeHead = Symbol('fastify-sticky.upgradeHead')
const kUpgradeInstalled = Symbol('fastify-sticky.upgradeInstalled')

interface UpgradeRequest extends IncomingMessage {
  [kUpgradeSocket]?: Duplex
  [kUpgradeHead]?: Buffer
}

/** @returns whether the request is an HTTP upgrade routed by fastify-sticky */
export function isUpgrade (request: FastifyRequest): boolean {
  return (request.raw as UpgradeRequest)[kUpgradeSocket] !== undefined
}

/**
 * Routes `upgrade` events through Fastify, so upgrades reach routes (and their hooks) like requests; a path no
 * route owns is answered by Fastify (404) on the socket, a clean refusal rather than a reset.
 * @param sockets - every open tunnel's client socket, ended on close
 */
export function installUpgradeRouting (fastify: FastifyInstance, sockets: Set<Duplex>): void {
  const server = fastify.server as http.Server & { [kUpgradeInstalled]?: true }
  if (server[kUpgradeInstalled] === true) return
  server[kUpgradeInstalled] = true
  server.on('upgrade', (raw: UpgradeRequest, socket: Duplex, head: Buffer) => {
    raw[kUpgradeSocket] = socket
    raw[kUpgradeHead] = head
    socket.on('error', () => { socket.destroy() })
    const response = new ServerResponse(raw)
    response.assignSocket(socket as Socket)
    // Fastify answers on `response`; once the reply is written, the socket goes with it.
    response.once('finish', () => { if (!sockets.has(socket)) socket.end() })
    fastify.routing(raw, response)
  })
}

/** Tunnel settings. */
export interface TunnelOptions {
  /** Longest wait for the TCP (and TLS) connection to the upstream: past it, the upstream was never reached. */
  readonly connectTimeoutMs: number
  /** Longest wait for the upstream's answer once connected: past it, a 504 and no verdict on the upstream. */
  readonly handshakeTimeoutMs: number
  /** A tunnel with no traffic either way for this long is closed; 0 never. */
  readonly idleTimeoutMs: number
}

/** Where a tunnel goes and what it sends. */
export interface TunnelTarget {
  /** The upstream's origin URL. */
  readonly upstreamUrl: string
  /** The request target to send (already checked like an HTTP request's). */
  readonly path: string
  /** The request headers to send (hop-by-hop removed, forwarding headers written). */
  readonly headers: Record<string, unknown>
  /** Serialized Set-Cookie values to add to the 101 (a new binding's routing cookie). */
  readonly setCookies: readonly string[]
}

/** What the tunnel reports back before it is established; exactly one of these is called, or none if the client left. */
export interface TunnelCallbacks {
  /** The upstream could not be reached, broke the connection or was too slow, before its 101. */
  readonly onFailure: (error: Error & { code?: string }) => void
  /** The upstream answered with something other than 101: the caller relays it as an ordinary response. */
  readonly onResponse: (response: IncomingMessage) => void
}

/**
 * Opens the tunnel for an upgrade request to its chosen upstream. A client that closes its socket before the
 * upstream answers ends the attempt silently: nothing is reported, nothing counts against the upstream.
 */
export function openTunnel (reply: FastifyReply, target: TunnelTarget, options: TunnelOptions, sockets: Set<Duplex>, callbacks: TunnelCallbacks): void {
  const raw = reply.request.raw as UpgradeRequest
  const client = raw[kUpgradeSocket] as Socket
  const head = raw[kUpgradeHead] ?? Buffer.alloc(0)
  const url = new URL(target.upstreamUrl)
  const transport = url.protocol === 'https:' ? https : http
  let settled = false
  let timer: NodeJS.Timeout | undefined
  const upstreamRequest = transport.request({
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port: url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port),
    method: raw.method,
    path: target.path,
    headers: { ...target.headers, host: url.host } as http.OutgoingHttpHeaders,
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
  // Two clocks, so a slow answer is never mistaken for an unreachable upstream: connecting, then the answer.
  timer = setTimeout(() => fail('UND_ERR_CONNECT_TIMEOUT'), options.connectTimeoutMs)
  upstreamRequest.once('socket', (socket: Socket) => {
    socket.once(url.protocol === 'https:' ? 'secureConnect' : 'connect', () => {
      if (settled) return
      clearTimeout(timer)
      timer = setTimeout(() => fail(HANDSHAKE_TIMEOUT_CODE), options.handshakeTimeoutMs)
    })
  })
  upstreamRequest.on('error', (error: NodeJS.ErrnoException) => fail(error.code ?? 'ECONNRESET'))
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
    reply.hijack()
    client.write(statusLine(response) + headerLines(response.rawHeaders, target.setCookies) + '\r\n')
    if (upstreamHead.length > 0) client.write(upstreamHead)
    if (head.length > 0) upstream.write(head)
    sockets.add(client)
    const close = (): void => {
      sockets.delete(client)
      client.destroy()
      upstream.destroy()
    }
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

/** @returns the client socket of an upgrade request routed by fastify-sticky */
export function upgradeSocketOf (request: FastifyRequest): Duplex | undefined {
  return (request.raw as UpgradeRequest)[kUpgradeSocket]
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
