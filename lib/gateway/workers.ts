/**
 * `WORKERS=n`: n processes (node:cluster workers sharing the port) serve one gateway; they agree on every
 * binding through Redis, as separate gateways do.
 */
import cluster from 'node:cluster'
import os from 'node:os'
import { serveGateway, SHUTDOWN_GRACE_MS } from './build-gateway'
import { GatewayEnvError, type GatewaySettings } from './env-settings'
import { printListening, printStderr } from './messages'

/** Most workers `WORKERS` may ask for. */
const MAX_WORKERS = 256
/** Replacements of crashed workers allowed per minute before the gateway gives up. */
const MAX_RESTARTS_PER_MINUTE = 10

/**
 * Reads `WORKERS`: how many processes serve; `auto` is one per CPU.
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

/** A worker's part: serve, then tell the primary where (or why not). */
export async function runWorker (settings: GatewaySettings): Promise<void> {
  try {
    const { address, admin } = await serveGateway(settings)
    process.send?.({ type: 'listening', address, admin } satisfies WorkerMessage)
  } catch (error) {
    process.send?.({ type: 'failed', message: (error as Error).message } satisfies WorkerMessage, () => process.exit(1))
  }
}

/**
 * The primary of `WORKERS=n`: forks n workers that share the port (node:cluster hands them the connections), prints
 * the one `listening` line once every worker listens, replaces a worker that dies, and stops them all on
 * SIGINT/SIGTERM. It serves nothing itself and never connects to Redis.
 */
export function superviseWorkers (settings: GatewaySettings, workers: number): void {
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
          printListening(message.address, settings, workers, message.admin)
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
  // Each worker re-reads the config file itself (and refuses a bad one on its own, keeping what it runs).
  if (settings.file !== undefined) {
    process.on('SIGHUP', () => {
      for (const worker of Object.values(cluster.workers ?? {})) if (worker !== undefined && !worker.isDead()) worker.process.kill('SIGHUP')
    })
  }
  for (let i = 0; i < workers; i++) fork()
}
