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
  const app = Fastify({ logger: { level: settings.logLevel }, trustProxy: settings.trustProxy })
  // A gateway passes bodies through as streams: no parsing, no re-encoding, any content type.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (_request, payload, done) => { done(null, payload) })
  await app.register(sticky, settings.plugin)
  app.all('/*', { config: { sticky: true } }, (_request, reply) => reply.forward())
  return app
}

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
  const address = await app.listen({ host: settings.host, port: settings.port })
  const store = settings.plugin.redis === undefined ? 'in-memory store' : 'Redis store'
  process.stdout.write(`gateway listening on ${address} (${store}${settings.generatedSecret ? '; random STICKY_SECRET: set one shared by all gateways' : ''})\n`)
  const stop = (): void => {
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
