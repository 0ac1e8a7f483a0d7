/**
 * Child processes of the benchmark: spawned pinned to a core (taskset, when present), tracked by PID,
 * and stopped by PID only — on success, on error and on Ctrl-C.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

/** The repository root (bench/ lives directly under it). */
export const ROOT = join(__dirname, '..')

/** `true` when `taskset` can pin processes here. */
export const HAS_TASKSET = spawnSync('taskset', ['-c', '0', 'true']).status === 0

/** How TypeScript entry points are run: tsx's CommonJS hook, no watcher, no extra process. */
export const TS_NODE_ARGS = ['-r', 'tsx/cjs']

/** How the measured gateways are started: the entry points and the Node arguments before them. */
export interface GatewayRunner {
  /** The sticky gateway: the `fastify-sticky` command. */
  readonly gateway: string
  /** The plain reply-from baseline. */
  readonly plain: string
  /** The @fastify/http-proxy peer rows (plain, and the sticky http-proxy door): bench/http-proxy-gateway.ts. */
  readonly httpProxy: string
  /** The upstream servers (on the load core; compiled too, so they load faster). */
  readonly upstreams: string
  readonly nodeArgs: readonly string[]
}

/**
 * Both measured gateways run as compiled JavaScript with no loader, as in production: dist/ (rebuilt if lib/
 * changed) for the sticky command, bench/tsconfig.json for the plain baseline and what it imports. With `tsx`
 * both run from TypeScript through the loader instead, to show what the loader costs.
 */
export function prepareGatewayRunner (tsx: boolean): GatewayRunner {
  if (tsx) return { gateway: 'lib/gateway/cli.ts', plain: 'bench/plain-gateway.ts', httpProxy: 'bench/http-proxy-gateway.ts', upstreams: 'bench/upstreams.ts', nodeArgs: TS_NODE_ARGS }
  const build = (args: string[]): void => {
    const result = spawnSync(process.execPath, args, { cwd: ROOT, stdio: 'inherit' })
    if (result.status !== 0) throw new Error(`bench: ${args.join(' ')} failed`)
  }
  build(['scripts/ensure-build.js'])
  build([join('node_modules', 'typescript', 'bin', 'tsc'), '-p', 'bench/tsconfig.json'])
  const compiled = 'bench/results/tmp/compiled/bench'
  return { gateway: 'dist/gateway/cli.js', plain: `${compiled}/plain-gateway.js`, httpProxy: `${compiled}/http-proxy-gateway.js`, upstreams: `${compiled}/upstreams.js`, nodeArgs: [] }
}

/** A process started by the benchmark. */
export interface Started {
  readonly name: string
  readonly child: ChildProcess
  readonly pid: number
  /** Core the process is pinned to, or `null` when unpinned. */
  core: number | null
  /** The last lines written to stdout and stderr, for error messages. */
  readonly tail: string[]
}

const started = new Set<Started>()

/** Every process still running that the benchmark started. */
export function runningProcesses (): Started[] {
  return [...started]
}

/** Options of {@link startProcess}. */
export interface StartOptions {
  readonly name: string
  readonly command: string
  readonly args: readonly string[]
  readonly core: number | null
  readonly env?: Record<string, string | undefined>
  /** Resolve once a stdout line matches; rejects when the process exits first or the timeout passes. */
  readonly readyLine?: RegExp
  readonly readyTimeoutMs?: number
}

/**
 * Starts a process, pinned to `core` through taskset when available (taskset execs the command, so the
 * PID is the command's own).
 * @returns the process and, when `readyLine` is given, the first matching line
 */
