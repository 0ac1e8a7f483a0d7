/**
 * `npm run bench:ab`: the gateway CPU cost per request of two builds, A and B, measured at the same time.
 *
 *   npm run bench:ab -- --a <build> --b <build> [--mode memory|redis|near-cache] [--path hit|new]
 *                       [--rounds N] [--seconds S] [--both-orders]
 *
 * A build is a gateway script (e.g. dist/gateway/cli.js), a git revision (HEAD~3, main, a SHA: checked out as a
 * detached worktree in bench/results/tmp/ab/<sha>, node_modules symlinked from this repository, compiled with
 * tsconfig.build.json and kept for the next run of the same SHA), or `plain`, the plain @fastify/reply-from
 * baseline (bench/plain-gateway.ts). A path is used as it is: nothing rebuilds dist/ behind it.
 *
 * What it measures: both gateways run at once, both pinned to core 0; each has its own upstreams process and its
 * own autocannon (50 connections) on core 1. Each round starts both loads, lets them ramp for 1 s, then reads over
 * the same S seconds each gateway's CPU time (utime + stime of its process, /proc/<pid>/stat) and the requests its
 * upstreams served (their exact counters, bench/upstreams.ts SERVED_PATH), giving CPU µs per request. Host speed
 * drifts by ±20% within minutes here (shared/PERF-ANCHORS.md); it hits both gateways of a window alike, so the
 * per-round ratio B÷A is far tighter (about ±2%) than ratios of windows taken one after the other. The estimate is
 * the geometric mean of B÷A with a 95% Student-t interval over the per-round log-ratios; the verdict says "not
 * resolved" when that interval contains 1.
 *
 * Limits:
 * - Both gateways share core 0, so each runs below saturation (about half a core each) and the load core is
 *   busier than in `npm run bench`: the µs/request figures are for comparing the two builds of one run, not
 *   absolute costs, nor comparable with `npm run bench` figures.
 * - The CPU counted is the gateway process's only: the Redis server's CPU (redis and near-cache modes: one
 *   redis-server on core 1, shared by both gateways) is not counted, nor the kernel's loopback work.
 * - The interval covers the round-to-round noise of one set of processes, not how two fresh processes of one
 *   build differ (start order, JIT, memory layout): plain vs plain came out at B÷A 0.96-1.03 per start order over
 *   four runs on this VM, so a difference under ~4% is flagged as within that spread even when the interval
 *   excludes 1. `--both-orders` runs the whole comparison again with fresh processes started the other way round
 *   and reports both and their geometric mean (plain vs plain: 0.985-0.998 over three runs). The load
 *   generators' start order alternates every round.
 * - Each comparison begins with 5 s of unmeasured load on both gateways, so that round 1 does not count the
 *   JIT's compiling (without it round 1 ran at up to ~3× the CPU per request of later rounds).
 * - Rounds with non-2xx answers or socket errors (whose cheap error replies would lower the CPU per request) are
 *   shown, flagged, and left out of the estimate.
 *
 * Everything listens on 127.0.0.1; the processes started here are stopped by PID, also on Ctrl-C and on errors.
 * Worktrees made for revisions are kept (`git worktree remove bench/results/tmp/ab/<sha>` removes one).
 */
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { cpus } from 'node:os'
import { performance } from 'node:perf_hooks'
import { parseBuildArgs, reportFailure } from './build-args'
import { UPSTREAMS_SCRIPT, compileBenchScripts, resolveBuild, type Build } from './builds'
import { gatewayEnv, type Mode, type RequestPath } from './gateway-modes'
import { runLoad, type LoadResult } from './load'
import { checkHitPath, checkNewPath, checkPlain, probe, SanityError, servedByUpstreams } from './probe'
import {
  HAS_TASKSET, freePort, processCpuSeconds, repin, startProcess, stopProcess, stopProcessesOnExit, BENCH_COOKIE_NAME, type Started
} from './processes'
import { startRedis, type BenchRedis } from './redis'
import { fmt, pairedInterval, tQuantile975, type Interval } from './report'

