/**
 * `npm run bench:ir`: the instructions per request of two gateway builds, A and B, counted by callgrind.
 *
 *   npm run bench:ir -- --a <build> --b <build> [--mode memory|redis|near-cache] [--path hit|new]
 *                       [--warm N] [--requests N] [--runs K] [--idle S]
 *
 * Builds as `npm run bench:ab` takes them (bench/builds.ts): a gateway script, a git revision (checked out and
 * compiled in bench/results/tmp/ab/<sha>), or `plain`.
 *
 * Why: `bench:ab` measures CPU time, and two fresh processes of one build differ by up to ±4 % on this 2-core VM;
 * the changes made to the hot path are 0.3-2 %. Instructions executed do not depend on the host's speed: counted
 * as below, undisturbed runs of one build agreed within 1.5 % (see Limits for disturbed ones).
 *
 * What it does, per run (K runs per build, A B A B…, one at a time): holds /tmp/bench.lock (bench/bench-lock.ts:
 * two valgrind runs at once moved each other's counts by ~4 %, since event-loop batching and scavenge survival
 * depend on timing); starts the upstreams (core 1), then the gateway under `valgrind --tool=callgrind` with
 * `node --perf-basic-prof --no-memory-reducer` (core 0; V8 then writes /tmp/perf-<pid>.map, which names JIT code;
 * the memory reducer would take the valgrind-slow gateway for an idle one); probes it as `bench:ab`
 * does (the routing cookie of a first request is sent on every request of the hit path); sends the warm-up
 * (autocannon, 10 connections, core 1) in three loads. The third load goes on into the measured requests and a tail:
 * the counters are zeroed (`callgrind_control -z`) when the upstreams have served the warm-up and dumped
 * (`callgrind_control -d`) when they have served the measured requests too, so that the window opens and closes
 * with requests flowing: a new load generator at the window's start (new connections after a pause) deoptimized
 * code that was then re-optimized inside the window, adding ~2 %. The window's requests are counted by callgrind
 * itself (calls of llhttp's on_message_complete), exact whatever the polling's timing. Then, with `--idle S`, it
 * dumps S seconds without load too; stops the gateway by PID; reads its perf map (each window up to the map's size
 * at its dump: code compiled later, on shutdown for one, can take the addresses of code the window ran) and deletes
 * it. Node serves 100-200 requests a second under callgrind: a run of the defaults takes about two minutes.
 *
 * The figure: steady Ir per request = every thread's instructions in the measured window, less major GC and the
 * optimizing compiler (whether they land in a window is chance: the whole process's count is not repeatable), ÷
 * the requests in the window. bench/ir-profile.ts says how instructions are put in categories, bench/callgrind.ts
 * how the profile is read, bench/ir-report.ts how runs are summed up.
 *
 * Limits:
 * - Instructions, not time: cache misses, branch mispredictions and the kernel's work are not seen, and every
 *   instruction weighs one. It complements `bench:ab`; it does not replace it.
 * - Timer-driven work (sweeps, flushes, health polls) is ~50× over-weighted: timers fire by the clock while a
 *   request takes ~50× longer. The report shows the timer callbacks' share and what runs with no load.
 * - Not every run is undisturbed: a mark-compact's marking in the window (write barriers on their slow path), code
 *   deoptimized and re-optimized in it, a host busy with other work (which shifts when the JIT and the GC act) added
 *   1-7 %, to about one run in four on this VM. Nothing takes instructions away, so each build is taken at its
 *   calmest run (lowest steady Ir) and the report marks the disturbances it sees: with `--runs 3` a disturbed run
 *   costs nothing; with one run per build it cannot be told from a real difference.
 * - One process, one load pattern (10 connections, closed loop, valgrind-slow): batching differs from full speed.
 *
 * Writes bench/results/ir/latest.{json,md}; the callgrind files stay in bench/results/tmp/callgrind/<date>/
 * (ignored by git). Everything listens on 127.0.0.1; the processes started here are stopped by PID, also on
 * Ctrl-C and on errors.
 */
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync } from 'node:fs'
import { cpus, release, userInfo } from 'node:os'
import { join, relative } from 'node:path'
import { performance } from 'node:perf_hooks'
import { acquireBenchLock } from './bench-lock'
import { parseBuildArgs, reportFailure } from './build-args'
import { UPSTREAMS_SCRIPT, compileBenchScripts, resolveBuild, type Build } from './builds'
import { readCallgrind } from './callgrind'
import { gatewayEnv, type Mode, type RequestPath } from './gateway-modes'
import { codeOrigin, countOptimizations, profileWindow } from './ir-profile'
import {
  calmSpreadOf, disturbancesOf, functionDifferences, renderIrMarkdown, summariseBuild, verdict, writeIrReport, type IrReport, type ReportBuild, type RunRecord, type SideName
} from './ir-report'
import { runLoad, type LoadResult } from './load'
import { openPerfMap, type PerfMapFile } from './perf-map'
import { checkHitPath, checkNewPath, checkPlain, probe, SanityError, servedByUpstreams } from './probe'
import {
  BENCH_COOKIE_NAME, HAS_TASKSET, ROOT, freePort, startProcess, stopProcess, stopProcessesOnExit, type Started
} from './processes'
import { startRedis, type BenchRedis } from './redis'
import { fmt } from './report'

