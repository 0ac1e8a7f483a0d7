/**
 * Request headers on their way upstream, the same for HTTP requests and upgrades: hop-by-hop headers removed
 * (RFC 9110 §7.6.1; they describe the client's connection, not ours, and some make the HTTP client refuse the
 * request), and the forwarding headers written by the gateway as the edge, from what `trustProxy` trusts, never
 * copied from what the client claims. Framework-free: works on a plain header record.
 */

// Hop-by-hop by definition, or by what proxies have always treated so; `connection` goes with what it names.
const HOP_BY_HOP = ['keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'proxy-authorization']

// Headers that claim something about the client or the original request, which only the edge may say. Each has
// fooled an upstream somewhere (X-Original-URL past path rules, Forwarded / X-Real-IP past IP allow-lists).
const EDGE_CLAIMS = ['forwarded', 'x-real-ip', 'x-forwarded-port', 'x-forwarded-server', 'x-original-url', 'x-rewrite-url']

/**
 * The X-Forwarded-For value to send, from the chain proxy-addr computed (`[peer, ...trusted hops, client]`, the
 * order of Fastify's `request.ips`): entries the client made up beyond the first untrusted hop are not in it.
 * @param chain - `request.ips`, or `undefined` without trustProxy
 * @param peer - the socket's remote address
 */
export function forwardedForValue (chain: readonly string[] | undefined, peer: string | undefined): string | undefined {
  if (chain === undefined || chain.length < 2) return peer
  let value = chain[chain.length - 1]
  for (let i = chain.length - 2; i >= 0; i--) value += ', ' + chain[i]
  return value
}

/**
 * Removes hop-by-hop headers (those `connection` names included) from `headers`, in place.
 * `delete` only where present: deleting an absent key still turns the object into a slow dictionary.
 */
export function removeHopByHop (headers: Record<string, unknown>): void {
  const connection = headers.connection
  if (connection !== undefined) {
    if (typeof connection === 'string') {
      for (const name of connection.split(',')) {
        const key = name.trim().toLowerCase()
        if (key !== '' && headers[key] !== undefined && !PROTECTED.has(key)) delete headers[key]
      }
    }
    delete headers.connection
  }
  for (const name of HOP_BY_HOP) if (headers[name] !== undefined) delete headers[name]
}

// A client may not make the gateway drop what the gateway itself must send (reply-from guards the same way).
const PROTECTED = new Set(['host', 'content-length', 'content-type', 'cookie'])

/**
 * Replaces every forwarding header by the gateway's own, in place (positional, not an object: once per request).
 * @param forwardedFor - X-Forwarded-For to send: the trusted part of the chain, then the peer (see {@link forwardedForValue})
 * @param protocol - `http` or `https`, as the client used it (trustProxy-aware)
 * @param host - the host the client asked for, or `undefined` to send none (unknown, or not an allowed host)
 */
export function writeForwardingHeaders (headers: Record<string, unknown>, forwardedFor: string | undefined, protocol: string, host: string | undefined): void {
  for (const name of EDGE_CLAIMS) if (headers[name] !== undefined) delete headers[name]
  if (forwardedFor !== undefined) headers['x-forwarded-for'] = forwardedFor
  else if (headers['x-forwarded-for'] !== undefined) delete headers['x-forwarded-for']
  headers['x-forwarded-proto'] = protocol
  if (host !== undefined) headers['x-forwarded-host'] = host
  else if (headers['x-forwarded-host'] !== undefined) delete headers['x-forwarded-host']
}
