/**
 * fastify-sticky for @fastify/http-proxy users: `stickyHttpProxy` registers @fastify/http-proxy for a prefix with
 * a pool in place of its `upstream`. Every route it creates is a sticky route (the plugin's affinity hook, cookie,
 * failover, learn), its handler forwards through `reply.forward()` with the path http-proxy rewrote, and WebSocket
 * upgrades go through the plugin's own tunnel rather than http-proxy's `ws` relay: that tunnel relays the
 * upstream's 101 (with the routing cookie on it) and can still fail over before it, which a relay that answers
 * the client's handshake before it has reached the upstream cannot.
 *
 * @packageDocumentation
 */
import httpProxy, { type FastifyHttpProxyOptions } from '@fastify/http-proxy'
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import { InvalidOptionError } from '../errors'
import { proxyRouteConfig, requireRegistration, type ProxyAffinityOptions } from '../fastify/proxy-route'
import { isUpgrade } from '../fastify/websocket'

/**
 * @fastify/http-proxy's options, less what the sticky plugin decides: no `upstream` (the pool's upstreams), no
 * `handler` or `replyOptions` (forwarding is `reply.forward()`'s), and none of the `ws*` relay settings (upgrades use
 * the plugin's tunnel and its `websocket` options).
 */
export type StickyHttpProxyPassThrough = Omit<FastifyHttpProxyOptions,
  'upstream' | 'handler' | 'replyOptions' | 'wsUpstream' | 'wsClientOptions' | 'wsServerOptions' | 'wsHooks' | 'wsReconnect' |
  'base' | 'undici' | 'http' | 'http2' | 'disableRequestLogging'>

/** Options of {@link stickyHttpProxy}. */
export interface StickyHttpProxyOptions extends StickyHttpProxyPassThrough, ProxyAffinityOptions {
  /** Prefix the proxy answers under, as for @fastify/http-proxy (`/shop`). */
  prefix?: string
  /**
   * WebSocket on these routes. Absent: as the sticky plugin's `websocket` option says. `true`: required (register
   * fails when the plugin's `websocket` is `false`). `false`: upgrades here are answered 404, as a route with no
   * WebSocket would be.
   */
  websocket?: boolean
}

// Options that conflict with routing by pool: each names what to use instead.
const REFUSED: Readonly<Record<string, string>> = {
  upstream: 'the pool\'s upstreams are used; name the pool with `pool` (or `sticky.pool`)',
  handler: 'the handler is reply.forward(); put your own logic in `preHandler`',
  replyOptions: 'forwarding options come from the sticky plugin; rewrite response headers in an onSend hook',
  wsUpstream: 'upgrades go to the session\'s upstream in the pool',
  wsClientOptions: 'upgrades use the sticky plugin\'s tunnel (its `websocket` options)',
  wsServerOptions: 'upgrades use the sticky plugin\'s tunnel (its `websocket` options)',
  wsHooks: 'upgrades use the sticky plugin\'s tunnel (its `websocket` options)',
  wsReconnect: 'upgrades use the sticky plugin\'s tunnel; a broken tunnel is failed over when the client reconnects',
  base: 'the pool\'s upstreams are used',
  undici: 'connection settings come from the sticky plugin\'s `timeouts`',
  http: 'connection settings come from the sticky plugin\'s `timeouts`',
  http2: 'connection settings come from the sticky plugin\'s `timeouts`'
}

// http-proxy validates each path against this before calling the handler; the real upstream is chosen by the
// plugin's affinity hook and never taken from here.
const PLACEHOLDER_UPSTREAM = 'http://fastify-sticky.invalid'

