/**
 * The behaviour suite (test/doors/behaviours.ts) through `stickyHttpProxy` (fastify-sticky/http-proxy): each route
 * an @fastify/http-proxy registration naming the pool, WebSocket through the plugin's tunnel.
 */
import Fastify from 'fastify'
import t from 'tap'
import sticky from '../../lib/index'
import { stickyHttpProxy } from '../../lib/http-proxy/index'
import { DOOR_ROUTES, doorBehaviours, type Door } from './behaviours'

const httpProxy: Door = {
  name: 'stickyHttpProxy',
  async start (options) {
    const app = Fastify()
    try {
      await app.register(sticky, options)
      // rewritePrefix = prefix: the target goes upstream unchanged, as through the other doors.
      for (const route of DOOR_ROUTES) await app.register(stickyHttpProxy, { prefix: route.prefix, rewritePrefix: route.prefix, sticky: route.sticky })
      await app.register(stickyHttpProxy, {})
      const url = await app.listen({ host: '127.0.0.1', port: 0 })
      return { url, api: app.sticky, close: () => app.close() }
    } catch (error) {
      await app.close()
      throw error
    }
  }
}

doorBehaviours(t, httpProxy)
