/**
 * `npx tsx examples/prefix-proxy/index.ts`: a Fastify gateway that proxies prefixes to a pool with `stickyProxy`,
 * without @fastify/http-proxy, in front of two echo upstreams that count each visitor's requests in their own memory.
 * - `/shop/...` goes to the upstream as it came (`/shop/cart`), sticky by the routing cookie: request the printed URL
 *   a few times with a cookie jar (`curl -b j -c j URL`) and the count goes up, always on the same upstream.
 *   WebSockets under it (`ws://.../shop/live`) reach the visitor's upstream too.
 * - `/api/...` goes without the prefix (`/api/orders` → `/orders`), sticky by the `x-tenant` header: every request of
 *   one tenant reaches one upstream, and no routing cookie is set (`curl -H 'x-tenant: acme' URL/api/orders`).
 * Environment: `PORT` and `HOST` of the gateway (3000, 127.0.0.1), `UPSTREAM_PORTS` (4101,4102), `REDIS_URL` (share
 * bindings with other gateways; in-memory without it), `STICKY_SECRET` (random without it).
 *
 * The gateway part of {@link startPrefixProxyExample} is written as a user of fastify-sticky would write it.
 */
import { randomBytes } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import Fastify, { type FastifyInstance } from 'fastify'
import sticky, { stickyProxy } from '../../lib/index'
import { browserHost, readExampleEnv, runExample, startEchoPair, type ExampleOptions } from '../example-runner'

/** Options of {@link startPrefixProxyExample}: ports, host, store, secret, trace. */
export type PrefixProxyExampleOptions = ExampleOptions

/** A running example. */
export interface PrefixProxyExample {
  /** The gateway's URL, e.g. `http://127.0.0.1:3000`; the proxies answer under `/shop` and `/api`. */
  readonly url: string
  readonly upstreams: ReadonlyArray<{ id: string, url: string }>
  /** The gateway (its `app.sticky` is the programmatic API: drain, session counts). */
  readonly app: FastifyInstance
  /** Stops the gateway, then the upstreams. Safe to call twice. */
  close (): Promise<void>
}

/**
 * Starts the upstreams and the gateway.
 * @param opts - ports, host, store, secret, trace
 * @returns the gateway URL, the upstreams, the Fastify app and a `close()`
 * @throws Error when a port is taken (whatever already started is stopped first)
 */
export async function startPrefixProxyExample (opts: PrefixProxyExampleOptions = {}): Promise<PrefixProxyExample> {
  const { upstreams: started, stop: stopUpstreams } = await startEchoPair(opts.upstreamPorts)

  // ---- The gateway, as a user of fastify-sticky writes it ----------------------------------------------------------
  const app = Fastify()
  try {
    // Registered before the proxies: it is what picks each request's upstream.
    await app.register(sticky, {
      // First signs, all verify. Gateways sharing a Redis must share it; a random one suits a single process.
      secret: [opts.secret ?? randomBytes(32).toString('base64url')],
      redis: opts.redis,
      pools: { echo: { upstreams: started.map(({ id, url }) => ({ id, url })) } },
      defaults: { idleTimeout: '30m' }
    })
    // The gateway's own routes live outside the prefixes and keep Fastify's body parsers.
    app.get('/healthz', async () => ({ ok: true }))
    const trace = opts.trace
    if (trace !== undefined) {
      // request.sticky says where the request went and why: hit | new | rebind | degraded | none.
      app.addHook('onResponse', async (request, reply) => {
        if (request.sticky !== null) trace(`${request.method} ${request.url} → upstream ${request.sticky.upstream.id} (${request.sticky.decision}) ${reply.statusCode}`)
      })
    }
    // stickyProxy leaves body parsing to the app. A gateway passes bodies through as streams (any content type, never
    // re-encoded), so the proxies get a scope of their own with a pass-through parser.
    await app.register(async (proxies) => {
      proxies.removeAllContentTypeParsers()
      proxies.addContentTypeParser('*', (_request, payload, done) => { done(null, payload) })
      // The upstream serves the same paths as the gateway: the target goes as it came.
      await proxies.register(stickyProxy, { prefix: '/shop', pool: 'echo' })
      // API clients keep no cookies: the tenant they name is the key, and the upstream does not know the prefix.
      await proxies.register(stickyProxy, { prefix: '/api', pool: 'echo', rewritePrefix: '', sticky: { key: { header: 'x-tenant' } } })
    })
    await app.listen({ port: opts.port ?? 3000, host: opts.host ?? '127.0.0.1' })
  } catch (error) {
    await app.close()
    await stopUpstreams()
    throw error
  }
  // -------------------------------------------------------------------------------------------------------------------

  const { port } = app.server.address() as AddressInfo
  let closing: Promise<void> | undefined
  return {
    url: `http://${browserHost(opts.host ?? '127.0.0.1')}:${port}`,
    upstreams: started.map(({ id, url }) => ({ id, url })),
    app,
    close () {
      // Gateway first (its preClose ends the WebSocket tunnels), so nothing is forwarded to an upstream already gone.
      closing ??= app.close().then(stopUpstreams)
      return closing
    }
  }
}

if (require.main === module) {
  let options: ExampleOptions = {}
  runExample('fastify-sticky prefix-proxy example', async (trace) => {
    options = readExampleEnv(process.env)
    return startPrefixProxyExample({ ...options, trace })
  }, (example) => `${example.url}/shop/ or ${example.url}/api/ with x-tenant (upstreams ${example.upstreams.map((u) => u.id).join(', ')}; ${options.redis === undefined ? 'in-memory store' : 'bindings in Redis'})`)
}
