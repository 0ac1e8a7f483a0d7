/**
 * The behaviour suite (test/doors/behaviours.ts) through the Express door (fastify-sticky/express) on Express 5:
 * `sticky.proxy()` handlers mounted with `app.use`, upgrades through `sticky.upgrade`.
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import express from 'express'
import t from 'tap'
import { createStickyMiddleware, silentLogger } from '../../lib/express/index'
import { DOOR_ROUTES, doorBehaviours, type Door } from '../doors/behaviours'

const express5: Door = {
  name: 'Express',
  async start (options) {
    const sticky = await createStickyMiddleware({ ...options, logger: silentLogger })
    const app = express()
    for (const route of DOOR_ROUTES) app.use(route.prefix, sticky.proxy(route.sticky))
    app.use(sticky.proxy())
    const server = http.createServer(app)
    server.on('upgrade', sticky.upgrade)
    const close = async (): Promise<void> => {
      server.closeAllConnections()
      const closed = new Promise((resolve) => server.close(resolve))
      await sticky.close()
      await closed
    }
    try {
      await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve))
    } catch (error) {
      await close()
      throw error
    }
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, api: sticky.api, close }
  }
}

doorBehaviours(t, express5)