export async function startProcess (options: StartOptions): Promise<{ proc: Started, line: string }> {
  const pin = options.core !== null && HAS_TASKSET
  const command = pin ? 'taskset' : options.command
  const args = pin ? ['-c', String(options.core), options.command, ...options.args] : [...options.args]
  const child = spawn(command, args, {
    cwd: ROOT,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  if (child.pid === undefined) throw new Error(`bench: could not start ${options.name} (${options.command})`)
  const proc: Started = { name: options.name, child, pid: child.pid, core: pin ? options.core : null, tail: [] }
  started.add(proc)
  child.once('exit', () => started.delete(proc))
  const remember = (chunk: Buffer): void => {
    for (const line of chunk.toString().split('\n')) {
      if (line.trim() === '') continue
      proc.tail.push(line)
      if (proc.tail.length > 20) proc.tail.shift()
    }
  }
  child.stderr?.on('data', remember)
  if (options.readyLine === undefined) {
    child.stdout?.on('data', remember)
    return { proc, line: '' }
  }
  const readyLine = options.readyLine
  const line = await new Promise<string>((resolve, reject) => {
    let buffered = ''
    const timer = setTimeout(() => {
      fail(new Error(`bench: ${options.name} did not print ${String(readyLine)} within ${options.readyTimeoutMs ?? 15000} ms`))
    }, options.readyTimeoutMs ?? 15000)
    const onExit = (code: number | null, signal: string | null): void => {
      fail(new Error(`bench: ${options.name} exited (${signal ?? code}) before it was ready`))
    }
    const onData = (chunk: Buffer): void => {
      buffered += chunk.toString()
      let newline: number
      while ((newline = buffered.indexOf('\n')) >= 0) {
        const each = buffered.slice(0, newline)
        buffered = buffered.slice(newline + 1)
        remember(Buffer.from(each))
        if (readyLine.test(each)) {
          done()
          resolve(each)
          return
        }
      }
    }
    function done (): void {
      clearTimeout(timer)
      child.stdout?.off('data', onData)
      child.off('exit', onExit)
      child.stdout?.on('data', remember)
    }
    function fail (error: Error): void {
      done()
      const tail = proc.tail.length > 0 ? '\n  last output:\n    ' + proc.tail.join('\n    ') : ''
      reject(new Error(error.message + tail))
    }
    child.stdout?.on('data', onData)
    child.once('exit', onExit)
  })
  return { proc, line }
}

/**
 * Runs a process to completion (pinned like {@link startProcess}) and collects its output.
 * @returns exit code, stdout and stderr
 */
export async function runToEnd (options: StartOptions & { readonly timeoutMs: number }): Promise<{ code: number | null, stdout: string, stderr: string }> {
  const { proc } = await startProcess({ ...options, readyLine: undefined })
  let stdout = ''
  let stderr = ''
  proc.child.stdout?.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
  proc.child.stderr?.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  return await new Promise((resolve) => {
    const timer = setTimeout(() => { void stopProcess(proc) }, options.timeoutMs)
    proc.child.once('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

/**
 * Pins every thread of a running process to one core (`taskset -a -p`); threads it starts later inherit it.
 * Lets a process start up on every core and run its measured life on one.
 */
export function repin (proc: Started, core: number): void {
  if (!HAS_TASKSET) return
  const result = spawnSync('taskset', ['-a', '-pc', String(core), String(proc.pid)])
  if (result.status !== 0) throw new Error(`bench: could not pin ${proc.name} (pid ${proc.pid}) to core ${core}: ${result.stderr?.toString().trim()}`)
  proc.core = core
}

/** Stops one process by its PID: SIGTERM, then SIGKILL after `graceMs`. */
export async function stopProcess (proc: Started, graceMs = 2000): Promise<void> {
  if (proc.child.exitCode !== null || proc.child.signalCode !== null) {
    started.delete(proc)
    return
  }
  const exited = new Promise<void>((resolve) => proc.child.once('exit', () => resolve()))
  try { process.kill(proc.pid, 'SIGTERM') } catch {}
  const timer = setTimeout(() => { try { process.kill(proc.pid, 'SIGKILL') } catch {} }, graceMs)
  await exited
  clearTimeout(timer)
  started.delete(proc)
}

/** Stops every process the benchmark started (newest first). */
export async function stopAll (): Promise<void> {
  await Promise.all([...started].reverse().map((proc) => stopProcess(proc)))
}

/** Synchronous last resort (process 'exit'): SIGKILL every PID still tracked. */
export function killAllNow (): void {
  for (const proc of started) {
    try { process.kill(proc.pid, 'SIGKILL') } catch {}
  }
  started.clear()
}

/**
 * Makes every way out of a benchmark command stop the processes it started: Ctrl-C, SIGTERM, and the process
 * ending (a last-resort SIGKILL).
 * @param label - the command's name in the interrupt message
 * @returns `shutdown(code)`: stops them (once), then exits with `code`
 */
export function stopProcessesOnExit (label: string, log: (line: string) => void): (code: number) => Promise<never> {
  let stopping = false
  const shutdown = async (code: number): Promise<never> => {
    if (!stopping) {
      stopping = true
      await stopAll()
    }
    process.exit(code)
  }
  process.once('SIGINT', () => { log(`\n${label}: interrupted, stopping the processes it started`); void shutdown(130) })
  process.once('SIGTERM', () => { void shutdown(143) })
  process.once('exit', killAllNow)
  return shutdown
}

/** The routing cookie's name in every benchmark gateway. */
export const BENCH_COOKIE_NAME = 'sticky'
/** The Redis key prefix of every benchmark gateway. */
export const BENCH_REDIS_PREFIX = 'bench:'

/**
 * The environment every benchmark runs the `fastify-sticky` command with (besides its port, upstreams and store).
 * @param secret - the routing cookie's secret for this run
 */
export function stickyGatewayEnv (secret: string): Record<string, string> {
  return {
    HOST: '127.0.0.1',
    STICKY_SECRET: secret,
    STICKY_KEY: 'cookie',
    STICKY_COOKIE: BENCH_COOKIE_NAME,
    STICKY_PREFIX: BENCH_REDIS_PREFIX,
    // Every new session of the load comes from one address: the per-client budget would serve them unbound.
    STICKY_NEW_BINDINGS: 'off',
    LOG_LEVEL: 'warn',
    NODE_ENV: 'production'
  }
}

// The free-port probe the tests and the soak use too.
export { freePort } from '../scripts/loopback'

/** CPU time of one process (user + system, own threads only), in seconds; `null` once it is gone. */
export function processCpuSeconds (pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Fields after the command name, which may itself contain spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS
  } catch {
    return null
  }
}

/** CPU time of this process's reaped children (cutime + cstime), in seconds: load generators that ran to completion. */
export function reapedChildrenCpuSeconds (): number {
  const stat = readFileSync('/proc/self/stat', 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[13]) + Number(fields[14])) / CLOCK_TICKS
}

/** CPU time of this process itself, in seconds. */
export function ownCpuSeconds (): number {
  const usage = process.cpuUsage()
  return (usage.user + usage.system) / 1e6
}

const CLOCK_TICKS = (() => {
  const result = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' })
  const ticks = Number(result.stdout?.trim())
  return Number.isFinite(ticks) && ticks > 0 ? ticks : 100
})()

/** Per-core counters from /proc/stat, in seconds. */
export interface CoreTimes {
  /** Running anything but idle, iowait, irq, softirq and steal. */
  readonly busy: number
  /** Interrupt handling (mostly loopback networking here), not attributed to any process. */
  readonly irq: number
  readonly steal: number
  readonly total: number
}

/** @returns the counters of every core, indexed by core number */
export function readCoreTimes (): CoreTimes[] {
  const cores: CoreTimes[] = []
  for (const line of readFileSync('/proc/stat', 'utf8').split('\n')) {
    const match = /^cpu(\d+)\s+(.*)$/.exec(line)
    if (match === null) continue
    const [user, nice, system, idle, iowait, irq, softirq, steal] = match[2].split(/\s+/).map(Number)
    const toS = (ticks: number): number => ticks / CLOCK_TICKS
    cores[Number(match[1])] = {
      busy: toS(user + nice + system),
      irq: toS(irq + softirq),
      steal: toS(steal ?? 0),
      total: toS(user + nice + system + idle + iowait + irq + softirq + (steal ?? 0))
    }
  }
  return cores
}

/** @returns the 1-minute load average */
export function loadAverage1 (): number {
  return Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0])
}

/** @returns `true` when a file exists under the repository root */
export function repoFileExists (relative: string): boolean {
  return existsSync(join(ROOT, relative))
}
