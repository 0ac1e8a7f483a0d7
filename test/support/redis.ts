import { spawn, type ChildProcess } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import net from 'node:net'
import type { TeardownOwner } from './teardown-owner'
import { freePort, pingRedis } from '../../scripts/loopback'

/** A redis-server child process owned by one test (see {@link startRedis}). */
export interface RedisServer {
  /** Loopback port it listens on; kept across {@link RedisServer.restart}. */
  readonly port: number
  /** `redis://127.0.0.1:<port>`, ready for ioredis or the plugin's `redis` option. */
  readonly url: string
  /** PID of the current (or, once stopped, the last) redis-server process. */
  readonly pid: number
  /** Kills the server (SIGTERM, then SIGKILL) and waits for it to exit; no-op when already stopped. */
  stop(): Promise<void>
  /** Starts a fresh, empty server on the same port (stopping the current one first) and waits for PONG. */
  restart(): Promise<void>
}

/** Options for {@link startRedis}. */
export interface StartRedisOptions {
  /** Extra redis-server arguments appended to the defaults, e.g. `['--maxmemory', '10mb']`. */
  args?: string[]
}

/** How long a server may take to answer PING before startRedis gives up. */
const STARTUP_TIMEOUT_MS = 5_000
/** How long redis-server gets to exit on SIGTERM before SIGKILL. */
const STOP_GRACE_MS = 1_500
/** Attempts at picking a free port: another process may take it between our probe and redis' bind. */
const PORT_ATTEMPTS = 3
/** Tail of the child's stdout+stderr kept for error messages. */
const OUTPUT_TAIL_BYTES = 16 * 1024

/**
 * Starts a private redis-server on a free loopback port (no persistence) and stops it at `t` teardown.
 * The server is killed even if the test throws, the process exits, or tap SIGKILLs the test file.
 *
 * @param t - the test that owns the server; its teardown stops it
 * @param options - extra redis-server arguments
 * @returns the running server
 * @throws Error when redis-server is missing or does not answer PING within 5 s (message includes its output)
 * @example
 * const redis = await startRedis(t)
 * const client = new Redis(redis.url)
 * t.teardown(() => client.quit())
 */
export async function startRedis (t: TeardownOwner, options: StartRedisOptions = {}): Promise<RedisServer> {
  const extraArgs = options.args ?? []
  let proc: RedisProcess | undefined
  let lastError: unknown
  for (let attempt = 0; attempt < PORT_ATTEMPTS && proc === undefined; attempt++) {
    const port = await freePort()
    try {
      proc = await spawnRedis(port, extraArgs)
    } catch (err) {
      lastError = err
      if (!(err instanceof RedisStartError && err.addressInUse)) throw err
    }
  }
  if (proc === undefined) throw lastError

  let current: RedisProcess = proc
  const port = current.port
  // Serialise stop/restart/teardown so overlapping calls never leave two children on one port.
  let queue: Promise<unknown> = Promise.resolve()
  const serialise = (fn: () => Promise<void>): Promise<void> => {
    const next = queue.then(fn)
    queue = next.catch(() => {})
    return next
  }

  const server: RedisServer = {
    port,
    url: `redis://127.0.0.1:${port}`,
    get pid () { return current.pid },
    stop: () => serialise(() => current.stop()),
    restart: () => serialise(async () => {
      await current.stop()
      current = await spawnRedis(port, extraArgs)
    })
  }
  t.teardown(() => serialise(() => current.stop()))
  return server
}

/**
 * A fresh key prefix for one test, so tests sharing a Redis never see each other's keys.
 * @returns `sticky-t-<uuid>:`
 */
export function uniquePrefix (): string {
  return `sticky-t-${randomUUID()}:`
}

class RedisStartError extends Error {
  constructor (message: string, readonly addressInUse: boolean) {
    super(message)
    this.name = 'RedisStartError'
  }
}

interface RedisProcess {
  port: number
  pid: number
  stop(): Promise<void>
}


