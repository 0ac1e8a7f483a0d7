/**
 * A ready sticky gateway configured only by environment (`npm run gateway`). See README "The gateway".
 * It proxies every path and method, bodies streamed unparsed, to one pool of upstreams.
 */
import Fastify, { type FastifyInstance } from 'fastify'
import sticky from '../lib/index'
import { GatewayEnvError, readGatewayEnv, type GatewaySettings } from './gateway-env'

/**
 * Builds the gateway (not listening yet).
 * @param settings - from {@link readGatewayEnv}
 */
export async function buildGateway (settings: GatewaySettings): Promise<FastifyInstance> {
  const hops = settings.trustProxy
  // Fastify takes a hop count at run time but its types do not: say it as the equivalent function.
  const trustProxy = typeof hops === 'number' ? (_address: string, hop: number) => hop < hops : hops
  const app = Fastify({ logger: { level: settings.logLevel }, trustProxy })
  // A gateway passes bodies through as streams: no parsing, no re-encoding, any content type.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (_request, payload, done) => { done(null, payload) })
  await app.register(sticky, settings.plugin)
  app.all('/*', { config: { sticky: true } }, (_request, reply) => reply.forward())
  return app
}

const SHUTDOWN_GRACE_MS = 10_000

async function main (): Promise<void> {
  let settings: GatewaySettings
  try {
    settings = readGatewayEnv(process.env)
  } catch (error) {
    if (error instanceof GatewayEnvError) {
      process.stderr.write(`gateway: ${error.message}\n`)
      process.exit(2)
    }
    throw error
  }
  const app = await buildGateway(settings)
  let address: string
  try {
    address = await app.listen({ host: settings.host, port: settings.port })
  } catch (error) {
    throw new Error(`HOST/PORT: cannot listen on ${settings.host}:${settings.port} (${(error as Error).message})`)
  }
  const store = settings.plugin.redis === undefined ? 'in-memory store' : 'Redis store'
  process.stdout.write(`gateway listening on ${address} (${store}${settings.generatedSecret ? '; random STICKY_SECRET: set one shared by all gateways' : ''})\n`)
  const stop = (): void => {
    // In-flight requests get a grace period, not the upstream timeouts (which may be a minute).
    setTimeout(() => process.exit(0), SHUTDOWN_GRACE_MS).unref()
    app.close().then(() => process.exit(0), () => process.exit(1))
  }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
}

if (require.main === module) {
  main().catch((error: unknown) => {
    process.stderr.write(`gateway: ${(error as Error).message}\n`)
    process.exit(1)
  })
}
