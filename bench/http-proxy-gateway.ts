/**
 * The @fastify/http-proxy peer rows of the benchmark (users compare fastify-sticky with it):
 *
 * - `HTTP_PROXY_MODE=plain`: @fastify/http-proxy forwarding every path to the first upstream, no stickiness.
 *   Same Fastify options as bench/plain-gateway.ts (logger level, `trustProxy: false`) and the same undici
 *   timeouts; body handling is http-proxy's own (it registers its pass-through parsers), as a user gets it.
 * - `HTTP_PROXY_MODE=sticky`: the sticky http-proxy door, `stickyHttpProxy` from lib/http-proxy, with the plugin
 *   configured exactly as the `fastify-sticky` command configures it from the same environment (readGatewayEnv:
 *   same secret, cookie name, memory store when there is no REDIS_URL).
 *
 * Same operator contract as plain-gateway.ts: env `PORT`, `HOST`, `UPSTREAMS`, `LOG_LEVEL`; prints a line
 * containing `listening` once it listens.
 */
import Fastify, { type FastifyInstance } from 'fastify'
import httpProxy from '@fastify/http-proxy'
import sticky from '../lib/index'
import { stickyHttpProxy } from '../lib/http-proxy/index'
import { readGatewayEnv } from '../lib/gateway/env-settings'
import { DEFAULT_BODY_TIMEOUT_MS, DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_HEADERS_TIMEOUT_MS } from '../lib/options'

function firstUpstream (list: string | undefined): string {
  const first = (list ?? '').split(',')[0] ?? ''
  const url = first.slice(first.indexOf('=') + 1)
  if (!/^https?:\/\//.test(url)) throw new Error(`http-proxy-gateway: UPSTREAMS must be "id=url,...", got ${JSON.stringify(list)}`)
  return url
}

async function build (mode: string): Promise<FastifyInstance> {
  const app = Fastify({ logger: { level: process.env.LOG_LEVEL ?? 'info' }, trustProxy: false })
  if (mode === 'plain') {
    await app.register(httpProxy, {
      upstream: firstUpstream(process.env.UPSTREAMS),
      disableRequestLogging: true,
      websocket: false,
      undici: {
        connect: { timeout: DEFAULT_CONNECT_TIMEOUT_MS },
        headersTimeout: DEFAULT_HEADERS_TIMEOUT_MS,
        bodyTimeout: DEFAULT_BODY_TIMEOUT_MS
      } as Record<string, unknown>
    })
  } else if (mode === 'sticky') {
    const settings = readGatewayEnv(process.env)
    await app.register(sticky, settings.plugin)
    await app.register(stickyHttpProxy, {})
  } else {
    throw new Error(`http-proxy-gateway: HTTP_PROXY_MODE must be plain or sticky, got ${JSON.stringify(mode)}`)
  }
  return app
}

async function main (): Promise<void> {
  const mode = process.env.HTTP_PROXY_MODE ?? 'plain'
  const app = await build(mode)
  const address = await app.listen({ port: Number(process.env.PORT ?? 3000), host: process.env.HOST ?? '127.0.0.1' })
  process.stdout.write(`http-proxy gateway (${mode}) listening on ${address}\n`)
  const stop = (): void => { app.close().then(() => process.exit(0), () => process.exit(1)) }
  process.once('SIGTERM', stop)
  process.once('SIGINT', stop)
}

main().catch((error: unknown) => {
  process.stderr.write(`http-proxy-gateway: ${(error as Error).stack ?? String(error)}\n`)
  process.exit(1)
})