const GATEWAY_CORE = 0
const LOAD_CORE = 1
/** Connections of each load generator (as `npm run bench`). */
const CONNECTIONS = 50
const RAMP_S = 1
/** Unmeasured load on both gateways before the first round: without it the first round counts the JIT's compiling. */
const WARM_UP_S = 5
/** Extra seconds each load generator runs after the measured window, so the window never sees it stop. */
const LOAD_TAIL_S = 3
/** Longest wait for both loads to reach their upstreams after they are started. */
const LOAD_START_TIMEOUT_MS = 10_000
const PAUSE_BETWEEN_ROUNDS_MS = 300
/**
 * How far B÷A of two fresh processes of one build has strayed from 1 here (plain vs plain, one start order:
 * 0.96-1.03): a resolved difference smaller than this gets a caveat.
 */
const PROCESS_SPREAD = 0.04
const COOKIE_NAME = BENCH_COOKIE_NAME

const USAGE = `Usage: npm run bench:ab -- --a <build> --b <build> [options]

Compares the gateway CPU per request of two builds run at the same time (both on core 0).

  --a, --b <build>     a gateway script (e.g. dist/gateway/cli.js), a git revision (HEAD~3, main, a SHA)
                       or "plain" (the plain @fastify/reply-from baseline)
  --mode <mode>        memory (default), redis (near cache off) or near-cache (10s), one Redis for both
  --path <path>        hit (default: the routing cookie of a first request on every request) or new (no cookie)
  --rounds N           paired rounds (default 6)
  --seconds S          measured seconds per round, after a 1 s ramp (default 3)
  --both-orders        run it again with the gateways' start order swapped; report both and their mean
`

/** The two builds under comparison. */
type SideName = 'A' | 'B'

/** What the command line asks for. */
interface AbSettings {
  readonly a: string
  readonly b: string
  readonly mode: Mode
  readonly path: RequestPath
  readonly rounds: number
  readonly seconds: number
  readonly bothOrders: boolean
}

/**
 * Reads the command line.
 * @throws UsageError naming the bad argument
 */
function parseArgs (argv: readonly string[]): AbSettings {
  const args = parseBuildArgs(argv, { options: ['--mode', '--path', '--rounds', '--seconds'], flags: ['--both-orders'], usage: USAGE })
  return {
    a: args.a,
    b: args.b,
    mode: args.oneOf<Mode>('--mode', ['memory', 'redis', 'near-cache'], 'memory'),
    path: args.oneOf<RequestPath>('--path', ['hit', 'new'], 'hit'),
    // Two rounds at least: one round gives no interval.
    rounds: args.int('--rounds', 2, 100, 6),
    seconds: args.int('--seconds', 1, 60, 3),
    bothOrders: args.flag('--both-orders')
  }
}

/** One gateway under load, with its own upstreams. */
interface Side {
  readonly name: SideName
  readonly build: Build
  readonly gateway: Started
  readonly upstreams: Started
  readonly url: string
  readonly upstreamUrls: readonly string[]
  /** Sent on every request of the load (hit path of a sticky gateway), else undefined. */
  readonly cookie: string | undefined
  /** Whether a first request got a routing cookie (false for a plain proxy). */
  readonly sticky: boolean
}

/**
 * Starts one side: its upstreams on the load core, then its gateway (loaded on both cores, pinned to the gateway
 * core once listening), and probes it.
 * @throws SanityError when the gateway does not answer or route as the path needs
 */