// http-proxy maps a relative Location from the upstream's path space (its rewritePrefix) back to the public prefix;
// the plugin has already made an upstream's absolute Location relative, so the same mapping is applied after it.
// Same rule as http-proxy's own: rewritePrefix defaults to '/', without its trailing slash under a prefix without one.
function locationRewrite (publicPrefix: string, rewritePrefixOption: string | undefined) {
  let rewritePrefix = rewritePrefixOption === undefined || rewritePrefixOption === '' ? '/' : rewritePrefixOption
  if (!publicPrefix.endsWith('/') && rewritePrefix.endsWith('/')) rewritePrefix = rewritePrefix.slice(0, -1)
  if (rewritePrefix === publicPrefix) return undefined
  return async function rewriteLocation (_request: FastifyRequest, reply: FastifyReply, payload: unknown): Promise<unknown> {
    const location = reply.getHeader('location')
    if (typeof location === 'string' && !EXTERNAL_URL.test(location)) reply.header('location', location.replace(rewritePrefix, publicPrefix))
    return payload
  }
}

// A Location with a scheme, as http-proxy tells one that leaves the gateway.
const EXTERNAL_URL = /^[A-Za-z][A-Za-z\d+.-]*:/

async function stickyHttpProxyPlugin (fastify: FastifyInstance, options: StickyHttpProxyOptions): Promise<void> {
  const registration = requireRegistration('stickyHttpProxy', fastify)
  for (const name of Object.keys(options)) {
    const instead = REFUSED[name]
    if (instead !== undefined && (options as Record<string, unknown>)[name] !== undefined) {
      throw new InvalidOptionError(`stickyHttpProxy.${name} is not used on a sticky proxy: ${instead}`)
    }
  }
  if (options.websocket === true && !registration.websocket) {
    throw new InvalidOptionError('stickyHttpProxy.websocket is true but the sticky plugin was registered with websocket: false')
  }
  const sticky = proxyRouteConfig('stickyHttpProxy', options)
  const { pool: _pool, sticky: _sticky, websocket, prefix: _prefix, ...passThrough } = options
  const upgrades = websocket !== false && registration.websocket

  const rewriteLocation = passThrough.internalRewriteLocationHeader === false ? undefined : locationRewrite(fastify.prefix, passThrough.rewritePrefix)
  if (rewriteLocation !== undefined) fastify.addHook('onSend', rewriteLocation)

  await fastify.register(httpProxy, {
    ...passThrough,
    ...registration.replyFromOptions,
    upstream: '',
    // Upgrades reach these routes through the plugin's upgrade routing; http-proxy's own relay stays off.
    websocket: false,
    replyOptions: { getUpstream: () => PLACEHOLDER_UPSTREAM },
    config: { ...passThrough.config, sticky },
    handler (_request: FastifyRequest, reply: FastifyReply, dest: string) {
      if (!upgrades && isUpgrade(reply.request)) return reply.callNotFound()
      return reply.forward(dest)
    }
  } as FastifyHttpProxyOptions)
}

/**
 * @fastify/http-proxy with sticky sessions: register it (with a `prefix`) after the fastify-sticky plugin, naming a
 * pool where http-proxy had an `upstream`. Other http-proxy options (`rewritePrefix`, `preHandler`, `httpMethods`,
 * `routes`, `constraints`, `config`, ...) pass through.
 * @throws FST_STICKY_INVALID_OPTION at register time, naming the option, for an option that conflicts with routing
 *   by pool, or when the sticky plugin is not registered
 * @example
 * import sticky from 'fastify-sticky'
 * import { stickyHttpProxy } from 'fastify-sticky/http-proxy'
 * await app.register(sticky, { secret: [process.env.STICKY_SECRET!], pools: { shop: { upstreams } } })
 * // was: app.register(httpProxy, { upstream: 'http://10.0.0.11:3000', prefix: '/shop', websocket: true })
 * await app.register(stickyHttpProxy, { pool: 'shop', prefix: '/shop', websocket: true })
 */
export const stickyHttpProxy: FastifyPluginAsync<StickyHttpProxyOptions> = stickyHttpProxyPlugin

export default stickyHttpProxy
