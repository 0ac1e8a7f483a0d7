/**
 * The behaviour suite (test/doors/behaviours.ts) through the Fastify plugin's own door: routes with `config.sticky`
 * whose handler is `reply.forward()`.
 */
import Fastify from 'fastify'
import t from 'tap'
import sticky from '../../lib/index'
import { DOOR_ROUTES, doorBehaviours, type Door } from './behaviours'

const fastifyRoutes: Door = {
  name: 'Fastify reply.forward()',
  async start (options) {
    const app = Fastify()
    try {
      await app.register(sticky, options)
      for (const route of DOOR_ROUTES) app.all(`${route.prefix}/*`, { config: { sticky: route.sticky } }, (_request, reply) => reply.forward())
      app.all('/*', { config: { sticky: true } }, (_request, reply) => reply.forward())
      const url = await app.listen({ host: '127.0.0.1', port: 0 })
      return { url, api: app.sticky, close: () => app.close() }
    } catch (error) {
      await app.close()
      throw error
    }
  }
}

doorBehaviours(t, fastifyRoutes)
