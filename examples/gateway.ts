/**
 * A ready sticky gateway configured only by environment (`npm run gateway`). See docs/operating.md "The gateway".
 * It proxies every path and method, bodies streamed unparsed, to one pool of upstreams. With `WORKERS=n` it runs
 * n processes (node:cluster) sharing the port, which agree on every binding through Redis.
 */
import cluster from 'node:cluster'
import os from 'node:os'
import Fastify, { type FastifyInstance } from 'fastify'
import sticky from '../lib/index'
import { redactCredentials } from '../lib/redact-credentials'
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
/** Most workers `WORKERS` may ask for. */
const MAX_WORKERS = 256
/** Replacements of crashed workers allowed per minute before the gateway gives up. */
const MAX_RESTARTS_PER_MINUTE = 10

/**
 * Reads `WORKERS`: how many processes (node:cluster workers sharing the port) serve; `auto` is one per CPU.
 * @returns 1 when unset
 * @throws GatewayEnvError naming WORKERS
 */
export function readWorkers (env: NodeJS.ProcessEnv): number {
  const value = env.WORKERS
  if (value === undefined || value === '') return 1
  if (value === 'auto') return Math.min(MAX_WORKERS, os.availableParallelism())
  const workers = /^\d{1,3}$/.test(value) ? Number(value) : NaN
  if (!(workers >= 1 && workers <= MAX_WORKERS)) {
    throw new GatewayEnvError(`WORKERS must be a whole number from 1 to ${MAX_WORKERS} or 'auto', got ${JSON.stringify(value.slice(0, 80))}`)
  }
  return workers
}

/** Messages a worker sends the primary. */
type WorkerMessage = { type: 'listening', address: string, admin: string | undefined } | { type: 'failed', message: string }

/** Where a started gateway listens. */
interface Listening {
  readonly address: string
  /** The status page on the admin listener (`ADMIN_PORT`); `undefined` without one. */
  readonly admin: string | undefined
}

// Every line the gateway prints itself: a value echoed from the environment or from an error never shows a password.
function printStderr (message: string): void {
  process.stderr.write(`gateway: ${redactCredentials(message)}\n`)
}

function readSettings (): { settings: GatewaySettings, workers: number } {
  try {
    const settings = readGatewayEnv(process.env)
    const workers = readWorkers(process.env)
    // Each worker is a process of its own: bindings are shared only through Redis.
    if (workers > 1 && settings.plugin.redis === undefined && settings.plugin.store === undefined) {
      throw new GatewayEnvError(`WORKERS=${workers} needs REDIS_URL: with the in-memory store each worker would keep bindings of its own`)
    }
    return { settings, workers }
  } catch (error) {
    if (error instanceof GatewayEnvError) {
      printStderr(error.message)
      process.exit(2)
    }
    throw error
  }
}

/** Builds and starts the gateway in this process; stops it on SIGINT/SIGTERM (and, in a worker, when the primary goes). */
async function serve (settings: GatewaySettings): Promise<Listening> {
  const app = await buildGateway(settings)
  const adminListen = settings.adminListen
  if (adminListen !== undefined) {
    // The admin listener starts as the app gets ready: its failure is ADMIN_HOST/ADMIN_PORT's, not HOST/PORT's.
    try {
      await app.ready()
    } catch (error) {
      await app.close().catch(() => {})
      const { message, cause } = error as Error
      if (!message.startsWith('fastify-sticky: admin.listen') || !(cause instanceof Error)) throw error
      throw new Error(`ADMIN_HOST/ADMIN_PORT: cannot listen on ${adminListen.host}:${adminListen.port} (${cause.message})`)
    }
  }
  let address: string
  try {
    address = await app.listen({ host: settings.host, port: settings.port })
  } catch (error) {
    await app.close().catch(() => {})
    throw new Error(`HOST/PORT: cannot listen on ${settings.host}:${settings.port} (${(error as Error).message})`)
  }
  let stopping = false
  const stop = (): void => {
    if (stopping) return
    stopping = true
    // In-flight requests get a grace period, not the upstream timeouts (which may be a minute).
    setTimeout(() => process.exit(0), SHUTDOWN_GRACE_MS).unref()
    app.close().then(() => process.exit(0), () => process.exit(1))
  }
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
  // A worker whose primary is gone (even SIGKILLed) must not linger.
  if (cluster.isWorker) process.on('disconnect', stop)
  return { address, admin: app.sticky.admin?.url }
}

