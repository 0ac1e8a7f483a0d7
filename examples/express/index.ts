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
import { startEchoUpstream, type EchoUpstream } from './echo-upstream'

/** Options of {@link startExpressExample}. */
export interface ExpressExampleOptions {
  /** Gateway port; 0 picks a free one. @defaultValue 3000 */
  port?: number
  /** @defaultValue `'127.0.0.1'` */
  host?: string
  /** One upstream per port, ids a and b; 0 picks free ports. @defaultValue `[4101, 4102]` */
  upstreamPorts?: [number, number]
  /** Share bindings through this Redis; in-memory without it. */
  redis?: string
  /** At least 32 characters; every gateway sharing `redis` needs the same one. @defaultValue a random one */
  secret?: string
  /** Called with one line per forwarded request (`GET / → upstream b (hit) 200`); nothing by default. */
  trace?: (line: string) => void
}

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
  const ports = opts.upstreamPorts ?? [4101, 4102]
  const started: EchoUpstream[] = []
  const stopUpstreams = async (): Promise<void> => { await Promise.all(started.map((u) => u.close())) }
  try {
    for (const [i, port] of ports.entries()) started.push(await startEchoUpstream('ab'[i], port))
  } catch (error) {
    await stopUpstreams()
    throw error
  }

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

function browserHost (host: string): string {
  if (host === '0.0.0.0' || host === '') return '127.0.0.1'
  if (host === '::') return '[::1]'
  return host.includes(':') ? `[${host}]` : host
}

function isPort (value: string): boolean {
  return /^\d{1,5}$/.test(value) && Number(value) <= 65535
}

function readEnv (env: NodeJS.ProcessEnv): ExpressExampleOptions {
  const options: ExpressExampleOptions = {}
  if (env.PORT !== undefined && env.PORT !== '') {
    if (!isPort(env.PORT)) throw new Error(`PORT must be a port number (0-65535), got ${JSON.stringify(env.PORT)}`)
    options.port = Number(env.PORT)
  }
  if (env.UPSTREAM_PORTS !== undefined && env.UPSTREAM_PORTS !== '') {
    const ports = env.UPSTREAM_PORTS.split(',').map((port) => port.trim())
    if (ports.length !== 2 || !ports.every(isPort)) throw new Error(`UPSTREAM_PORTS must be two comma-separated port numbers, got ${JSON.stringify(env.UPSTREAM_PORTS)}`)
    options.upstreamPorts = [Number(ports[0]), Number(ports[1])]
  }
  if (env.HOST !== undefined && env.HOST !== '') options.host = env.HOST
  if (env.REDIS_URL !== undefined && env.REDIS_URL !== '') options.redis = env.REDIS_URL
  if (env.STICKY_SECRET !== undefined && env.STICKY_SECRET !== '') options.secret = env.STICKY_SECRET
  return options
}

async function main (): Promise<void> {
  const options = readEnv(process.env)
  const example = await startExpressExample({ ...options, trace: (line) => { process.stdout.write(`  ${line}\n`) } })
  const store = options.redis === undefined ? 'in-memory store' : 'bindings in Redis'
  process.stdout.write(`fastify-sticky Express example: open ${example.url} (upstreams ${example.upstreams.map((u) => u.id).join(', ')}; ${store}). Ctrl-C to stop.\n`)
  const stop = (): void => {
    process.stdout.write('fastify-sticky Express example: stopping\n')
    example.close().then(() => process.exit(0), (error: unknown) => {
      process.stderr.write(`fastify-sticky Express example: ${(error as Error).message}\n`)
      process.exit(1)
    })
  }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
}

if (require.main === module) {
  main().catch((error: unknown) => {
    const hint = (error as NodeJS.ErrnoException).code === 'EADDRINUSE' ? ' (a port is taken: choose others with PORT and UPSTREAM_PORTS)' : ''
    process.stderr.write(`fastify-sticky Express example: ${(error as Error).message}${hint}\n`)
    process.exit(1)
  })
}