const GATEWAY_CORE = 0
const LOAD_CORE = 1
/** Connections of the load generator: enough to keep a valgrind-slow gateway busy, as the hand-made runs had. */
const CONNECTIONS = 10
/** The warm-up is sent by this many load generators one after the other (see where it is sent). */
const WARM_PARTS = 3
/** Requests the measured load sends after the window closes, so that it closes with requests still flowing. */
const TAIL_SHARE = 0.1
const TAIL_MIN = 200
/** How often the upstreams' counters are read to open and close the window. */
const SERVED_POLL_MS = 50
/** The function llhttp calls once per request it has parsed: the window's requests are its calls there. */
const REQUEST_PARSED = 'llhttp__on_message_complete'
/** Slowest request rate a load may run at before it is taken as stuck (under callgrind ~100 req/s). */
const MIN_RATE = 10
/** Starting Node under callgrind takes 10-30 s here. */
const START_TIMEOUT_MS = 300_000
/** Stopping flushes the perf map and writes callgrind's last dump: give it time before SIGKILL. */
const STOP_GRACE_MS = 60_000
/** Between the measured dump and zeroing for the idle window: the load's connections close in it. */
const IDLE_SETTLE_MS = 1000
const RESULTS_DIR = join(ROOT, 'bench', 'results', 'ir')
/** The callgrind files (a few MB a run): under bench/results/tmp/, ignored by git. */
const CALLGRIND_DIR = join(ROOT, 'bench', 'results', 'tmp', 'callgrind')

const USAGE = `Usage: npm run bench:ir -- --a <build> --b <build> [options]

Counts the instructions per request of two builds under callgrind, one run at a time.

  --a, --b <build>     a gateway script (e.g. dist/gateway/cli.js), a git revision (HEAD~3, main, a SHA)
                       or "plain" (the plain @fastify/reply-from baseline)
  --mode <mode>        memory (default), redis (near cache off) or near-cache (10s), one Redis for all runs
  --path <path>        hit (default: the routing cookie of a first request on every request) or new (no cookie)
  --warm N             warm-up requests per run, not counted (default 6000)
  --requests N         measured requests per run (default 3000)
  --runs K             runs per build, A and B alternating; each build is taken at its calmest run
                       (default 1; 3 for differences of a few per cent)
  --idle S             seconds without load counted after the measured window, to show background work
                       (default 5; 0: none)
`

/** What the command line asks for. */
interface IrArgs {
  readonly a: string
  readonly b: string
  readonly mode: Mode
  readonly path: RequestPath
  readonly warm: number
  readonly requests: number
  readonly runs: number
  readonly idle: number
}

/** Thrown when valgrind is missing: one line, exit code 2. */
class MissingToolError extends Error {}

/**
 * Reads the command line.
 * @throws UsageError naming the bad argument
 */
function parseArgs (argv: readonly string[]): IrArgs {
  const args = parseBuildArgs(argv, { options: ['--mode', '--path', '--warm', '--requests', '--runs', '--idle'], flags: [], usage: USAGE })
  return {
    a: args.a,
    b: args.b,
    mode: args.oneOf<Mode>('--mode', ['memory', 'redis', 'near-cache'], 'memory'),
    path: args.oneOf<RequestPath>('--path', ['hit', 'new'], 'hit'),
    warm: args.int('--warm', 0, 1_000_000, 6000),
    // Fewer than a few hundred requests and the connections' opening and closing weigh on the figure.
    requests: args.int('--requests', 200, 1_000_000, 3000),
    runs: args.int('--runs', 1, 20, 1),
    idle: args.int('--idle', 0, 120, 5)
  }
}