async function startSide (name: SideName, build: Build, settings: AbSettings, baseEnv: Record<string, string | undefined>): Promise<Side> {
  const { proc: upstreams, line } = await startProcess({
    name: `upstreams ${name}`,
    command: process.execPath,
    args: [UPSTREAMS_SCRIPT],
    core: LOAD_CORE,
    readyLine: /^upstreams /
  })
  const upstreamList = line.replace(/^upstreams /, '').trim()
  const port = await freePort()
  const { proc: gateway } = await startProcess({
    name: `gateway ${name}`,
    command: process.execPath,
    args: [build.script],
    core: null,
    env: { ...baseEnv, PORT: String(port), UPSTREAMS: upstreamList },
    readyLine: /listening/,
    readyTimeoutMs: 30_000
  })
  repin(gateway, GATEWAY_CORE)
  const url = `http://127.0.0.1:${port}/x`
  const first = await probe(url, COOKIE_NAME)
  if (first.status !== 200) throw new SanityError(`gateway ${name} (${build.label}) answered ${first.status} to a first request`)
  // A build that sets no routing cookie is a plain proxy: it gets the same load without a cookie.
  let cookie: string | undefined
  if (first.setCookie === undefined) {
    await checkPlain(url, COOKIE_NAME)
  } else if (settings.path === 'hit') {
    cookie = (await checkHitPath(url, COOKIE_NAME)).cookie
  } else {
    await checkNewPath(url, COOKIE_NAME)
  }
  return {
    name,
    build,
    gateway,
    upstreams,
    url,
    upstreamUrls: upstreamList.split(',').map((entry) => entry.slice(entry.indexOf('=') + 1)),
    cookie,
    sticky: first.setCookie !== undefined
  }
}

/** What one gateway did over a measured window. */
interface SideWindow {
  readonly cpuUsPerReq: number
  readonly rps: number
  /** CPU of the gateway process, % of one core. */
  readonly cpuPct: number
}

