/**
 * `stickyProxy`: "proxy this prefix to this pool" for gateways without @fastify/http-proxy. Registered with a
 * `prefix`, it adds the two sticky routes a hand-written gateway would (`<prefix>` and `<prefix>/*`, every method)
 * whose handler is `reply.forward()`, with the request target sent as is or with the prefix replaced.
 */
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest, HTTPMethods } from 'fastify'
import { InvalidOptionError } from '../errors'
import { proxyRouteConfig, requireRegistration, type ProxyAffinityOptions } from './proxy-route'

/** Options of {@link stickyProxy} (with Fastify's own `prefix`). */
export interface StickyProxyOptions extends ProxyAffinityOptions {
  /** The public prefix (`/shop`); every path under it is proxied. */
  prefix?: string
  /**
   * What replaces the prefix upstream: `''` strips it (`/shop/cart` → `/cart`), `'/api'` maps it (→ `/api/cart`).
   * Absent: the request target is sent as it came (`/shop/cart`), as hand-written `reply.forward()` routes do.
   */
  rewritePrefix?: string
  /** @defaultValue every method Fastify routes */
  methods?: HTTPMethods[]
}

const KNOWN = new Set(['prefix', 'pool', 'sticky', 'rewritePrefix', 'methods'])
const ALL_METHODS: HTTPMethods[] = ['DELETE', 'GET', 'HEAD', 'PATCH', 'POST', 'PUT', 'OPTIONS']

// The upstream target for a request under `prefix`: the rest of the raw target (encoding untouched) after the
// replacement; the forward's own target check still applies.
function rewriter (prefix: string, replacement: string) {
  const base = replacement.endsWith('/') ? replacement.slice(0, -1) : replacement
  const lowerPrefix = prefix.toLowerCase()
  return function rewrite (url: string): string {
    // Fastify matched the prefix on the decoded path: a target that spells it %-encoded is refused (the empty
    // target fails the forward's target check, a 400) rather than cut at the wrong place.
    if (url.slice(0, prefix.length).toLowerCase() !== lowerPrefix) return ''
    const rest = url.slice(prefix.length)
    return rest === '' || rest.startsWith('?') ? `${base === '' ? '/' : base}${rest}` : `${base}${rest}`
  }
}

async function stickyProxyPlugin (fastify: FastifyInstance, options: StickyProxyOptions): Promise<void> {
  requireRegistration('stickyProxy', fastify)
  for (const name of Object.keys(options)) {
    if (!KNOWN.has(name)) throw new InvalidOptionError(`stickyProxy.${name} is not a known option (known: ${[...KNOWN].join(', ')})`)
  }
  const { rewritePrefix, methods = ALL_METHODS } = options
  if (rewritePrefix !== undefined && (typeof rewritePrefix !== 'string' || (rewritePrefix !== '' && !rewritePrefix.startsWith('/')))) {
    throw new InvalidOptionError(`stickyProxy.rewritePrefix must be '' or a path starting with '/', got ${JSON.stringify(rewritePrefix)}`)
  }
  if (!Array.isArray(methods) || methods.length === 0) throw new InvalidOptionError('stickyProxy.methods must be a non-empty array of HTTP methods')
  const config = { sticky: proxyRouteConfig('stickyProxy', options) }
  const prefix = fastify.prefix
  const rewrite = rewritePrefix === undefined ? undefined : rewriter(prefix, rewritePrefix)
  const handler = rewrite === undefined
    ? (_request: FastifyRequest, reply: FastifyReply) => reply.forward()
    : (request: FastifyRequest, reply: FastifyReply) => reply.forward(rewrite(request.url))
  fastify.route({ method: methods, url: '/', config, handler })
  fastify.route({ method: methods, url: '/*', config, handler })
}

/**
 * Proxies every path under a prefix to a pool, sticky: the hand-written route, packaged. Register it after the
 * fastify-sticky plugin, once per prefix.
 * @throws FST_STICKY_INVALID_OPTION at register time, naming the option
 * @example
 * await app.register(sticky, { secret: [process.env.STICKY_SECRET!], pools: { shop: { upstreams } } })
 * await app.register(stickyProxy, { prefix: '/shop', pool: 'shop' })
 * await app.register(stickyProxy, { prefix: '/api', pool: 'api', rewritePrefix: '', sticky: { key: { header: 'x-tenant' } } })
 */
export const stickyProxy: FastifyPluginAsync<StickyProxyOptions> = stickyProxyPlugin
