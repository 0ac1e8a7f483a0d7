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
  /** Longest wait for the upstream's 101. */
  readonly handshakeTimeoutMs: number
  /** A tunnel with no traffic either way for this long is closed; 0 never. */
  readonly idleTimeoutMs: number
}

/** What a failed upstream connection reports, for failover. */
export interface TunnelFailure {
  readonly code: string | undefined
  readonly timeout: boolean
}

/**
 * Opens the tunnel for an upgrade request to the request's chosen upstream.
 * @param headers - the request headers to send upstream (already rewritten: routing cookie, X-Forwarded-*)
 * @param setCookies - serialized Set-Cookie values to add to the 101 (a new binding's routing cookie)
 * @param onFailure - called when the upstream cannot be reached before its 101 (not after); it answers the client
 *   itself (a retry on another upstream, or an error response)
 */
export function openTunnel (
  reply: FastifyReply, upstreamUrl: string, headers: Record<string, unknown>, setCookies: readonly string[], options: TunnelOptions,
  sockets: Set<Duplex>, onFailure: (failure: TunnelFailure) => void
): void {
  const raw = reply.request.raw as UpgradeRequest
  const client = raw[kUpgradeSocket] as Socket
  const head = raw[kUpgradeHead] ?? Buffer.alloc(0)
  const target = new URL(upstreamUrl)
  const transport = target.protocol === 'https:' ? https : http
  let settled = false
  const upstreamRequest = transport.request({
    host: target.hostname.replace(/^\[|\]$/g, ''),
    port: target.port === '' ? (target.protocol === 'https:' ? 443 : 80) : Number(target.port),
    method: raw.method,
    path: raw.url,
    headers: { ...headers, host: target.host } as http.OutgoingHttpHeaders,
    agent: false,
    timeout: options.handshakeTimeoutMs
  })
  const fail = (failure: TunnelFailure): void => {
    if (settled) return
    settled = true
    upstreamRequest.destroy()
    onFailure(failure)
  }
  upstreamRequest.on('timeout', () => fail({ code: 'UND_ERR_CONNECT_TIMEOUT', timeout: true }))
  upstreamRequest.on('error', (error: NodeJS.ErrnoException) => fail({ code: error.code, timeout: false }))
  // The upstream refused the upgrade: relay its answer as it is.
  upstreamRequest.on('response', (response) => {
    if (settled) return
    settled = true
    reply.hijack()
    client.write(statusLine(response) + headerLines(response.rawHeaders, []) + '\r\n')
    response.pipe(client)
  })
  upstreamRequest.on('upgrade', (response, upstream: Socket, upstreamHead: Buffer) => {
    if (settled) {
      upstream.destroy()
      return
    }
    settled = true
    reply.hijack()
    client.write(statusLine(response) + headerLines(response.rawHeaders, setCookies.map((value) => ['Set-Cookie', value])) + '\r\n')
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

function statusLine (response: IncomingMessage): string {
  return `HTTP/1.1 ${response.statusCode ?? 502} ${response.statusMessage ?? ''}\r\n`
}

function headerLines (rawHeaders: readonly string[], extra: ReadonlyArray<[string, string]>): string {
  let lines = ''
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) lines += `${rawHeaders[i]}: ${rawHeaders[i + 1]}\r\n`
  for (const [name, value] of extra) lines += `${name}: ${value}\r\n`
  return lines
}
