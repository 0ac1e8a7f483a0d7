/**
 * What the gateway, as the edge, knows of the client of a node:http request (Express's included): its address,
 * the X-Forwarded-For chain to send, its protocol and the host it asked for, each through the trusted proxies only.
 * Computed as proxy-addr (Express's `req.ip`, Fastify's `request.ip`) and Fastify's `request.protocol` /
 * `request.host` compute them, so an Express and a Fastify gateway behind the same proxies see the same client.
 */
import type { IncomingMessage } from 'node:http'
import type { TLSSocket } from 'node:tls'
import { forwardedForValue } from '../core/upstream-headers'

/** Whether the proxy at `address`, `hop` hops away (0: the peer), is trusted. */
export type TrustFn = (address: string, hop: number) => boolean

/** The client as the gateway sees it. */
export interface ClientFacts {
  /** The client's address: the first untrusted hop of the chain; the peer without trusted proxies. */
  readonly ip: string | undefined
  /** X-Forwarded-For to send (the trusted part of the chain, then the peer). */
  readonly forwardedFor: string | undefined
  readonly protocol: 'http' | 'https'
  /** The host the client asked for (`''` when unknown). */
  readonly host: string
}

const trustNothing: TrustFn = () => false

/** The Express app's compiled `trust proxy` setting, when the request went through an Express app. */
export function expressTrustOf (request: IncomingMessage): TrustFn | undefined {
  const app = (request as { app?: { get?: (name: string) => unknown } }).app
  const trust = typeof app?.get === 'function' ? app.get('trust proxy fn') : undefined
  return typeof trust === 'function' ? trust as TrustFn : undefined
}

/**
 * Reads the client's facts from a request.
 * @param trust - the trusted proxies; nothing is trusted when `undefined`
 */
export function clientFacts (request: IncomingMessage, trust: TrustFn | undefined = trustNothing): ClientFacts {
  const socket = request.socket
  const peer = socket?.remoteAddress
  const trusted = peer !== undefined && trust(peer, 0)
  const xff = request.headers['x-forwarded-for']
  let ip = peer
  let forwardedFor = peer
  if (trusted && typeof xff === 'string' && xff !== '') {
    // proxy-addr's walk: from the peer outwards, every trusted hop lets the next one speak for the client.
    const hops = xff.split(',').map((hop) => hop.trim()).filter((hop) => hop !== '').reverse()
    const chain = [peer]
    for (let i = 0; i < hops.length; i++) {
      chain.push(hops[i])
      if (!trust(hops[i], i + 1)) break
    }
    ip = chain[chain.length - 1]
    forwardedFor = forwardedForValue(chain, peer)
  }
  const proto = trusted ? lastEntry(request.headers['x-forwarded-proto']) : undefined
  const protocol = proto === 'https' || proto === 'http' ? proto : (socket as TLSSocket | undefined)?.encrypted === true ? 'https' : 'http'
  const forwardedHost = trusted ? lastEntry(request.headers['x-forwarded-host']) : undefined
  return { ip, forwardedFor, protocol, host: forwardedHost ?? request.headers.host ?? '' }
}

// Fastify reads the last entry of X-Forwarded-Proto and -Host (the nearest proxy's word): so does this door.
function lastEntry (value: string | string[] | undefined): string | undefined {
  if (typeof value !== 'string' || value === '') return undefined
  const comma = value.lastIndexOf(',')
  const entry = (comma < 0 ? value : value.slice(comma + 1)).trim()
  return entry === '' ? undefined : entry
}
