/**
 * The load generator, always in its own process: wrk when installed (`-t1 -c50`, keep-alive, as
 * shared/PERF-ANCHORS.md), autocannon (npm) otherwise or when asked for; and, for the latency phase at a fixed
 * rate, bench/paced-load.ts whichever of the two runs the closed-loop rounds (see there for why).
 */
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { PacedReport } from './paced-load'
import { ROOT, TS_NODE_ARGS, runToEnd } from './processes'

/** Which load generator runs. */
export type LoadGeneratorName = 'wrk' | 'autocannon'

/** One load window: closed-loop (wrk, autocannon) or at a fixed rate ({@link runPacedLoad}). */
export interface LoadResult {
  readonly requests: number
  readonly durationS: number
  readonly rps: number
  readonly p50Ms: number
  readonly p99Ms: number
  /** Responses with status ≥ 400 (wrk) or outside 2xx (autocannon). */
  readonly badStatus: number
  /** Connect, read, write errors and timeouts. */
  readonly socketErrors: number
}

/** Options of {@link runLoad}. */
export interface LoadOptions {
  readonly url: string
  /** How long the load runs; with `amount`, the longest it may take before it is stopped as failed. */
  readonly seconds: number
  /**
   * Send exactly this many requests, then stop, instead of running for `seconds` (autocannon only: wrk has no
   * request count).
   */
  readonly amount?: number
  readonly connections: number
  readonly headers: Readonly<Record<string, string>>
  readonly core: number | null
}

/** @returns `true` when a usable wrk is on the PATH */
export function wrkAvailable (): boolean {
  return spawnSync('wrk', ['-v']).error === undefined
}

