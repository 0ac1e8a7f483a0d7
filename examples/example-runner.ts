/**
 * What every runnable example shares and a user does not need to read: starting the two echo upstreams, the
 * environment variables (`PORT`, `HOST`, `UPSTREAM_PORTS`, `REDIS_URL`, `STICKY_SECRET`), the printed URL, and
 * stopping on Ctrl-C. Each example's own file keeps only its gateway, written as a user would write it.
 */
import { startEchoUpstream, type EchoUpstream } from './express/echo-upstream'

/** Options every two-upstream example takes. */
export interface ExampleOptions {
  /** Gateway port; 0 picks a free one. @defaultValue 3000 */
  port?: number
  /** @defaultValue `'127.0.0.1'` */
  host?: string
  /** One upstream per port, ids a and b; 0 picks free ports. @defaultValue `[4101, 4102]` */
  upstreamPorts?: [number, number]
  /** Share bindings through this Redis; in-memory without it. */
  redis?: string
  /** At least 32 characters; every gateway sharing `redis` needs the same one. @defaultValue a random one */
  secret?: string
  /** Called with one line per forwarded request (`GET /shop/ → upstream b (hit) 200`); nothing by default. */
  trace?: (line: string) => void
}

/** The echo upstreams of an example. */
export interface EchoPair {
  readonly upstreams: readonly EchoUpstream[]
  /** Stops them all. */
  stop (): Promise<void>
}

/**
 * Starts echo upstreams a and b.
 * @throws Error when a port is taken (those already started are stopped first)
 */
export async function startEchoPair (ports: readonly number[] = [4101, 4102]): Promise<EchoPair> {
  const upstreams: EchoUpstream[] = []
  const stop = async (): Promise<void> => { await Promise.all(upstreams.map((u) => u.close())) }
  try {
    for (const [i, port] of ports.entries()) upstreams.push(await startEchoUpstream('ab'[i], port))
  } catch (error) {
    await stop()
    throw error
  }
  return { upstreams, stop }
}

/** @returns the host to print in a URL: a wildcard listen address is not one to type into a browser; an IPv6 literal needs brackets */
export function browserHost (host: string): string {
  if (host === '0.0.0.0' || host === '') return '127.0.0.1'
  if (host === '::') return '[::1]'
  return host.includes(':') ? `[${host}]` : host
}

/** @returns whether the text is a port number (0-65535) */
export function isPort (value: string): boolean {
  return /^\d{1,5}$/.test(value) && Number(value) <= 65535
}

/**
 * Reads `PORT`, `UPSTREAM_PORTS`, `HOST`, `REDIS_URL` and `STICKY_SECRET`.
 * @throws Error naming the variable when a port is not one
 */
export function readExampleEnv (env: NodeJS.ProcessEnv): ExampleOptions {
  const options: ExampleOptions = {}
  if (env.PORT !== undefined && env.PORT !== '') {
    if (!isPort(env.PORT)) throw new Error(`PORT must be a port number (0-65535), got ${JSON.stringify(env.PORT)}`)
    options.port = Number(env.PORT)
  }
  if (env.UPSTREAM_PORTS !== undefined && env.UPSTREAM_PORTS !== '') {
    const ports = env.UPSTREAM_PORTS.split(',').map((port) => port.trim())
    if (ports.length !== 2 || !ports.every(isPort)) throw new Error(`UPSTREAM_PORTS must be two comma-separated port numbers, got ${JSON.stringify(env.UPSTREAM_PORTS)}`)
    options.upstreamPorts = [Number(ports[0]), Number(ports[1])]
  }
  if (env.HOST !== undefined && env.HOST !== '') options.host = env.HOST
  if (env.REDIS_URL !== undefined && env.REDIS_URL !== '') options.redis = env.REDIS_URL
  if (env.STICKY_SECRET !== undefined && env.STICKY_SECRET !== '') options.secret = env.STICKY_SECRET
  return options
}

/**
 * Runs an example from the command line: starts it, prints `<label>: open …`, and stops it on SIGINT or SIGTERM
 * (a second Ctrl-C ends the process at once). Start-up errors are printed as one line, with a hint for a taken port.
 * @param label - e.g. `fastify-sticky Express example`
 * @param start - starts the example (with a trace printed under the banner)
 * @param banner - what to open, after `<label>: open `
 * @param takenPort - what to do when a port is taken, printed after the error
 */
export function runExample<E extends { close (): Promise<void> }> (
  label: string, start: (trace: (line: string) => void) => Promise<E>, banner: (example: E) => string,
  takenPort = 'choose others with PORT and UPSTREAM_PORTS'
): void {
  const main = async (): Promise<void> => {
    const example = await start((line) => { process.stdout.write(`  ${line}\n`) })
    process.stdout.write(`${label}: open ${banner(example)}. Ctrl-C to stop.\n`)
    const stop = (): void => {
      process.stdout.write(`${label}: stopping\n`)
      example.close().then(() => process.exit(0), (error: unknown) => {
        process.stderr.write(`${label}: ${(error as Error).message}\n`)
        process.exit(1)
      })
    }
    // `once`: a second Ctrl-C falls back to Node's default and ends the process at once.
    process.once('SIGINT', stop)
    process.once('SIGTERM', stop)
  }
  main().catch((error: unknown) => {
    const hint = (error as NodeJS.ErrnoException).code === 'EADDRINUSE' ? ` (a port is taken: ${takenPort})` : ''
    process.stderr.write(`${label}: ${(error as Error).message}${hint}\n`)
    process.exit(1)
  })
}