function describe (settings: GatewaySettings, workers: number, admin: string | undefined): string {
  const store = settings.plugin.redis === undefined ? 'in-memory store' : 'Redis store'
  const adminApi = settings.adminToken === undefined
    ? ''
    : admin === undefined ? '; admin API and status page at /_sticky/ on this port' : `; admin API and status page at ${admin}`
  return `${store}${workers > 1 ? `, ${workers} workers` : ''}${adminApi}${settings.generatedSecret ? '; random STICKY_SECRET: set one shared by all gateways' : ''}`
}

/**
 * Said at start (whatever LOG_LEVEL is) when the admin API shares the proxied applications' origin: kept for
 * existing deployments, but a script of any proxied page can then call it with a token it reads or phishes.
 */
function warnSameOrigin (settings: GatewaySettings): void {
  if (settings.adminToken === undefined || settings.adminListen !== undefined) return
  printStderr('warning: the admin API and status page share the public port, the origin of every proxied application, ' +
    'whose pages\' scripts can then call it with a token they steal; set ADMIN_PORT to serve them on a listener of their own (loopback by default)')
}

/**
 * The primary of `WORKERS=n`: forks n workers that share the port (node:cluster hands them the connections), prints
 * the one `listening` line once every worker listens, replaces a worker that dies, and stops them all on
 * SIGINT/SIGTERM. It serves nothing itself and never connects to Redis.
 */
function supervise (settings: GatewaySettings, workers: number): void {
  const listening = new Map<number, string>()
  const exits: number[] = []
  let started = false
  let stopping = false
  let failed = false

  const stopAll = (code: number): void => {
    if (stopping) return
    stopping = true
    const alive = Object.values(cluster.workers ?? {}).filter((worker) => worker !== undefined && !worker.isDead())
    if (alive.length === 0) process.exit(code)
    for (const worker of alive) worker?.process.kill('SIGTERM')
    let remaining = alive.length
    cluster.on('exit', () => { if (--remaining === 0) process.exit(code) })
    // Workers stop within their own grace period; one that does not is killed.
    setTimeout(() => {
      for (const worker of alive) if (worker !== undefined && !worker.isDead()) worker.process.kill('SIGKILL')
      process.exit(1)
    }, SHUTDOWN_GRACE_MS + 2000).unref()
  }
  const fork = (): void => {
    const worker = cluster.fork()
    worker.on('message', (message: WorkerMessage) => {
      if (message.type === 'failed') {
        // A start failure is the same in every worker (bad port, bad option): say it once and stop.
        if (!failed) printStderr(message.message)
        failed = true
        stopAll(1)
      } else if (message.type === 'listening') {
        listening.set(worker.id, message.address)
        if (!started && listening.size === workers) {
          started = true
          process.stdout.write(`gateway listening on ${message.address} (${describe(settings, workers, message.admin)})\n`)
        }
      }
    })
  }

  cluster.on('exit', (worker, code, signal) => {
    listening.delete(worker.id)
    if (stopping) return
    if (!started) {
      if (!failed) printStderr(`a worker exited at start (${signal ?? `code ${String(code)}`})`)
      failed = true
      stopAll(1)
      return
    }
    // A worker that stopped cleanly was told to (Ctrl-C reaches every process of the group): not a crash.
    if (code === 0) {
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0)
      return
    }
    const now = Date.now()
    exits.push(now)
    while (exits.length > 0 && now - exits[0] > 60_000) exits.shift()
    if (exits.length > MAX_RESTARTS_PER_MINUTE) {
      printStderr(`${exits.length} workers died within a minute; stopping`)
      stopAll(1)
      return
    }
    printStderr(`worker ${String(worker.process.pid)} exited (${signal ?? `code ${String(code)}`}); starting another`)
    fork()
  })
  process.on('SIGINT', () => stopAll(0))
  process.on('SIGTERM', () => stopAll(0))
  for (let i = 0; i < workers; i++) fork()
}

async function main (): Promise<void> {
  const { settings, workers } = readSettings()
  if (cluster.isWorker) {
    try {
      const { address, admin } = await serve(settings)
      process.send?.({ type: 'listening', address, admin } satisfies WorkerMessage)
    } catch (error) {
      process.send?.({ type: 'failed', message: (error as Error).message } satisfies WorkerMessage, () => process.exit(1))
    }
    return
  }
  warnSameOrigin(settings)
  if (workers > 1) {
    supervise(settings, workers)
    return
  }
  const { address, admin } = await serve(settings)
  process.stdout.write(`gateway listening on ${address} (${describe(settings, 1, admin)})\n`)
}

if (require.main === module) {
  main().catch((error: unknown) => {
    printStderr((error as Error).message)
    process.exit(1)
  })
}
