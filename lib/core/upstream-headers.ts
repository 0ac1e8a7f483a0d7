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
 * The header names a `Connection` header names for removal (lowercased); `undefined` when there are none. The usual
 * values are answered without splitting: `keep-alive` names only a header that is hop-by-hop anyway, `close` a
 * header of that name (which goes, as any other named one). Names the gateway must send itself (`host`,
 * `content-length`, `content-type`, `cookie`) are never among them.
 */
export function connectionNamedHeaders (connection: unknown): ReadonlySet<string> | undefined {
  if (typeof connection !== 'string' || connection === 'keep-alive' || connection === 'Keep-Alive') return undefined
  if (connection === 'close' || connection === 'Close') return NAMES_CLOSE
  let named: Set<string> | undefined
  for (const token of connection.split(',')) {
    const key = token.trim().toLowerCase()
    if (key === '' || key === 'keep-alive' || PROTECTED.has(key)) continue
    named ??= new Set()
    named.add(key)
  }
  return named
}

const NAMES_CLOSE: ReadonlySet<string> = new Set(['close'])

/** Headers that are hop-by-hop by definition, or by what proxies have always treated so (`connection` included). */
export const HOP_BY_HOP_HEADERS: readonly string[] = ['connection', ...HOP_BY_HOP]

/** Headers that only the gateway, as the edge, may write (see the module comment); dropped when it writes its own. */
export const EDGE_CLAIM_HEADERS: readonly string[] = [...EDGE_CLAIMS, 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host']

// A client may not make the gateway drop what the gateway itself must send (reply-from guards the same way).
const PROTECTED = new Set(['host', 'content-length', 'content-type', 'cookie'])