/** One paired round. */
interface RoundResult {
  readonly round: number
  /** Whose load generator was started first. */
  readonly loadFirst: SideName
  readonly a: SideWindow
  readonly b: SideWindow
  /** B's CPU µs per request ÷ A's. */
  readonly ratio: number
  /** Why the round is left out of the estimate; empty when kept. */
  readonly flags: string[]
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Runs one round: both loads at once, a ramp, then one window read on both gateways at the same instants.
 * @throws when a load generator fails or the load does not reach the upstreams in time
 */
async function measureRound (round: number, sides: Readonly<Record<SideName, Side>>, loadFirst: SideName, seconds: number): Promise<RoundResult> {
  const launchOrder: SideName[] = loadFirst === 'A' ? ['A', 'B'] : ['B', 'A']
  let failed: unknown = null
  const loads = new Map<SideName, Promise<{ result: LoadResult, endedAt: number }>>()
  for (const name of launchOrder) {
    const side = sides[name]
    const load = runLoad('autocannon', {
      url: side.url,
      seconds: RAMP_S + seconds + LOAD_TAIL_S,
      connections: CONNECTIONS,
      headers: side.cookie === undefined ? {} : { cookie: side.cookie },
      core: LOAD_CORE
    }).then((result) => ({ result, endedAt: performance.now() }))
    load.catch((error: unknown) => { failed ??= error })
    loads.set(name, load)
  }

  // The ramp starts once both loads reach their upstreams (autocannon itself takes a moment to start).
  const idle = await Promise.all([servedByUpstreams(sides.A.upstreamUrls), servedByUpstreams(sides.B.upstreamUrls)])
  const deadline = Date.now() + LOAD_START_TIMEOUT_MS
  for (;;) {
    await sleep(50)
    if (failed !== null) break
    const now = await Promise.all([servedByUpstreams(sides.A.upstreamUrls), servedByUpstreams(sides.B.upstreamUrls)])
    if (now[0] > idle[0] && now[1] > idle[1]) break
    if (Date.now() > deadline) throw new Error(`bench:ab: round ${round}: the load did not reach both gateways' upstreams within ${LOAD_START_TIMEOUT_MS} ms`)
  }
  if (failed === null) await sleep(RAMP_S * 1000)

  const read = async (): Promise<{ at: number, cpu: [number, number], served: [number, number] }> => {
    const cpu: [number, number] = [cpuSeconds(sides.A), cpuSeconds(sides.B)]
    const at = performance.now()
    const served = await Promise.all([servedByUpstreams(sides.A.upstreamUrls), servedByUpstreams(sides.B.upstreamUrls)])
    return { at, cpu, served }
  }
  const start = failed === null ? await read() : null
  if (failed === null) await sleep(seconds * 1000)
  const end = failed === null ? await read() : null
  const [loadA, loadB] = await Promise.all([loads.get('A'), loads.get('B')])
  if (start === null || end === null || loadA === undefined || loadB === undefined) throw failed

  const windowS = (end.at - start.at) / 1000
  const windowOf = (i: 0 | 1): SideWindow => {
    const requests = end.served[i] - start.served[i]
    if (requests <= 0) throw new Error(`bench:ab: round ${round}: gateway ${i === 0 ? 'A' : 'B'} forwarded no request in the window`)
    const cpuS = end.cpu[i] - start.cpu[i]
    return { cpuUsPerReq: cpuS * 1e6 / requests, rps: requests / windowS, cpuPct: cpuS / windowS * 100 }
  }
  const a = windowOf(0)
  const b = windowOf(1)
  const flags: string[] = []
  for (const [name, load] of [['A', loadA], ['B', loadB]] as const) {
    if (load.result.badStatus > 0) flags.push(`${name}: ${load.result.badStatus} non-2xx`)
    if (load.result.socketErrors > 0) flags.push(`${name}: ${load.result.socketErrors} socket errors`)
    if (load.endedAt < end.at) flags.push(`${name}: load ended inside the window`)
  }
  return { round, loadFirst, a, b, ratio: b.cpuUsPerReq / a.cpuUsPerReq, flags }
}

/**
 * Loads both gateways at once for {@link WARM_UP_S} seconds, measuring nothing.
 * @throws when a load generator fails
 */
async function warmUp (sides: Readonly<Record<SideName, Side>>): Promise<void> {
  await Promise.all((['A', 'B'] as const).map((name) => runLoad('autocannon', {
    url: sides[name].url,
    seconds: WARM_UP_S,
    connections: CONNECTIONS,
    headers: sides[name].cookie === undefined ? {} : { cookie: sides[name].cookie },
    core: LOAD_CORE
  })))
  await sleep(PAUSE_BETWEEN_ROUNDS_MS)
}

/** @returns CPU seconds of a side's gateway process so far */
function cpuSeconds (side: Side): number {
  const cpu = processCpuSeconds(side.gateway.pid)
  if (cpu === null) throw new Error(`bench:ab: gateway ${side.name} (pid ${side.gateway.pid}) is gone\n  ${side.gateway.tail.join('\n  ')}`)
  return cpu
}

/** One whole comparison: fresh processes started in one order, then every round. */
interface Comparison {
  /** The side whose processes were started first. */
  readonly startedFirst: SideName
  readonly rounds: RoundResult[]
  /** Geometric mean of the kept rounds' B÷A with its 95% interval; null when no round was kept. */
  readonly ci: Interval | null
  /** log(B÷A) of the kept rounds. */
  readonly logRatios: number[]
}

/**
 * Starts a Redis when the mode needs one, both sides in the given order, runs the rounds, and stops what it
 * started (also when a round fails).
 */
async function runComparison (startedFirst: SideName, builds: Readonly<Record<SideName, Build>>, settings: AbSettings): Promise<Comparison> {
  const own: Started[] = []
  let redis: BenchRedis | null = null
  try {
    if (settings.mode !== 'memory') {
      redis = await startRedis('redis-server (shared by A and B)', LOAD_CORE)
      own.push(redis.proc)
    }
    const baseEnv = gatewayEnv(settings.mode, randomBytes(36).toString('base64url'), redis)
    const order: SideName[] = startedFirst === 'A' ? ['A', 'B'] : ['B', 'A']
    const sides: Partial<Record<SideName, Side>> = {}
    for (const name of order) {
      const side = await startSide(name, builds[name], settings, baseEnv)
      own.push(side.upstreams, side.gateway)
      sides[name] = side
    }
    const both = sides as Record<SideName, Side>
    for (const name of ['A', 'B'] as const) {
      const side = both[name]
      log(`  ${name}: pid ${side.gateway.pid}, ${side.sticky ? (side.cookie === undefined ? 'sticky, no cookie sent' : 'sticky, its routing cookie sent') : 'no routing cookie (plain proxy), none sent'}`)
    }
    await warmUp(both)
    log('  round   A µs/req   B µs/req    B÷A   A req/s   B req/s   A cpu%   B cpu%   first load')
    const rounds: RoundResult[] = []
    for (let round = 1; round <= settings.rounds; round++) {
      const r = await measureRound(round, both, round % 2 === 1 ? order[0] : order[1], settings.seconds)
      rounds.push(r)
      log(`  ${String(round).padStart(5)}   ${fmt(r.a.cpuUsPerReq, 1).padStart(8)}   ${fmt(r.b.cpuUsPerReq, 1).padStart(8)}   ${fmt(r.ratio, 3).padStart(5)}` +
        `   ${fmt(r.a.rps).padStart(7)}   ${fmt(r.b.rps).padStart(7)}   ${fmt(r.a.cpuPct).padStart(6)}   ${fmt(r.b.cpuPct).padStart(6)}   ${r.loadFirst}` +
        (r.flags.length > 0 ? `   LEFT OUT: ${r.flags.join('; ')}` : ''))
      await sleep(PAUSE_BETWEEN_ROUNDS_MS)
    }
    const kept = rounds.filter((r) => r.flags.length === 0).map((r) => r.ratio)
    return { startedFirst, rounds, ci: pairedInterval(kept, true), logRatios: kept.map(Math.log) }
  } finally {
    redis?.client.disconnect()
    // Newest first: gateways before their upstreams and the Redis they use.
    for (const proc of own.reverse()) await stopProcess(proc)
  }
}

/**
 * The geometric mean of B÷A over both start orders, each order weighing half whatever its round count, with a
 * 95% interval from the two orders' own spreads (Welch): the start-order bias cancels in the mean, and is not
 * counted as noise.
 * @returns null unless both orders have two kept rounds or more
 */
function combineOrders (first: readonly number[], second: readonly number[]): Interval | null {
  if (first.length < 2 || second.length < 2) return null
  const stats = (xs: readonly number[]): { mean: number, se2: number, n: number } => {
    const mean = xs.reduce((a, b) => a + b, 0) / xs.length
    const variance = xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1)
    return { mean, se2: variance / xs.length, n: xs.length }
  }
  const s1 = stats(first)
  const s2 = stats(second)
  const mean = (s1.mean + s2.mean) / 2
  const se2 = (s1.se2 + s2.se2) / 4
  const welchDf = (s1.se2 + s2.se2) ** 2 / (s1.se2 ** 2 / (s1.n - 1) + s2.se2 ** 2 / (s2.n - 1))
  // Rounded down (a wider interval) since the quantile table has whole degrees of freedom; NaN when both spreads are 0.
  const df = Number.isFinite(welchDf) ? Math.max(1, Math.floor(welchDf)) : s1.n + s2.n - 2
  const half = tQuantile975(df) * Math.sqrt(se2)
  return { estimate: Math.exp(mean), low: Math.exp(mean - half), high: Math.exp(mean + half), n: s1.n + s2.n, level: 0.95 }
}

