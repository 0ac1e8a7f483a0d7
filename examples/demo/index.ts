/**
 * `npm run demo`: "shop" upstreams that keep carts in their own memory, behind a gateway that makes every browser
 * stick to one of them. Open the printed URL, add items, reload: the cart stays. Clear the `sticky` cookie (or open
 * a private window) and you may land on another upstream, with an empty cart.
 * Sessions can move, too: the shops serve fastify-sticky/upstream, and the gateway's status page (`/_sticky/`, with
 * the admin token printed at start) evacuates an upstream (its carts go along) or rebalances the pool; the last shop
 * starts as a spare that the demo controls (`/_demo/`) add to the pool at run time.
 * Environment: `PORT` and `HOST` of the gateway (3000, 127.0.0.1), `SHOP_PORTS` (4001,4002,4003), `ADMIN_TOKEN`
 * (a random one by default).
 *
 * The gateway part of {@link startDemo} is written as a user of fastify-sticky would write it.
 */
import { randomBytes } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import Fastify from 'fastify'
import sticky from '../../lib/index'
import { browserHost, isPort, runExample } from '../example-runner'
import { demoControls, DEMO_CONTROLS_PATH } from './demo-controls'
import { startShop, type Shop } from './shop-upstream'

/** Options of {@link startDemo}. */
export interface DemoOptions {
  /** Gateway port; 0 picks a free one. @defaultValue 3000 */
  port?: number
  /** Gateway host. @defaultValue `'127.0.0.1'` */
  host?: string
  /**
   * One shop per port, with ids a, b, c, ...; 0 picks free ports. With two or more, the last one starts as a spare,
   * outside the pool, for the demo controls to add.
   * @defaultValue `[4001, 4002, 4003]`
   */
  shopPorts?: number[]
  /** The admin API's bearer token, at least 16 characters. @defaultValue a random one */
  adminToken?: string
  /** Fastify's own (JSON) request logging on the gateway. @defaultValue false */
  logger?: boolean
  /** Called with one line per forwarded request (`GET / → upstream b (hit) 200`); nothing by default. */
  trace?: (line: string) => void
}

/** A running demo. */
export interface Demo {
  /** The gateway's URL, e.g. `http://127.0.0.1:3000`. */
  url: string
  /** The shops, in id order (the spare included). */
  shops: ReadonlyArray<{ id: string, url: string }>
  /** The shop started outside the pool, if any. */
  spare: { id: string, url: string } | undefined
  /** The status page, e.g. `http://127.0.0.1:3000/_sticky/`. */
  statusPage: string
  /** The demo controls, e.g. `http://127.0.0.1:3000/_demo/`. */
  controls: string
  /** What the status page and the demo controls ask for. */
  adminToken: string
  /** Stops the gateway, then the shops. Safe to call twice. */
  close(): Promise<void>
}

const SHOP_IDS = 'abcdefgh'
const STATUS_PAGE_PATH = '/_sticky/'

/**
 * Starts the shops and the gateway.
 * @param opts - ports, host, logging
 * @returns the gateway URL, the shops and a `close()`
 * @throws Error when a port is taken (every server already started is closed first)
 */