/**
 * @throws MissingToolError when valgrind or callgrind_control is not installed
 */
function checkTools (): void {
  for (const tool of ['valgrind', 'callgrind_control']) {
    if (spawnSync(tool, ['--version']).status !== 0) throw new MissingToolError(`bench:ir: ${tool} is needed (apt-get install valgrind)`)
  }
}

/**
 * vgdb, which callgrind_control talks through, names its pipes after USER and HOST: callgrind_control finds the
 * process only when they are the same for it as for valgrind (the gateway's environment sets HOST for its own
 * use). Both get these.
 */
function vgdbEnv (): Record<string, string> {
  const user = userInfo().username
  return { USER: user, LOGNAME: user, HOST: '127.0.0.1' }
}

/**
 * Sends one command to a callgrind process.
 * @param command - `-z` zeroes the counters, `-d` dumps them to the next numbered file
 * @throws when callgrind_control does not reach the process
 */
function callgrindControl (command: '-z' | '-d', pid: number): void {
  const result = spawnSync('callgrind_control', [command, String(pid)], { env: { ...process.env, ...vgdbEnv() }, encoding: 'utf8', timeout: 120_000 })
  const output = ((result.stdout ?? '') + (result.stderr ?? '')).trim()
  // Its exit status says nothing (3.19 exits non-zero after a command went through): read what it printed.
  if (!output.includes(`sending command ${command === '-z' ? 'zero' : 'dump'} to pid ${pid}`)) {
    throw new Error(`bench:ir: callgrind_control ${command} ${pid} failed (is USER/HOST the same as valgrind's?): ${output}`)
  }
}

/** What one run needs besides its build. */
interface RunContext {
  readonly args: IrArgs
  readonly baseEnv: Record<string, string | undefined>
  readonly outDir: string
}

