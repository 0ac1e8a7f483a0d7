/**
 * `npx tsx examples/express/index.ts`: an Express gateway in front of two echo upstreams that count each visitor's
 * requests in their own memory. Request the printed URL a few times with a cookie jar (`curl -b j -c j URL`): the
 * count goes up, always on the same upstream. Without the jar every request is a new visitor. WebSockets at the same
 * URL are routed the same way (`ws://.../live`).
 * Environment: `PORT` and `HOST` of the gateway (3000, 127.0.0.1), `UPSTREAM_PORTS` (4101,4102), `REDIS_URL` (share
 * bindings with other gateways, Express or Fastify; in-memory without it), `STICKY_SECRET` (random without it).
 *
 * The gateway part of {@link startExpressExample} is written as a user of fastify-sticky/express would write it.
 */
import { randomBytes } from 'node:crypto'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import express from 'express'
import { createStickyMiddleware, type StickyMiddleware } from '../../lib/express/index'
import { browserHost, readExampleEnv, runExample, startEchoPair, type ExampleOptions } from '../example-runner'

/** Options of {@link startExpressExample}: ports, host, store, secret, trace. */
export type ExpressExampleOptions = ExampleOptions

/** A running example. */
export interface ExpressExample {
  /** The gateway's URL, e.g. `http://127.0.0.1:3000`. */
  readonly url: string
  readonly upstreams: ReadonlyArray<{ id: string, url: string }>
  /** The gateway's programmatic API (drain, session counts). */
  readonly sticky: StickyMiddleware
  /** Stops the gateway, then the upstreams. Safe to call twice. */
  close (): Promise<void>
}

/**
 * Starts the upstreams and the gateway.
 * @throws Error when a port is taken (whatever already started is stopped first)
 */
export async function startExpressExample (opts: ExpressExampleOptions = {}): Promise<ExpressExample> {
  const { upstreams: started, stop: stopUpstreams } = await startEchoPair(opts.upstreamPorts)

  // ---- The gateway, as a user of fastify-sticky/express writes it --------------------------------------------------
  const sticky = await createStickyMiddleware({
    // First signs, all verify. Gateways sharing a Redis must share it; a random one suits a single process.
    secret: [opts.secret ?? randomBytes(32).toString('base64url')],
    redis: opts.redis,
    pools: { echo: { upstreams: started.map(({ id, url }) => ({ id, url })) } },
    defaults: { idleTimeout: '30m' }
  })
  const app = express()
  // The gateway's own routes come first; everything else is proxied.
  app.get('/healthz', (_req, res) => { res.json({ ok: true }) })
  const trace = opts.trace
  if (trace !== undefined) {
    app.use((req, res, next) => {
      res.once('finish', () => {
        const decision = sticky.decisionOf(req)
        if (decision !== undefined) trace(`${req.method} ${req.originalUrl} → upstream ${decision.upstream.id} (${decision.decision}) ${res.statusCode}`)
      })
      next()
    })
  }
  // Mount the proxy before any body parser: it streams bodies through untouched.
  const echo = sticky.proxy({ pool: 'echo' })
  app.use(echo)
  const server = http.createServer(app)
  // Express never sees upgrades: the proxy's own listener routes them with the same affinity.
  server.on('upgrade', echo.upgrade)
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(opts.port ?? 3000, opts.host ?? '127.0.0.1', () => { server.off('error', reject); resolve() })
    })
  } catch (error) {
    await sticky.close()
    await stopUpstreams()
    throw error
  }
  // -------------------------------------------------------------------------------------------------------------------

  const { port } = server.address() as AddressInfo
  let closing: Promise<void> | undefined
  return {
    url: `http://${browserHost(opts.host ?? '127.0.0.1')}:${port}`,
    upstreams: started.map(({ id, url }) => ({ id, url })),
    sticky,
    close () {
      closing ??= (async () => {
        // Stop accepting, end the tunnels (server.close() waits on them), then the upstreams.
        const closed = new Promise((resolve) => server.close(resolve))
        server.closeIdleConnections()
        await sticky.close()
        await closed
        await stopUpstreams()
      })()
      return closing
    }
  }
}

if (require.main === module) {
  let options: ExampleOptions = {}
  runExample('fastify-sticky Express example', async (trace) => {
    options = readExampleEnv(process.env)
    return startExpressExample({ ...options, trace })
  }, (example) => `${example.url} (upstreams ${example.upstreams.map((u) => u.id).join(', ')}; ${options.redis === undefined ? 'in-memory store' : 'bindings in Redis'})`)
}
