/**
 * The Fastify app under both gateways the command serves (environment or config file): its logger, `trustProxy`,
 * and bodies passed through as streams.
 */
import Fastify, { type FastifyInstance } from 'fastify'
import type { GatewaySettings } from './settings'

/**
 * @param settings - the log level and `trustProxy` to run with
 * @returns a Fastify app that parses no body (routes and the plugin are the caller's to add)
 */
export function createGatewayApp (settings: Pick<GatewaySettings, 'logLevel' | 'trustProxy'>): FastifyInstance {
  const hops = settings.trustProxy
  // Fastify takes a hop count at run time but its types do not: say it as the equivalent function.
  const trustProxy = typeof hops === 'number' ? (_address: string, hop: number) => hop < hops : hops
  const app = Fastify({ logger: { level: settings.logLevel }, trustProxy })
  // A gateway passes bodies through as streams: no parsing, no re-encoding, any content type.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (_request, payload, done) => { done(null, payload) })
  return app
}