/** One run's processes and files, for the run to stop and read. */
interface RunOutcome {
  readonly record: Omit<RunRecord, 'measured' | 'idle' | 'optimized'>
  readonly sticky: boolean
  readonly callgrindFile: string
  readonly idleSeconds: number
  /**
   * The perf map's size when the measured window began, when it ended and when the idle one ended: each window is
   * named from the code made by its end, and what was made within the measured one is what V8 compiled in it.
   */
  readonly mapSizes: { readonly start: number, readonly measured: number, readonly idle: number }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
const seconds = (from: number): number => (performance.now() - from) / 1000
const log = (line: string): void => { process.stdout.write(line + '\n') }

/**
 * Runs one build once under callgrind, holding the bench lock from the upstreams' start to the gateway's stop,
 * then reads its profile.
 * @throws SanityError when the gateway does not route as the path needs; other errors when a tool fails
 */
async function measureRun (side: SideName, run: number, build: Build, context: RunContext): Promise<{ record: RunRecord, sticky: boolean }> {
  try {
    const release = await acquireBenchLock(log)
    let outcome: RunOutcome
    try {
      outcome = await runUnderCallgrind(side, run, build, context)
    } finally {
      release()
    }
    const map = runningPerfMap
    if (map === null) log(`  ${side}${run}: no perf map at /tmp/perf-${outcome.record.pid}.map: JIT code stays unnamed`)
    const origin = codeOrigin(build.script, ROOT)
    const profile = readCallgrind(outcome.callgrindFile + '.1')
    const measured = profileWindow(profile, map?.read(outcome.mapSizes.measured) ?? null, origin)
    const parsed = profile.callCounts.get(REQUEST_PARSED)
    if (parsed === undefined) log(`  ${side}${run}: no calls of ${REQUEST_PARSED} in the window: requests counted at the upstreams instead (±${CONNECTIONS} or so)`)
    const requests = parsed ?? outcome.record.forwarded
    const idle = outcome.idleSeconds > 0
      ? { seconds: outcome.idleSeconds, profile: profileWindow(readCallgrind(outcome.callgrindFile + '.2'), map?.read(outcome.mapSizes.idle) ?? null, origin) }
      : null
    const optimized = map === null ? [] : countOptimizations(map.namesBetween(outcome.mapSizes.start, outcome.mapSizes.measured), origin)
    if (requests <= 0) throw new Error(`bench:ir: ${side}${run}: no request in the measured window`)
    return { record: { ...outcome.record, requests, measured, idle, optimized }, sticky: outcome.sticky }
  } finally {
    // The map is ours (and can be large): gone whether the run succeeded or not.
    runningPerfMap?.discard()
    runningPerfMap = null
  }
}

/** The perf map of the run under way: removed after the run, or on the way out when Ctrl-C ends the command. */
let runningPerfMap: PerfMapFile | null = null
process.once('exit', () => { runningPerfMap?.discard() })

/** The part of a run that holds the lock: processes up, load, counters, processes down. */
async function runUnderCallgrind (side: SideName, run: number, build: Build, context: RunContext): Promise<RunOutcome> {
  const { args } = context
  const own: Started[] = []
  const name = `${side}${run}`
  const callgrindFile = join(context.outDir, `${name}.out`)
  try {
    const { proc: upstreams, line } = await startProcess({ name: `upstreams ${name}`, command: process.execPath, args: [UPSTREAMS_SCRIPT], core: LOAD_CORE, readyLine: /^upstreams / })
    own.push(upstreams)
    const upstreamList = line.replace(/^upstreams /, '').trim()
    const upstreamUrls = upstreamList.split(',').map((entry) => entry.slice(entry.indexOf('=') + 1))
    const port = await freePort()
    const startedAt = performance.now()
    const { proc: gateway } = await startProcess({
      name: `gateway ${name} (callgrind)`,
      command: 'valgrind',
      args: [
        '--tool=callgrind', '--smc-check=all-non-file', `--callgrind-out-file=${callgrindFile}`,
        // --perf-basic-prof also starts V8's log (isolate-<address>-<pid>-v8.log in the working directory): kept beside the run's files.
        process.execPath, '--perf-basic-prof', '--no-logfile-per-isolate', `--logfile=${callgrindFile}.v8.log`,
        // The memory reducer takes a low allocation rate per millisecond for an idle process and starts a
        // mark-compact ("Mark-Compact (reduce)" in --trace-gc, under load here); valgrind divides that rate by ~50,
        // so it fired in windows that the gateway at full speed would run without one.
        '--no-memory-reducer',
        build.script
      ],
      core: GATEWAY_CORE,
      env: { ...context.baseEnv, PORT: String(port), UPSTREAMS: upstreamList, ...vgdbEnv() },
      readyLine: /listening/,
      readyTimeoutMs: START_TIMEOUT_MS
    })
    own.push(gateway)
    // Opened now and read through this descriptor: the map stays readable if its name is removed meanwhile.
    runningPerfMap = openPerfMap(gateway.pid)
    const mapSize = (): number => runningPerfMap?.size() ?? 0
    const url = `http://127.0.0.1:${port}/x`
    const first = await probe(url, BENCH_COOKIE_NAME)
    if (first.status !== 200) throw new SanityError(`gateway ${name} (${build.label}) answered ${first.status} to a first request`)
    // A build that sets no routing cookie is a plain proxy: it gets the same load without a cookie.
    let cookie: string | undefined
    if (first.setCookie === undefined) await checkPlain(url, BENCH_COOKIE_NAME)
    else if (args.path === 'hit') cookie = (await checkHitPath(url, BENCH_COOKIE_NAME)).cookie
    else await checkNewPath(url, BENCH_COOKIE_NAME)
    const sticky = first.setCookie !== undefined
    const up = seconds(startedAt)

    const load = async (amount: number): Promise<LoadResult> => await runLoad('autocannon', {
      url,
      amount,
      seconds: Math.ceil(amount / MIN_RATE) + 60,
      connections: CONNECTIONS,
      headers: cookie === undefined ? {} : { cookie },
      core: LOAD_CORE
    })
    const warmAt = performance.now()
    // The warm-up's first parts each by a new load generator: new connections after a pause deoptimize some code
    // (socket set-up and close paths, stream teardown), which is then re-optimized before the window, not in it.
    const part = (i: number): number => Math.floor(args.warm * (i + 1) / WARM_PARTS) - Math.floor(args.warm * i / WARM_PARTS)
    for (let i = 0; i < WARM_PARTS - 1; i++) {
      const warm = part(i) > 0 ? await load(part(i)) : null
      if (warm !== null && warm.badStatus + warm.socketErrors > 0) {
        log(`  ${name}: warm-up part ${i + 1}: ${warm.badStatus} non-2xx, ${warm.socketErrors} socket errors or timeouts (a host too busy for the gateway under callgrind?)`)
      }
    }
    // Its last part, the measured requests and a tail in one load: the window opens and closes while requests
    // flow, with no pause or new connection at either end. The requests of the window are counted in it (calls of
    // llhttp's on_message_complete), not from here.
    const lastPart = part(WARM_PARTS - 1)
    const base = await servedByUpstreams(upstreamUrls)
    const running = load(lastPart + args.requests + Math.max(TAIL_MIN, Math.ceil(args.requests * TAIL_SHARE)))
    let loadFailed: unknown = null
    running.catch((error: unknown) => { loadFailed ??= error })
    const servedReaches = async (count: number): Promise<number> => {
      const deadline = Date.now() + (Math.ceil(count / MIN_RATE) + 60) * 1000
      for (;;) {
        if (loadFailed !== null) throw loadFailed
        const served = await servedByUpstreams(upstreamUrls) - base
        if (served >= count) return served
        if (Date.now() > deadline) throw new Error(`bench:ir: ${name}: the gateway forwarded ${served} of ${count} requests in time`)
        await sleep(SERVED_POLL_MS)
      }
    }
    const servedAtZero = await servedReaches(lastPart)
    callgrindControl('-z', gateway.pid)
    const startMapSize = mapSize()
    const windowAt = performance.now()
    const warmS = (windowAt - warmAt) / 1000
    const servedAtDump = await servedReaches(lastPart + args.requests)
    callgrindControl('-d', gateway.pid)
    const windowS = seconds(windowAt)
    const measuredMapSize = mapSize()
    let idleMapSize = measuredMapSize
    const measured = await running
    const forwarded = servedAtDump - servedAtZero

    if (args.idle > 0) {
      await sleep(IDLE_SETTLE_MS)
      callgrindControl('-z', gateway.pid)
      await sleep(args.idle * 1000)
      callgrindControl('-d', gateway.pid)
      idleMapSize = mapSize()
    }
    await stopProcess(gateway, STOP_GRACE_MS)
    await stopProcess(upstreams)

    const flags: string[] = []
    if (measured.badStatus > 0) flags.push(`${measured.badStatus} non-2xx`)
    if (measured.socketErrors > 0) flags.push(`${measured.socketErrors} socket errors`)
    log(`  ${name}: pid ${gateway.pid}, up in ${fmt(up)} s (${sticky ? (cookie === undefined ? 'sticky, no cookie sent' : 'sticky, its routing cookie sent') : 'plain proxy, no cookie'}); ` +
      `warm-up ${args.warm} in ${fmt(warmS)} s; window ${fmt(windowS, 1)} s, ~${forwarded} requests forwarded, ${fmt(forwarded / windowS)} req/s` +
      (flags.length > 0 ? `; LEFT OUT: ${flags.join('; ')}` : ''))
    const files = [`${callgrindFile}.1`, ...(args.idle > 0 ? [`${callgrindFile}.2`] : [])].map((f) => relative(ROOT, f))
    return {
      record: { side, run, pid: gateway.pid, requests: forwarded, forwarded, windowS, flags, files },
      sticky,
      callgrindFile,
      idleSeconds: args.idle,
      mapSizes: { start: startMapSize, measured: measuredMapSize, idle: idleMapSize }
    }
  } finally {
    // Newest first: the gateway before its upstreams.
    for (const proc of own.reverse()) await stopProcess(proc, STOP_GRACE_MS)
  }
}

/** @returns the facts the report prints about this machine */
function machineFacts (): Record<string, string | number> {
  const cpuModel = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? cpus()[0]?.model ?? 'unknown'
  return {
    nproc: cpus().length,
    cpuModel,
    kernel: `Linux ${release()}`,
    node: process.version,
    valgrind: spawnSync('valgrind', ['--version'], { encoding: 'utf8' }).stdout.trim()
  }
}

/** @returns the directories a build's own code is counted under, relative to the repository, or null */
function ownCodeOf (build: Build): string | null {
  const root = codeOrigin(build.script, ROOT).buildRoot
  if (root === null) return null
  const prefix = relative(ROOT, root)
  return prefix === '' ? 'dist/, lib/' : `${prefix}/dist/, ${prefix}/lib/`
}

async function main (): Promise<void> {
  const args = parseArgs(process.argv.slice(2))
  checkTools()
  // This orchestrator reads the profiles between runs: keep it off the gateway's core.
  if (HAS_TASKSET && cpus().length >= 2) spawnSync('taskset', ['-a', '-pc', String(LOAD_CORE), String(process.pid)])

  compileBenchScripts()
  const builds: Record<SideName, Build> = { A: resolveBuild(args.a), B: resolveBuild(args.b) }
  log(`A = ${builds.A.label}`)
  log(`B = ${builds.B.label}`)
  log(`mode ${args.mode}, ${args.path} path; per run ${args.warm} warm-up + ${args.requests} measured requests (autocannon, ${CONNECTIONS} connections)` +
    `${args.idle > 0 ? ` + ${args.idle} s idle` : ''}; ${args.runs} run(s) per build, A B alternating, one at a time under ${'/tmp/bench.lock'}`)

  const stamp = new Date().toISOString().replace(/[:.]/g, '-')
  const outDir = join(CALLGRIND_DIR, stamp)
  mkdirSync(outDir, { recursive: true })
  let redis: BenchRedis | null = null
  const runs: RunRecord[] = []
  const sticky: Partial<Record<SideName, boolean>> = {}
  try {
    if (args.mode !== 'memory') redis = await startRedis('redis-server (shared by every run)', LOAD_CORE)
    const context: RunContext = { args, baseEnv: gatewayEnv(args.mode, randomBytes(36).toString('base64url'), redis), outDir }
    for (let run = 1; run <= args.runs; run++) {
      for (const side of ['A', 'B'] as const) {
        const { record, sticky: isSticky } = await measureRun(side, run, builds[side], context)
        runs.push(record)
        sticky[side] = isSticky
        const notes = disturbancesOf(record)
        log(`  ${side}${run}: steady ${fmt(record.measured.steadyIr / record.requests)} Ir per request (total ${fmt(record.measured.totalIr / record.requests)})` +
          (notes.length > 0 ? `; ${notes.join('; ')}` : ''))
      }
    }
  } finally {
    redis?.client.disconnect()
    if (redis !== null) await stopProcess(redis.proc)
  }

  const summary = { A: summariseBuild(runs.filter((r) => r.side === 'A')), B: summariseBuild(runs.filter((r) => r.side === 'B')) }
  const reportBuild = (side: SideName): ReportBuild => ({
    label: builds[side].label, script: relative(ROOT, builds[side].script), sticky: sticky[side] ?? false, ownCode: ownCodeOf(builds[side])
  })
  const report: IrReport = {
    date: new Date().toISOString(),
    machine: machineFacts(),
    settings: { mode: args.mode, path: args.path, warm: args.warm, requests: args.requests, runs: args.runs, idle: args.idle, connections: CONNECTIONS },
    builds: { A: reportBuild('A'), B: reportBuild('B') },
    runs,
    summary,
    ratio: summary.A !== null && summary.B !== null ? summary.B.steady.lowest / summary.A.steady.lowest : null,
    meanRatio: summary.A !== null && summary.B !== null ? summary.B.steady.mean / summary.A.steady.mean : null,
    calmSpread: calmSpreadOf([summary.A, summary.B]),
    differences: summary.A !== null && summary.B !== null ? functionDifferences(summary.A, summary.B) : []
  }
  const written = writeIrReport(report, RESULTS_DIR)
  log('\n' + renderIrMarkdown(report))
  log(verdict(report))
  log(`bench:ir: wrote ${written.map((f) => relative(ROOT, f)).join(', ')}; callgrind files in ${relative(ROOT, outDir)}`)
}

const shutdown = stopProcessesOnExit('bench:ir', log)

main().then(() => shutdown(0), (error: unknown) => {
  if (error instanceof MissingToolError) {
    process.stderr.write(error.message + '\n')
    void shutdown(2)
    return
  }
  void shutdown(reportFailure('bench:ir', USAGE, error))
})