export async function startDemo (opts: DemoOptions = {}): Promise<Demo> {
  const shopPorts = opts.shopPorts ?? [4001, 4002, 4003]
  if (shopPorts.length === 0 || shopPorts.length > SHOP_IDS.length) throw new RangeError(`shopPorts must list 1-${SHOP_IDS.length} ports`)
  const host = opts.host ?? '127.0.0.1'
  const adminToken = opts.adminToken ?? randomBytes(18).toString('base64url')
  // Shared by the gateway and every shop; random is fine here: they all run in this process.
  const handoffSecret = randomBytes(32).toString('base64url')
  const started: Shop[] = []
  const shops: Array<{ id: string, url: string }> = []
  const closeShops = async (): Promise<void> => { await Promise.all(started.map((shop) => shop.close())) }
  try {
    for (const [i, port] of shopPorts.entries()) {
      // Upstreams are internal: only the gateway is meant to be reachable from a browser.
      const shop = await startShop({
        id: SHOP_IDS[i],
        port,
        host: '127.0.0.1',
        handoffSecret,
        operatorPages: { statusPage: STATUS_PAGE_PATH, controls: `${DEMO_CONTROLS_PATH}/` }
      })
      started.push(shop)
      shops.push({ id: SHOP_IDS[i], url: shop.url })
    }
  } catch (error) {
    await closeShops()
    throw error
  }
  const spare = shops.length >= 2 ? shops[shops.length - 1] : undefined
  const members = spare === undefined ? shops : shops.slice(0, -1)

  // ---- The gateway, as a user of the plugin writes it ----------------------------------------------------------
  const app = Fastify({ logger: opts.logger ?? false })
  let gatewayUrl = ''
  try {
    // Pass request bodies through to the upstream unparsed: a gateway should not re-encode bodies.
    app.removeAllContentTypeParsers()
    app.addContentTypeParser('*', (_request, payload, done) => { done(null, payload) })

    await app.register(sticky, {
      // First signs, all verify (add the old one second when rotating). Several gateways must share it;
      // a random one is fine here: one process, and the in-memory store forgets its bindings on restart anyway.
      secret: [randomBytes(32).toString('base64url')],
      pools: { shop: { upstreams: members } },
      // No `redis` option: bindings live in this process's memory (one gateway). Give `redis: 'redis://...'`
      // to share them between gateways.
      defaults: { idleTimeout: '30m', maxLifetime: '12h' },
      // Moves carry the session's state: the shops serve fastify-sticky/upstream with the same secret.
      handoff: { secret: handoffSecret },
      // The status page and admin API at /_sticky/ (on this port, to keep the demo to one; in production prefer
      // `admin.listen`, a port of its own that proxied apps never share).
      admin: { token: adminToken }
    })
    await app.register(demoControls, { token: adminToken, pool: 'shop', spare, gatewayUrl: () => gatewayUrl, statusPage: STATUS_PAGE_PATH })

    // Every method and path goes to the shop this browser is bound to. The plugin sets the signed `sticky`
    // cookie (Path=/; HttpOnly; SameSite=Lax) on a browser's first response.
    app.all('/*', { config: { sticky: { pool: 'shop' } } }, (_request, reply) => reply.forward())

    const trace = opts.trace
    if (trace !== undefined) {
      // request.sticky says where the request went and why: hit | new | rebind | degraded | none.
      app.addHook('onResponse', async (request, reply) => {
        if (request.sticky !== null) {
          trace(`${request.method} ${request.url} → upstream ${request.sticky.upstream.id} (${request.sticky.decision}) ${reply.statusCode}`)
        }
      })
    }

    await app.listen({ port: opts.port ?? 3000, host })
    gatewayUrl = `http://${browserHost(host)}:${(app.server.address() as AddressInfo).port}`
  } catch (error) {
    await app.close()
    await closeShops()
    throw error
  }
  // ---------------------------------------------------------------------------------------------------------------

  let closing: Promise<void> | undefined
  return {
    url: gatewayUrl,
    shops,
    spare,
    statusPage: `${gatewayUrl}${STATUS_PAGE_PATH}`,
    controls: `${gatewayUrl}${DEMO_CONTROLS_PATH}/`,
    adminToken,
    close () {
      // Gateway first, so no request is forwarded to a shop that is already gone.
      closing ??= app.close().then(closeShops)
      return closing
    }
  }
}

function describePorts (shops: ReadonlyArray<{ url: string }>): string {
  const ports = shops.map((shop) => Number(new URL(shop.url).port))
  const contiguous = ports.every((port, i) => i === 0 || port === ports[i - 1] + 1)
  return contiguous && ports.length > 1 ? `${ports[0]}-${ports[ports.length - 1]}` : ports.join(', ')
}

function readEnv (env: NodeJS.ProcessEnv): Pick<DemoOptions, 'port' | 'host' | 'shopPorts' | 'adminToken'> {
  const options: Pick<DemoOptions, 'port' | 'host' | 'shopPorts' | 'adminToken'> = {}
  if (env.PORT !== undefined && env.PORT !== '') {
    if (!isPort(env.PORT)) throw new Error(`PORT must be a port number (0-65535), got ${JSON.stringify(env.PORT)}`)
    options.port = Number(env.PORT)
  }
  if (env.SHOP_PORTS !== undefined && env.SHOP_PORTS !== '') {
    const ports = env.SHOP_PORTS.split(',').map((port) => port.trim())
    if (!ports.every(isPort) || ports.length > SHOP_IDS.length) {
      throw new Error(`SHOP_PORTS must be a comma list of 1-${SHOP_IDS.length} port numbers, got ${JSON.stringify(env.SHOP_PORTS)}`)
    }
    options.shopPorts = ports.map(Number)
  }
  if (env.HOST !== undefined && env.HOST !== '') options.host = env.HOST
  if (env.ADMIN_TOKEN !== undefined && env.ADMIN_TOKEN !== '') {
    if (env.ADMIN_TOKEN.length < 16) throw new Error(`ADMIN_TOKEN must be at least 16 characters, got ${env.ADMIN_TOKEN.length}`)
    options.adminToken = env.ADMIN_TOKEN
  }
  return options
}

if (require.main === module) {
  runExample(
    'fastify-sticky demo',
    async (trace) => {
      const demo = await startDemo({ ...readEnv(process.env), trace })
      process.stdout.write(`fastify-sticky demo: status page ${demo.statusPage} and demo controls ${demo.controls}, admin token ${demo.adminToken}\n`)
      return demo
    },
    (demo) => `${demo.url} (upstreams ${demo.shops.map((shop) => shop.id).join(', ')} on ${describePorts(demo.shops)}${demo.spare === undefined ? '' : `, ${demo.spare.id} a spare`}; in-memory store)`,
    'stop what uses it, or choose others with PORT and SHOP_PORTS'
  )
}