/** @returns the interval as `B÷A 0.912, 95% CI [0.893, 0.931] over 6 rounds` */
function describeInterval (ci: Interval | null): string {
  if (ci === null) return 'no round kept'
  return `B÷A ${fmt(ci.estimate, 3)}, 95% CI [${fmt(ci.low, 3)}, ${fmt(ci.high, 3)}] over ${ci.n} rounds`
}

/** @returns the one-line verdict: how much more or less CPU per request B costs, or "not resolved" */
function verdict (ci: Interval | null): string {
  if (ci === null || !Number.isFinite(ci.low)) return 'not resolved (too few kept rounds for an interval)'
  const pct = (x: number): string => fmt(Math.abs(1 - x) * 100, 1) + '%'
  if (ci.high < 1) return `B costs ${pct(ci.estimate)} less CPU per request than A [95% CI ${pct(ci.high)}–${pct(ci.low)} less]`
  if (ci.low > 1) return `B costs ${pct(ci.estimate)} more CPU per request than A [95% CI ${pct(ci.low)}–${pct(ci.high)} more]`
  return `not resolved: B÷A ${fmt(ci.estimate, 3)}, its 95% CI [${fmt(ci.low, 3)}, ${fmt(ci.high, 3)}] contains 1`
}

/** @returns a caveat when a resolved difference is within what fresh processes of one build differ by, else '' */
function spreadCaveat (ci: Interval | null): string {
  if (ci === null || !Number.isFinite(ci.low) || (ci.low <= 1 && ci.high >= 1)) return ''
  if (Math.abs(Math.log(ci.estimate)) >= Math.log(1 + PROCESS_SPREAD)) return ''
  return `(caution: under the ${fmt(PROCESS_SPREAD * 100)}% by which two fresh processes of one build have differed here; ` +
    'repeat the run, or check with --a plain --b plain, before trusting it)'
}

