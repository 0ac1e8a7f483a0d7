/**
 * The options of the gateway's edge: the forwarding headers it writes and the WebSocket tunnels it holds open.
 * Errors name the dotted option path.
 */
import type { Duration } from '../duration'
import { checkKeys, duration, fail, isRecord, positiveInteger } from './checks'

/** Default longest wait for an upstream's 101 Switching Protocols once connected. */
export const DEFAULT_WS_HANDSHAKE_TIMEOUT_MS = 10_000
/** Default idle time after which a WebSocket tunnel is closed. */
export const DEFAULT_WS_IDLE_TIMEOUT_MS = 15 * 60_000
/** Default most open (or opening) tunnels per gateway: each holds two sockets. */
export const DEFAULT_MAX_TUNNELS = 10_000
/** Default most open (or opening) tunnels per client address: a browser opens a handful; an office behind one NAT, more. */
export const DEFAULT_MAX_TUNNELS_PER_CLIENT = 256

/** The `websocket` option, when not `false`. */
export interface StickyWebSocketOptions {
  /** Longest wait for the upstream's 101 once connected (a slow upstream is a 504, never "down"). @defaultValue `'10s'` */
  handshakeTimeout?: Duration
  /** A tunnel with no traffic either way for this long is closed; `0` never. @defaultValue `'15m'` */
  idleTimeout?: Duration | 0
  /** Most tunnels open or opening at once on this gateway; more are refused with 503. @defaultValue 10000 */
  maxTunnels?: number
  /** Most tunnels open or opening at once per client address (`request.ip`); more are refused with 503. @defaultValue 256 */
  maxTunnelsPerClient?: number
}

/** `websocket` after validation. */
export interface ResolvedWebSocketOptions {
  readonly handshakeTimeoutMs: number
  readonly idleTimeoutMs: number
  readonly maxTunnels: number
  readonly maxTunnelsPerClient: number
}

/** The `xForwarded` option, when an object. */
export interface StickyXForwardedOptions {
  /**
   * Host names (as in the `Host` header, port included if the client sends one) passed on in `X-Forwarded-Host`;
   * for any other host, none is sent. Absent: any host is passed on.
   */
  allowedHosts?: readonly string[]
}

/** `xForwarded` after validation: `false`, or the allowed hosts (`undefined`: any). */
export type ResolvedXForwarded = false | { readonly allowedHosts: ReadonlySet<string> | undefined }

const WS_KEYS = ['handshakeTimeout', 'idleTimeout', 'maxTunnels', 'maxTunnelsPerClient']

/** @throws FST_STICKY_INVALID_OPTION naming `websocket.<key>` */
export function resolveWebSocket (input: unknown): false | ResolvedWebSocketOptions {
  if (input === false) return false
  const ws = input ?? {}
  if (!isRecord(ws)) fail('websocket', `false or an object { ${WS_KEYS.join(', ')} }`, input)
  checkKeys('websocket', ws, WS_KEYS, (p) => fail(p, `absent (known: ${WS_KEYS.join(', ')})`, ws[p.slice(10)]))
  return Object.freeze({
    handshakeTimeoutMs: duration('websocket.handshakeTimeout', ws.handshakeTimeout, DEFAULT_WS_HANDSHAKE_TIMEOUT_MS),
    idleTimeoutMs: ws.idleTimeout === 0 ? 0 : duration('websocket.idleTimeout', ws.idleTimeout, DEFAULT_WS_IDLE_TIMEOUT_MS),
    maxTunnels: positiveInteger('websocket.maxTunnels', ws.maxTunnels, DEFAULT_MAX_TUNNELS),
    maxTunnelsPerClient: positiveInteger('websocket.maxTunnelsPerClient', ws.maxTunnelsPerClient, DEFAULT_MAX_TUNNELS_PER_CLIENT)
  })
}

/** @throws FST_STICKY_INVALID_OPTION naming `xForwarded` or `xForwarded.allowedHosts[i]` */
export function resolveXForwarded (input: unknown): ResolvedXForwarded {
  if (input === undefined || input === true) return Object.freeze({ allowedHosts: undefined })
  if (input === false) return false
  if (!isRecord(input)) fail('xForwarded', 'a boolean or an object { allowedHosts }', input)
  checkKeys('xForwarded', input, ['allowedHosts'], (p) => fail(p, 'absent (known: allowedHosts)', input[p.slice(11)]))
  const hosts = input.allowedHosts
  if (hosts === undefined) return Object.freeze({ allowedHosts: undefined })
  if (!Array.isArray(hosts) || hosts.length === 0) fail('xForwarded.allowedHosts', 'a non-empty array of host names', hosts)
  const allowed = new Set<string>()
  for (const [i, host] of (hosts as unknown[]).entries()) {
    if (typeof host !== 'string' || !/^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/.test(host)) {
      fail(`xForwarded.allowedHosts[${i}]`, 'a host name, optionally with :port', host)
    }
    allowed.add(host.toLowerCase())
  }
  return Object.freeze({ allowedHosts: allowed })
}