async function spawnRedis (port: number, extraArgs: string[]): Promise<RedisProcess> {
  const args = [
    '--port', String(port),
    '--bind', '127.0.0.1',
    '--save', '',
    '--appendonly', 'no',
    '--protected-mode', 'no',
    '--daemonize', 'no',
    ...extraArgs
  ]
  const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] })

  // Always drain both pipes (redis logs to stdout): a full pipe would block the server.
  let output = ''
  const collect = (chunk: Buffer): void => {
    output = (output + chunk.toString('utf8')).slice(-OUTPUT_TAIL_BYTES)
  }
  child.stdout?.on('data', collect)
  child.stderr?.on('data', collect)

  let spawnError: Error | undefined
  const exited = new Promise<void>((resolve) => {
    child.once('error', (err) => { spawnError = err; resolve() })
    child.once('exit', () => resolve())
  })
  const hasExited = (): boolean => spawnError !== undefined || child.exitCode !== null || child.signalCode !== null

  if (child.pid !== undefined) track(child.pid)
  void exited.then(() => { if (child.pid !== undefined) untrack(child.pid) })

  const stop = async (): Promise<void> => {
    if (hasExited()) return
    child.kill('SIGTERM')
    let timer: NodeJS.Timeout | undefined
    const graceful = await Promise.race([
      exited.then(() => true),
      new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), STOP_GRACE_MS) })
    ])
    clearTimeout(timer)
    if (!graceful && !hasExited()) child.kill('SIGKILL')
    await exited
  }

  const deadline = Date.now() + STARTUP_TIMEOUT_MS
  for (;;) {
    if (hasExited()) {
      await exited
      if (spawnError !== undefined) {
        const hint = (spawnError as NodeJS.ErrnoException).code === 'ENOENT'
          ? ' (is redis-server on PATH? run `node scripts/ensure-redis.js`)'
          : ''
        throw new RedisStartError(`cannot spawn redis-server: ${spawnError.message}${hint}`, false)
      }
      throw new RedisStartError(
        `redis-server on port ${port} exited (code ${child.exitCode}, signal ${child.signalCode}) before answering PING:\n${output}`,
        /address already in use/i.test(output)
      )
    }
    if (await pingRedis(port)) break
    if (Date.now() > deadline) {
      await stop()
      throw new RedisStartError(
        `redis-server on port ${port} did not answer PING within ${STARTUP_TIMEOUT_MS} ms:\n${output}`,
        false
      )
    }
    await new Promise((resolve) => setTimeout(resolve, 25))
  }

  return { port, pid: child.pid as number, stop }
}


// ---- last-resort cleanup -------------------------------------------------------------------------
// Teardown normally stops every server. If the test file dies first, the 'exit' hook kills what is
// left; if it is SIGKILLed (tap does that on timeout), a tiny sh watchdog that holds the other end of
// a pipe sees EOF and kills the remaining PIDs. Pipes are close-on-exec, so redis never holds it open.

const live = new Set<number>()
let exitHookInstalled = false
let watchdog: ChildProcess | undefined

/** Remembers live PIDs in the watchdog's stdin; forgets them on exit. `set -f`: no globbing of input. */
const WATCHDOG_SCRIPT = [
  'set -f; pids=',
  'while IFS= read -r l; do',
  '  case $l in',
  '    +*) pids="$pids ${l#+}" ;;',
  '    -*) n=; for p in $pids; do [ "$p" = "${l#-}" ] || n="$n $p"; done; pids=$n ;;',
  '  esac',
  'done',
  '[ -z "$pids" ] || kill -9 $pids 2>/dev/null',
  'exit 0'
].join('\n')

function track (pid: number): void {
  live.add(pid)
  if (!exitHookInstalled) {
    exitHookInstalled = true
    process.once('exit', () => {
      for (const p of live) {
        try { process.kill(p, 'SIGKILL') } catch {}
      }
      live.clear()
    })
  }
  tellWatchdog(`+${pid}`)
}

function untrack (pid: number): void {
  live.delete(pid)
  tellWatchdog(`-${pid}`)
}

function tellWatchdog (line: string): void {
  if (watchdog === undefined) {
    try {
      watchdog = spawn('/bin/sh', ['-c', WATCHDOG_SCRIPT], { stdio: ['pipe', 'ignore', 'ignore'] })
      watchdog.on('error', () => {})
      watchdog.stdin?.on('error', () => {})
      // Neither the watchdog nor its pipe may keep the test process alive.
      watchdog.unref()
      ;(watchdog.stdin as unknown as net.Socket | null)?.unref()
    } catch {
      return
    }
  }
  if (watchdog.stdin?.writable === true) watchdog.stdin.write(line + '\n')
}