/** @returns the version line of the load generator, for the report */
export function loadGeneratorVersion (name: LoadGeneratorName): string {
  if (name === 'wrk') {
    const out = spawnSync('wrk', ['-v'], { encoding: 'utf8' })
    // "wrk debian/4.1.0-3+b2 [epoll] Copyright (C) 2012 Will Glozer" → "wrk debian/4.1.0-3+b2"
    return ((out.stdout ?? '') + (out.stderr ?? '')).split('\n')[0].replace(/\s*(\[|Copyright).*$/, '').trim()
  }
  const pkg = JSON.parse(readFileSync(join(ROOT, 'node_modules', 'autocannon', 'package.json'), 'utf8')) as { version: string }
  return 'autocannon ' + pkg.version
}

/**
 * Runs one load window to completion.
 * @throws when the generator fails or prints nothing readable, or when `amount` is asked of wrk
 */
export async function runLoad (name: LoadGeneratorName, options: LoadOptions): Promise<LoadResult> {
  if (name === 'wrk' && options.amount !== undefined) throw new Error('bench: wrk cannot send a fixed number of requests; use autocannon')
  return name === 'wrk' ? await runWrk(options) : await runAutocannon(options)
}

async function runWrk (options: LoadOptions): Promise<LoadResult> {
  const args = ['-t1', `-c${options.connections}`, `-d${options.seconds}s`, '--latency', '-s', join(ROOT, 'bench', 'wrk-report.lua')]
  for (const [name, value] of Object.entries(options.headers)) args.push('-H', `${name}: ${value}`)
  args.push(options.url)
  const out = await runToEnd({ name: 'wrk', command: 'wrk', args, core: options.core, timeoutMs: (options.seconds + 15) * 1000 })
  const line = out.stdout.split('\n').find((each) => each.startsWith('WRK_JSON '))
  if (out.code !== 0 || line === undefined) {
    throw new Error(`bench: wrk failed (exit ${out.code}): ${out.stderr.trim() || out.stdout.trim()}`)
  }
  const r = JSON.parse(line.slice('WRK_JSON '.length)) as Record<string, number>
  const durationS = r.duration_us / 1e6
  return {
    requests: r.requests,
    durationS,
    rps: r.requests / durationS,
    p50Ms: r.p50_us / 1000,
    p99Ms: r.p99_us / 1000,
    badStatus: r.status,
    socketErrors: r.connect + r.read + r.write + r.timeout
  }
}

async function runAutocannon (options: LoadOptions): Promise<LoadResult> {
  const args = [join(ROOT, 'node_modules', 'autocannon', 'autocannon.js'), '-j', '-c', String(options.connections),
    ...(options.amount === undefined ? ['-d', String(options.seconds)] : ['-a', String(options.amount)])]
  for (const [name, value] of Object.entries(options.headers)) args.push('-H', `${name}:${value}`)
  args.push(options.url)
  const out = await runToEnd({ name: 'autocannon', command: process.execPath, args, core: options.core, timeoutMs: (options.seconds + 20) * 1000 })
  const start = out.stdout.indexOf('{')
  if (out.code !== 0 || start < 0) {
    throw new Error(`bench: autocannon failed (exit ${out.code}): ${out.stderr.trim()}`)
  }
  const r = JSON.parse(out.stdout.slice(start)) as {
    requests: { total: number }, latency: { p50: number, p99: number }, duration: number,
    non2xx: number, errors: number, timeouts: number
  }
  return {
    requests: r.requests.total,
    durationS: r.duration,
    rps: r.requests.total / r.duration,
    p50Ms: r.latency.p50,
    p99Ms: r.latency.p99,
    badStatus: r.non2xx,
    socketErrors: r.errors + r.timeouts
  }
}

/** Options of {@link runPacedLoad}. */
export interface PacedLoadOptions extends LoadOptions {
  /** Requests per second over all connections. */
  readonly rate: number
  /** Seconds paced at the same rate before the measured `seconds`, not recorded. */
  readonly settleSeconds: number
}

/** One fixed-rate window: what any load window reports, and what only the pacer knows. */
export interface PacedLoadResult extends LoadResult {
  /** The rate asked for, requests per second. */
  readonly rate: number
  /** Requests released in the measured part (`rate × seconds`); `requests` are the ones answered. */
  readonly scheduled: number
  /** Requests sent by the same process before the measured part (one per connection, then the settling part). */
  readonly warmupRequests: number
  /** How late the pacer released requests, 99th percentile, ms (not in the latency figures). */
  readonly pacerLagP99Ms: number
}

/**
 * Runs one window at a fixed rate with bench/paced-load.ts (open loop: arrivals do not wait for answers).
 * `rps` is the rate achieved: answers ÷ the time from the first release to the last answer.
 * @throws when the generator fails or prints nothing readable
 */
export async function runPacedLoad (options: PacedLoadOptions): Promise<PacedLoadResult> {
  const out = await runToEnd({
    name: 'paced-load',
    command: process.execPath,
    args: [...TS_NODE_ARGS, join(ROOT, 'bench', 'paced-load.ts')],
    core: options.core,
    env: {
      PACED_URL: options.url,
      PACED_RATE: String(options.rate),
      PACED_SECONDS: String(options.seconds),
      PACED_SETTLE_SECONDS: String(options.settleSeconds),
      PACED_CONNECTIONS: String(options.connections),
      PACED_HEADERS: JSON.stringify(options.headers)
    },
    // Start-up, priming and a drain of up to 5 s besides the paced seconds.
    timeoutMs: (options.settleSeconds + options.seconds + 20) * 1000
  })
  const line = out.stdout.split('\n').find((each) => each.startsWith('PACED_JSON '))
  if (out.code !== 0 || line === undefined) {
    throw new Error(`bench: paced load failed (exit ${out.code}): ${out.stderr.trim() || out.stdout.trim()}`)
  }
  const r = JSON.parse(line.slice('PACED_JSON '.length)) as PacedReport
  return {
    requests: r.requests,
    durationS: r.durationS,
    rps: r.requests / r.durationS,
    p50Ms: r.p50Ms,
    p99Ms: r.p99Ms,
    badStatus: r.badStatus,
    socketErrors: r.socketErrors,
    rate: options.rate,
    scheduled: r.scheduled,
    warmupRequests: r.warmupRequests,
    pacerLagP99Ms: r.lagP99Ms
  }
}
