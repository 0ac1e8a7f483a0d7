/**
 * `npx tsx examples/http-proxy/index.ts`: a Fastify gateway that used `app.register(httpProxy, { upstream, prefix:
 * '/shop', websocket: true })`, made sticky with `stickyHttpProxy`, in front of two echo upstreams that count each
 * visitor's requests in their own memory. Request the printed URL a few times with a cookie jar
 * (`curl -b j -c j URL`): the count goes up, always on the same upstream. Without the jar every request is a new
 * visitor. The upstream sees the path without `/shop` (http-proxy's default `rewritePrefix`), and WebSockets under
 * the prefix (`ws://.../shop/live`) reach the visitor's upstream.
 * Environment: `PORT` and `HOST` of the gateway (3000, 127.0.0.1), `UPSTREAM_PORTS` (4101,4102), `REDIS_URL` (share
 * bindings with other gateways; in-memory without it), `STICKY_SECRET` (random without it).
 *
 * The gateway part of {@link startHttpProxyExample} is written as a user of fastify-sticky/http-proxy would write it.
 */
import { randomBytes } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import Fastify, { type FastifyInstance } from 'fastify'
import sticky from '../../lib/index'
import { stickyHttpProxy } from '../../lib/http-proxy/index'
import { browserHost, readExampleEnv, runExample, startEchoPair, type ExampleOptions } from '../example-runner'

/** Options of {@link startHttpProxyExample}: ports, host, store, secret, trace. */
export type HttpProxyExampleOptions = ExampleOptions

/** A running example. */
export interface HttpProxyExample {
  /** The gateway's URL, e.g. `http://127.0.0.1:3000`; the proxy answers under `/shop`. */
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
export async function startHttpProxyExample (opts: HttpProxyExampleOptions = {}): Promise<HttpProxyExample> {
  const { upstreams: started, stop: stopUpstreams } = await startEchoPair(opts.upstreamPorts)

  // ---- The gateway, as a user of fastify-sticky/http-proxy writes it -----------------------------------------------
  const app = Fastify()
  try {
    // Registered before the proxy: it is what picks each request's upstream.
    await app.register(sticky, {
      // First signs, all verify. Gateways sharing a Redis must share it; a random one suits a single process.
      secret: [opts.secret ?? randomBytes(32).toString('base64url')],
      redis: opts.redis,
      pools: { echo: { upstreams: started.map(({ id, url }) => ({ id, url })) } },
      defaults: { idleTimeout: '30m' }
    })
    // The gateway's own routes live outside the prefix.
    app.get('/healthz', async () => ({ ok: true }))
    const trace = opts.trace
    if (trace !== undefined) {
      // request.sticky says where the request went and why: hit | new | rebind | degraded | none.
      app.addHook('onResponse', async (request, reply) => {
        if (request.sticky !== null) trace(`${request.method} ${request.url} → upstream ${request.sticky.upstream.id} (${request.sticky.decision}) ${reply.statusCode}`)
      })
    }
    // was: app.register(httpProxy, { upstream: 'http://127.0.0.1:4101', prefix: '/shop', websocket: true })
    // The pool replaces `upstream`; http-proxy still strips the prefix and streams bodies through unparsed.
    await app.register(stickyHttpProxy, { prefix: '/shop', pool: 'echo', websocket: true })
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
  runExample('fastify-sticky http-proxy example', async (trace) => {
    options = readExampleEnv(process.env)
    return startHttpProxyExample({ ...options, trace })
  }, (example) => `${example.url}/shop/ (upstreams ${example.upstreams.map((u) => u.id).join(', ')}; ${options.redis === undefined ? 'in-memory store' : 'bindings in Redis'})`)
}
