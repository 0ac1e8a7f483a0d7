/**
 * How the admin API finds a binding from what an operator has in hand: a routing cookie value today; other
 * affinity keys (a header value, a client address) plug in as further {@link BindingKeyParser}s.
 */

/** An affinity key recognised in an operator-supplied value. */
export interface BindingKeyMatch {
  /** What kind of key it is, e.g. `cookie` (reported back; also a log-safe name for it). */
  readonly kind: string
  /** The raw affinity key, as the resolver hashes it into a key id (for a routing cookie: its binding id). Never logged. */
  readonly rawKey: string
  /** The pools the key can belong to; every pool when omitted. */
  readonly pools?: readonly string[]
  /** The upstream the value itself names, if it names one (a routing cookie does). */
  readonly upstreamHint?: string
}

/**
 * Recognises one kind of key in a value (already URL-decoded once, as Fastify decodes path parameters).
 * @returns the key, or `null` when the value is not of this kind; never throws
 */
export type BindingKeyParser = (value: string) => BindingKeyMatch | null

/** What a verified routing cookie tells the admin API. */
export interface VerifiedRoutingCookie {
  readonly bindingId: string
  readonly upstreamId: string
}

/**
 * A parser for routing cookie values. Accepts the value as the browser stores it (percent-encoded) or decoded.
 * @param verify - checks a cookie value's signature and format; `null` when it does not verify
 */
export function routingCookieKeys (verify: (value: string) => VerifiedRoutingCookie | null): BindingKeyParser {
  return (value) => {
    let token = verify(value)
    if (token === null && value.includes('%')) {
      try {
        token = verify(decodeURIComponent(value))
      } catch {
        token = null
      }
    }
    return token === null ? null : { kind: 'cookie', rawKey: token.bindingId, upstreamHint: token.upstreamId }
  }
}

/**
 * @param parsers - tried in order; the first match wins
 * @returns the first match, or `null` when no parser recognises the value
 */
export function parseBindingKey (parsers: readonly BindingKeyParser[], value: string): BindingKeyMatch | null {
  for (const parse of parsers) {
    const match = parse(value)
    if (match !== null) return match
  }
  return null
}
