import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import type { TeardownOwner } from './teardown-owner'
import sticky, { type StickyPluginOptions } from '../../lib/index'
import type { TestUpstream } from './upstreams'

/** A secret long enough for the plugin, shared by the gateways of one test. */
export const TEST_SECRET = 'test-secret-0123456789-abcdefghijklmnop'

/** A running gateway built on the plugin. */
export interface TestGateway {
  readonly app: FastifyInstance
  /** `http://127.0.0.1:<port>` */
  readonly url: string
}

/** Options of {@link startGateway}: plugin options (pools default to one pool `shop` of the given upstreams). */
export interface StartGatewayOptions extends Partial<StickyPluginOptions> {
  upstreams?: TestUpstream[]
  fastify?: FastifyServerOptions
  /** Adds routes before listening; by default every path is forwarded with `config.sticky: true`. */
  routes?: (app: FastifyInstance) => void
}

/** Starts a gateway on a free loopback port, closed in `t.teardown`. */
export async function startGateway (t: TeardownOwner, options: StartGatewayOptions): Promise<TestGateway> {
  const { upstreams, fastify, routes, ...plugin } = options
  const app = Fastify(fastify)
  t.teardown(() => app.close())
  await app.register(sticky, {
    secret: TEST_SECRET,
    pools: { shop: { upstreams: (upstreams ?? []).map((u) => ({ id: u.id, url: u.url })) } },
    ...plugin
  })
  if (routes !== undefined) routes(app)
  else app.all('/*', { config: { sticky: true } }, (_request, reply) => reply.forward())
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  return { app, url }
}
