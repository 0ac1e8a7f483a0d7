// Type-level checks of the Express door, verified by `tsc --noEmit` (never executed): handlers fit Express 5's
// app.use and node:http, route config is typed, function keys get a node:http request.
import http from 'node:http'
import express from 'express'
import { createStickyMiddleware, type StickyDecision, type StickyMiddleware } from '../../lib/express/index'

async function typeChecks (): Promise<void> {
  const sticky: StickyMiddleware = await createStickyMiddleware({
    secret: 'x'.repeat(32),
    pools: { shop: { upstreams: [{ id: 'a', url: 'http://127.0.0.1:1' }] } },
    defaults: { key: [(request) => request.headers['x-user'] as string | undefined, 'cookie'] },
    trustProxy: 1
  })
  const app = express()
  const shop = sticky.proxy({ pool: 'shop', idleTimeout: '5m' })
  app.use('/shop', shop)
  app.all('/api/{*rest}', sticky.proxy({ key: { header: 'x-tenant' } }))
  app.use(sticky.proxy(false))
  const server = http.createServer((req, res) => { shop(req, res, () => { res.statusCode = 404; res.end() }) })
  server.on('upgrade', shop.upgrade)
  server.on('upgrade', sticky.upgrade)
  const decision: StickyDecision | undefined = sticky.decisionOf(new http.IncomingMessage(null as never))
  void decision
  // @ts-expect-error: key kinds are 'cookie', 'ip', { header } ... or false
  sticky.proxy({ key: 'magic' })
  // @ts-expect-error: durations are ms or '<n><unit>'
  sticky.proxy({ idleTimeout: '5 minutes' })
  // @ts-expect-error: admin is the Fastify plugin's only
  await createStickyMiddleware({ secret: 'x'.repeat(32), pools: {}, admin: { token: 'x'.repeat(16) } })
  await sticky.close()
}
void typeChecks
