#!/usr/bin/env node
/**
 * The `fastify-sticky` command (`npm run gateway` runs it): a ready sticky gateway configured by environment
 * variables (docs/operating.md "The gateway"). With `WORKERS=n` it runs n processes sharing the port.
 */
import cluster from 'node:cluster'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { GatewayEnvError, readGatewayEnv, type GatewaySettings } from './env-settings'
import { readGatewayConfig } from './gateway-config'
import { printListening, printStderr, warnSameOrigin } from './messages'

const HELP = `Usage: fastify-sticky [--config <file> [--check]] [--help] [--version]

Runs a sticky-session gateway.

  --config <file>      a YAML or JSON config file: pools (static or DNS-discovered), routes, Redis, admin,
                       health, shutdown (docs/gateway.md; schema: fastify-sticky/gateway-config.schema.json).
                       \${NAME} in it is read from the environment. SIGHUP reloads it.
  --check              validate the config file and exit (0 when valid)

Without --config, one pool of upstreams serves every path, configured by environment variables
(see docs/operating.md in the package):

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

A bad variable or config file stops the gateway at start with one line naming it (exit code 2).
`

/** What the command line asks for. */
interface Arguments {
  readonly config: string | undefined
  readonly check: boolean
}

function parseArguments (argv: readonly string[]): Arguments {
  let config: string | undefined
  let check = false
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === '') continue
    if (arg === '--check') {
      check = true
    } else if (arg === '--config' || arg === '-c') {
      config = argv[++i]
      if (config === undefined || config === '') usage('--config needs a file name')
    } else if (arg.startsWith('--config=')) {
      config = arg.slice('--config='.length)
      if (config === '') usage('--config needs a file name')
    } else {
      usage(`unknown argument ${JSON.stringify(arg.slice(0, 80))}; see fastify-sticky --help`)
    }
  }
  if (check && config === undefined) usage('--check validates a config file: give --config <file>')
  return { config, check }
}

function usage (message: string): never {
  printStderr(message)
  process.exit(2)
}

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

function readSettings (config: string | undefined, readWorkers: (env: NodeJS.ProcessEnv) => number): { settings: GatewaySettings, workers: number } {
  try {
    const settings = config === undefined ? readGatewayEnv(process.env) : readGatewayConfig(config, process.env)
    const workers = readWorkers(process.env)
    // Each worker is a process of its own: bindings are shared only through Redis.
    if (workers > 1 && settings.plugin.redis === undefined && settings.plugin.store === undefined) {
      throw new GatewayEnvError(`WORKERS=${workers} needs ${config === undefined ? 'REDIS_URL' : `redis in ${config}`}: with the in-memory store each worker would keep bindings of its own`)
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
  const args = parseArguments(argv)
  requireFastify()
  // Loaded once Fastify is known to be there (they import it).
  const { readWorkers, runWorker, superviseWorkers } = require('./workers') as typeof import('./workers')
  const { serveGateway } = require('./build-gateway') as typeof import('./build-gateway')
  const { settings, workers } = readSettings(args.config, readWorkers)
  if (args.check) {
    const file = settings.file
    const count = (n: number, what: string): string => `${n} ${what}${n === 1 ? '' : 's'}`
    const discovered = file?.discovery.length ?? 0
    process.stdout.write(`${args.config as string}: valid (${count(Object.keys(settings.plugin.pools).length, 'pool')}, ${count(file?.routes.length ?? 0, 'route')}${discovered === 0 ? '' : `, ${discovered} discovered by DNS`})\n`)
    return
  }
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
