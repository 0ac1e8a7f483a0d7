/**
 * Express (5 or 4) and plain node:http gateways on the Express door, started like test/support/gateway.ts starts
 * Fastify ones: a free loopback port, closed in `t.teardown`, one pool `shop` of the given upstreams by default.
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import express5 from 'express'
import type { Test } from 'tap'
import { createStickyMiddleware, silentLogger, type StickyExpressOptions, type StickyMiddleware } from '../../lib/express/index'
import { TEST_SECRET } from '../support/gateway'

// Express 4 is installed under an alias (devDependency `express4`) so both majors are tested side by side.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const express4 = require('express4') as typeof express5

/** Which server the door runs in. */
export type Host = 'express5' | 'express4' | 'node'

/** A running gateway on the Express door. */
export interface TestExpressGateway {
  readonly sticky: StickyMiddleware
  readonly server: http.Server
  /** `http://127.0.0.1:<port>` */
  readonly url: string
}

/** Options of {@link startExpressGateway}. */
export interface StartExpressGatewayOptions extends Partial<StickyExpressOptions> {
  upstreams?: ReadonlyArray<{ id: string, url: string }>
  /** @defaultValue `'express5'` */
  host?: Host
  /**
   * Mounts the proxies on the app (Express hosts), or adds the server's `'request'` listener (node host); by
   * default every path goes to `sticky.proxy()` and upgrades to `sticky.upgrade`.
   */
  mount?: (sticky: StickyMiddleware, app: express5.Express | undefined, server: http.Server) => void
}

/** Starts a gateway on the Express door (silent logger unless one is given). */
export async function startExpressGateway (t: Test, options: StartExpressGatewayOptions): Promise<TestExpressGateway> {
  const { upstreams, host = 'express5', mount, ...door } = options
  const sticky = await createStickyMiddleware({
    secret: TEST_SECRET,
    pools: { shop: { upstreams: (upstreams ?? []).map((u) => ({ id: u.id, url: u.url })) } },
    logger: silentLogger,
    ...door
  })
  const app = host === 'node' ? undefined : (host === 'express4' ? express4 : express5)()
  const server = app === undefined ? http.createServer() : http.createServer(app)
  if (mount !== undefined) mount(sticky, app, server)
  else {
    const handler = sticky.proxy()
    if (app !== undefined) app.use(handler)
    else server.on('request', (req, res) => { handler(req, res, () => { res.statusCode = 404; res.end() }) })
    server.on('upgrade', sticky.upgrade)
  }
  t.teardown(async () => {
    server.closeAllConnections()
    const closed = new Promise((resolve) => server.close(resolve))
    await sticky.close()
    await closed
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { sticky, server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }
}
