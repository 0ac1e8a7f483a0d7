/**
 * WebSocket (HTTP upgrade) through the same affinity as HTTP. @fastify/reply-from does not proxy upgrades, so an
 * `upgrade` event is routed through Fastify like a request (the route's affinity hook runs, Set-Cookie included),
 * and `reply.forward()` then opens a tunnel (lib/tunnel/upgrade-tunnel.ts, shared with the Express door): the
 * upstream's 101 is relayed with our routing cookie added, the two sockets piped both ways.
 */
import type http from 'node:http'
import { ServerResponse, type IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { openTunnel as openUpgradeTunnel, type TunnelAttempt, type TunnelCallbacks as UpgradeTunnelCallbacks, type TunnelOptions } from '../tunnel/upgrade-tunnel'

export type { TunnelOptions } from '../tunnel/upgrade-tunnel'

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

/** Where a tunnel goes and what it sends (the method is the upgrade request's own). */
export type TunnelTarget = Omit<TunnelAttempt, 'method'>

/** What the tunnel reports back before it is established; exactly one of these is called, or none if the client left. */
export type TunnelCallbacks = Omit<UpgradeTunnelCallbacks, 'onEstablished'>

/**
 * Opens the tunnel for an upgrade request to its chosen upstream. A client that closes its socket before the
 * upstream answers ends the attempt silently: nothing is reported, nothing counts against the upstream.
 */
export function openTunnel (reply: FastifyReply, target: TunnelTarget, options: TunnelOptions, sockets: Set<Duplex>, callbacks: TunnelCallbacks): void {
  const raw = reply.request.raw as UpgradeRequest
  const attempt = { ...target, method: raw.method ?? 'GET' }
  // Fastify lets go of the socket once the 101 is ours to write.
  openUpgradeTunnel(raw[kUpgradeSocket] as Socket, raw[kUpgradeHead] ?? Buffer.alloc(0), attempt, options, sockets, {
    ...callbacks,
    onEstablished: () => { reply.hijack() }
  })
}

/** @returns the client socket of an upgrade request routed by fastify-sticky */
export function upgradeSocketOf (request: FastifyRequest): Duplex | undefined {
  return (request.raw as UpgradeRequest)[kUpgradeSocket]
}