const log = (line: string): void => { process.stdout.write(line + '\n') }

async function main (): Promise<void> {
  const settings = parseArgs(process.argv.slice(2))
  if (!HAS_TASKSET) throw new Error('bench:ab: taskset (util-linux) is needed: both gateways must share core 0')
  if (cpus().length < 2) throw new Error('bench:ab: needs 2 cores or more (gateways on core 0, the load on core 1)')
  // This orchestrator polls counters during the window: keep it off the gateways' core.
  spawnSync('taskset', ['-a', '-pc', String(LOAD_CORE), String(process.pid)])

  compileBenchScripts()
  const builds: Record<SideName, Build> = { A: resolveBuild(settings.a), B: resolveBuild(settings.b) }
  log(`A = ${builds.A.label}`)
  log(`B = ${builds.B.label}`)
  log(`mode ${settings.mode}, ${settings.path} path; ${WARM_UP_S} s warm-up, then ${settings.rounds} rounds × ${settings.seconds} s (each after a ${RAMP_S} s ramp), ` +
    `autocannon ${CONNECTIONS} connections per gateway; gateways on core ${GATEWAY_CORE}, load, upstreams${settings.mode === 'memory' ? '' : ', Redis'} on core ${LOAD_CORE}`)

  const orders: SideName[] = settings.bothOrders ? ['A', 'B'] : ['A']
  const comparisons: Comparison[] = []
  for (const startedFirst of orders) {
    log(`\n${startedFirst} started first:`)
    const comparison = await runComparison(startedFirst, builds, settings)
    comparisons.push(comparison)
    log(`  ${describeInterval(comparison.ci)}`)
  }

  log('')
  if (comparisons.length === 2) {
    const [aFirst, bFirst] = comparisons
    const combined = combineOrders(aFirst.logRatios, bFirst.logRatios)
    for (const c of comparisons) log(`${c.startedFirst} started first: ${describeInterval(c.ci)}`)
    if (aFirst.ci !== null && bFirst.ci !== null) {
      log(`the two orders differ by ×${fmt(aFirst.ci.estimate / bFirst.ci.estimate, 3)} (start-order bias and the difference between two sets of processes, together)`)
    }
    log(`both orders (geometric mean): ${describeInterval(combined)}`)
    log(verdict(combined))
    const caveat = spreadCaveat(combined)
    if (caveat !== '') log(caveat)
  } else {
    log(verdict(comparisons[0].ci))
    log(spreadCaveat(comparisons[0].ci) || '(one start order: --both-orders runs it again with fresh processes started the other way round)')
  }
}

const shutdown = stopProcessesOnExit('bench:ab', log)

main().then(() => shutdown(0), (error: unknown) => {
  void shutdown(reportFailure('bench:ab', USAGE, error))
})
