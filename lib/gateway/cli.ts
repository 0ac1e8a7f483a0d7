#!/usr/bin/env node
/**
 * The `fastify-sticky` command (`npm run gateway` runs it): a ready sticky gateway configured by environment
 * variables (docs/operating.md "The gateway"). With `WORKERS=n` it runs n processes sharing the port.
 */
import cluster from 'node:cluster'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { GatewayEnvError, readGatewayEnv, type GatewaySettings } from './env-settings'
import { printListening, printStderr, warnSameOrigin } from './messages'

const HELP = `Usage: fastify-sticky [--help] [--version]

Runs a sticky-session gateway that proxies every path to one pool of upstreams.
Configured by environment variables (see docs/operating.md in the package):

  UPSTREAMS            id=url,... (required), e.g. a=http://10.0.0.5:8080,b=http://10.0.0.6:8080
  PORT, HOST           public listener (default 3000 on 127.0.0.1)
  STICKY_SECRET        cookie signing secret, shared by every gateway (comma list to rotate)
  STICKY_KEY           cookie (default), ip, header:<Name>, query:<param> or learn:<CookieName>
  STICKY_COOKIE        routing cookie name          STICKY_PREFIX   Redis key prefix
  STICKY_IDLE_TIMEOUT  idle expiry of a binding     STICKY_MAX_LIFETIME   longest a binding lives
  STICKY_NEAR_CACHE    near cache TTL, or off       STICKY_NEW_BINDINGS   per-client budget, or off
  REDIS_URL            shared store (else the in-memory store: one gateway only)
  REDIS_SENTINELS, REDIS_SENTINEL_NAME, REDIS_CLUSTER, REDIS_PASSWORD   other Redis topologies
  ADMIN_TOKEN          enables the admin API and status page
  ADMIN_PORT, ADMIN_HOST  their own listener (recommended)
  TRUST_PROXY          true, a hop count or addresses     LOG_LEVEL   pino level (default info)
  WORKERS              processes sharing the port (n or auto; needs REDIS_URL above 1)

A bad variable stops the gateway at start with one line naming it (exit code 2).
`

/**
 * Fastify is an optional peer dependency of the package (Express users do without it), but the command runs on it:
 * loaded only after `--help` and `--version`, and missing it is one line saying what to install.
 */
function requireFastify (): void {
  try {
    require.resolve('fastify')
  } catch {
    printStderr('the fastify-sticky command runs on Fastify, an optional peer dependency of the package: npm install fastify@5')
    process.exit(2)
  }
}

function readSettings (readWorkers: (env: NodeJS.ProcessEnv) => number): { settings: GatewaySettings, workers: number } {
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

function packageVersion (): string {
  // dist/gateway/cli.js → the package root, where package.json ships.
  return (JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string }).version
}

async function main (argv: readonly string[]): Promise<void> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(HELP)
    return
  }
  if (argv.includes('--version')) {
    process.stdout.write(`fastify-sticky ${packageVersion()}\n`)
    return
  }
  const unknown = argv.find((arg) => arg !== '')
  if (unknown !== undefined) {
    printStderr(`unknown argument ${JSON.stringify(unknown.slice(0, 80))}; see fastify-sticky --help`)
    process.exit(2)
  }
  requireFastify()
  // Loaded once Fastify is known to be there (they import it).
  const { readWorkers, runWorker, superviseWorkers } = require('./workers') as typeof import('./workers')
  const { serveGateway } = require('./build-gateway') as typeof import('./build-gateway')
  const { settings, workers } = readSettings(readWorkers)
  if (cluster.isWorker) {
    await runWorker(settings)
    return
  }
  warnSameOrigin(settings)
  if (workers > 1) {
    superviseWorkers(settings, workers)
    return
  }
  const { address, admin } = await serveGateway(settings)
  printListening(address, settings, 1, admin)
}

main(process.argv.slice(2)).catch((error: unknown) => {
  printStderr((error as Error).message)
  process.exit(1)
})
