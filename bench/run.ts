/**
 * `npm run bench`: fastify-sticky against plain @fastify/reply-from, measured in one run, interleaved and
 * paired per round (see shared/PERF-ANCHORS.md for why), with peer rows measured in the same rounds:
 * @fastify/http-proxy (plain, and through fastify-sticky's http-proxy door), and nginx / HAProxy where installed.
 * The primary figure is CPU µs per request (gateway + its Redis); every ratio to plain gets a 95% interval and a
 * target is met or missed only when its interval lies wholly on one side (docs/benchmark.md). Starts its own
 * upstreams, Redis servers and gateways, all on 127.0.0.1; stops exactly the processes it started.
 *
 * After the closed-loop rounds (which saturate the gateway, so their p99 is mostly queueing), a latency phase
 * runs plain and the sticky hit-path gateways at a fixed rate, half of plain's median req/s, with an open-loop
 * pacer (bench/paced-load.ts), in rounds interleaved and paired the same way: issue #17's "added p99 below
 * saturation" target is judged there.
 *
 *   npm run bench                   default: 5 rounds, about 7½ minutes on 2 cores
 *   npm run bench -- --quick        3 short rounds, under 2½ minutes (smoke test, indicative figures)
 *   npm run bench -- --self-check   plain vs a second plain gateway: every ratio should be ≈ 1.0
 *   options: --rounds N --measure S --warmup S --later-warmup S --rate-measure S --connections N --scale N|0
 *            --loadgen wrk|autocannon --no-readme
 *            --tsx           run the gateways from TypeScript through tsx (default: compiled JavaScript)
 *            --wait-quiet S  first wait up to S s for other processes on the host to go quiet (not counted
 *                            in the run's time budget)
 *   npm run bench -- --cpu-prof     instead of rounds: CPU profiles of the plain and each sticky gateway, hit
 *                                   path then new-session path → bench/results/profile.md (latest.* untouched)
 *
 * Layout (2 cores): core 0 runs the gateways (one Node process each, only one under load at a time) and the
 * seeding client; core 1 runs the load generator, the upstreams, the Redis servers and this orchestrator.
 */
import { randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { cpus, totalmem, release } from 'node:os'
import { join } from 'node:path'
import { spawnSync } from 'node:child_process'
import { loadGeneratorVersion, runLoad, runPacedLoad, wrkAvailable, type LoadGeneratorName, type LoadResult, type PacedLoadResult } from './load'
import { bindThroughGateway, checkHitPath, checkNewPath, checkPlain, SanityError, servedByUpstreams } from './probe'
import {
  HAS_TASKSET, ROOT, TS_NODE_ARGS, freePort, loadAverage1, ownCpuSeconds, prepareGatewayRunner, processCpuSeconds,
  readCoreTimes, reapedChildrenCpuSeconds, repin, repoFileExists, runToEnd, runningProcesses, startProcess,
  stopProcess, stopProcessesOnExit, stickyGatewayEnv, BENCH_COOKIE_NAME, BENCH_REDIS_PREFIX, type GatewayRunner, type Started
} from './processes'
import { commandCounts, resetCommandStats, startRedis, type BenchRedis } from './redis'
import {
  CPU_TARGET_HIT, CPU_TARGET_NEW, fmt, isScriptCommand, judgeAtMost, judgeIntervalAtLeast, judgeIntervalAtMost, spread, summarise,
  totalCpuUsPerReq, writeReport, type BenchReport, type ConfigSpec, type ConfigSummary, type Interval, type TargetVerdict, type WindowRecord
} from './report'
import { PEERS, peerBinary, peerVersion, startPeer } from './peers'
import type { SeedReport } from './seed'
import { summariseProfile, type ProfileSummary } from './profile-summary'

const GATEWAY_CORE = 0
const LOAD_CORE = 1
/** Pool name the fastify-sticky command gives its one pool (bindings seeded for the scale test must be in it). */
const GATEWAY_POOL = 'default'
const UPSTREAM_IDS = ['u1', 'u2', 'u3']
const COOKIE_NAME = BENCH_COOKIE_NAME
const PREFIX = BENCH_REDIS_PREFIX
/** Bindings made through each hit-path gateway before measuring, so the "small" store is not empty. */
const SMALL_BINDINGS = 1000
/** The latency phase's rate, as a share of plain's median hit-path req/s in the closed-loop rounds (issue #17). */
const RATE_FRACTION = 0.5
/** A fixed-rate window that served less than this share of the rate asked for was saturated (flagged). */
const RATE_HELD = 0.95

/**
 * The sticky gateway modes. A mode that the gateway command cannot run yet is listed as not present; adding
 * one (e.g. the near-cache) is one entry here.
 */
interface ModeSpec {
  readonly name: string
  readonly redis: boolean
  readonly env: Readonly<Record<string, string>>
  /** Whether this gateway can run the mode (checked against the gateway's source when not forced). */
  readonly present: (gatewaySource: string) => boolean
  /** Whether the hit path is measured again with a large store (the 1M vs 1k comparison). */
  readonly scale: boolean
}

const MODES: readonly ModeSpec[] = [
  { name: 'memory', redis: false, env: {}, present: () => true, scale: false },
  // The near cache is on by default with Redis: the plain Redis mode turns it off to measure one GET per request.
  { name: 'redis', redis: true, env: { STICKY_NEAR_CACHE: 'off' }, present: () => true, scale: true },
  // A cached hit does not read the store, so the large-store comparison is left to the plain Redis mode.
  { name: 'redis+near-cache', redis: true, env: { STICKY_NEAR_CACHE: '10s' }, present: () => true, scale: false }
]

interface Settings {
  quick: boolean
  /** Run the gateways from TypeScript through tsx instead of compiled JavaScript (to show what the loader costs). */
  tsx: boolean
  selfCheck: boolean
  rounds: number
  measureS: number
  warmupS: number
  laterWarmupS: number
  connections: number
  scale: number
  loadgen: LoadGeneratorName
  cpuProf: boolean
  readme: boolean
  seedBudgetMs: number
  /** Bindings made through the store API, at which Redis memory per binding is measured (issue #4: 100k). */
  memoryAt: number
  /** Pause letting in-flight requests finish before Redis counters are reset and read, ms. */
  drainMs: number
  /** Measured seconds of each fixed-rate latency window. */
  rateMeasureS: number
  /** Seconds each fixed-rate window paces before it records (the load generator's own warm-up; no gap after). */
  rateSettleS: number
  /** The whole run should end by then (s); quiet-waits and re-measures only spend the slack left. */
  deadlineS: number
  /** Before starting, wait up to this long for the host to be quiet (other processes < 15% of a core for 3 s). */
  waitQuietS: number
}

function parseArgs (argv: readonly string[]): Settings {
  const quick = argv.includes('--quick')
  const s: Settings = {
    quick,
    selfCheck: argv.includes('--self-check'),
    tsx: argv.includes('--tsx'),
    rounds: quick ? 3 : 5,
    measureS: quick ? 1 : 4,
    warmupS: quick ? 1 : 2,
    laterWarmupS: quick ? 0 : 1,
    connections: 50,
    scale: quick ? 100_000 : 1_000_000,
    loadgen: wrkAvailable() ? 'wrk' : 'autocannon',
    cpuProf: argv.includes('--cpu-prof'),
    readme: !argv.includes('--no-readme'),
    seedBudgetMs: quick ? 10_000 : 45_000,
    memoryAt: quick ? 20_000 : 100_000,
    drainMs: quick ? 80 : 150,
    rateMeasureS: quick ? 2 : 3,
    rateSettleS: quick ? 0.5 : 1,
    // Two peer rows (the @fastify/http-proxy ones) per round since issue #17: 11 windows a round instead of 9;
    // then the fixed-rate phase: 4 windows a round of about rateMeasureS + 1.5 s.
    deadlineS: quick ? 115 : 460,
    waitQuietS: 0
  }
  const value = (name: string): string | undefined => {
    const i = argv.indexOf(name)
    return i >= 0 ? argv[i + 1] : argv.find((a) => a.startsWith(name + '='))?.slice(name.length + 1)
  }
  const int = (name: string, min: number): number | undefined => {
    const raw = value(name)
    if (raw === undefined) return undefined
    const n = Number(raw)
    if (!Number.isInteger(n) || n < min) throw new Error(`bench: ${name} must be an integer ≥ ${min}, got ${JSON.stringify(raw)}`)
    return n
  }
  s.rounds = int('--rounds', 1) ?? s.rounds
  s.measureS = int('--measure', 1) ?? s.measureS
  s.warmupS = int('--warmup', 0) ?? s.warmupS
  s.laterWarmupS = int('--later-warmup', 0) ?? s.laterWarmupS
  s.rateMeasureS = int('--rate-measure', 1) ?? s.rateMeasureS
  s.connections = int('--connections', 1) ?? s.connections
  s.scale = int('--scale', 0) ?? s.scale
  s.waitQuietS = int('--wait-quiet', 0) ?? s.waitQuietS
  // Profiling uses the small stores only: no large store to seed.
  if (s.cpuProf) s.scale = 0
  const loadgen = value('--loadgen')
  if (loadgen !== undefined) {
    if (loadgen !== 'wrk' && loadgen !== 'autocannon') throw new Error(`bench: --loadgen must be wrk or autocannon, got ${loadgen}`)
    if (loadgen === 'wrk' && !wrkAvailable()) throw new Error('bench: --loadgen wrk, but wrk is not installed')
    s.loadgen = loadgen
  }
  return s
}

/** A gateway process under test. */
interface Gateway {
  readonly name: string
  readonly url: string
  readonly proc: Started
  readonly redis: BenchRedis | null
  /** `name=value` of the routing cookie the hit path sends (set after the sanity probe). */
  hitCookie?: string
}

const log = (line: string): void => { process.stdout.write(line + '\n') }

function sleep (ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** CPU used by everything this benchmark started (tracked processes, itself, its reaped children), s. */
function ourCpuSeconds (procs: readonly Started[]): number {
  return procs.reduce((sum, p) => sum + (processCpuSeconds(p.pid) ?? 0), 0) + ownCpuSeconds() + reapedChildrenCpuSeconds()
}

/** @returns CPU used over `ms` by processes the benchmark did not start, % of one core */
async function otherCpuNow (ms: number): Promise<number> {
  const procs = runningProcesses()
  const busy = (): number => readCoreTimes().reduce((sum, c) => sum + c.busy, 0)
  const b0 = busy()
  const o0 = ourCpuSeconds(procs)
  const t0 = process.hrtime.bigint()
  await sleep(ms)
  const wall = Number(process.hrtime.bigint() - t0) / 1e9
  return Math.max(0, 100 * ((busy() - b0) - (ourCpuSeconds(procs) - o0)) / wall)
}

function formatCount (n: number): string {
  return n >= 1e6 && n % 1e6 === 0 ? `${n / 1e6}M` : n >= 1000 && n % 1000 === 0 ? `${n / 1000}k` : String(n)
}

function machineFacts (loadgen: LoadGeneratorName, redisVersion: string): Record<string, string | number> {
  const cpuModel = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? cpus()[0]?.model ?? 'unknown'
  return {
    // --all: this process may already be pinned to one core.
    nproc: Number(spawnSync('nproc', ['--all'], { encoding: 'utf8' }).stdout.trim()) || cpus().length,
    cpuModel,
    memGiB: Math.round(totalmem() / 2 ** 30),
    kernel: `Linux ${release()}`,
    node: process.version,
    redis: redisVersion,
    loadGenerator: loadGeneratorVersion(loadgen),
    taskset: HAS_TASKSET ? 'yes' : 'no (processes not pinned)'
  }
}

/** A fixed CPU loop run pinned on one core: how fast the host is right now (ms; lower is faster). */
async function hostSpeed (core: number): Promise<number> {
  const code = 'const t=process.hrtime.bigint();let x=0;for(let i=0;i<3e7;i++)x=(x*31+i)|0;process.stdout.write(String(Number(process.hrtime.bigint()-t)/1e6)+" "+x)'
  const out = await runToEnd({ name: `host-speed-${core}`, command: process.execPath, args: ['-e', code], core, timeoutMs: 10_000 })
  return Number(out.stdout.split(' ')[0])
}

async function main (): Promise<void> {
  const settings = parseArgs(process.argv.slice(2))
  if (settings.waitQuietS > 0) {
    const until = Date.now() + settings.waitQuietS * 1000
    let quietFor = 0
    let last = -1
    while (quietFor < 3 && Date.now() < until) {
      last = await otherCpuNow(1000)
      quietFor = last <= 15 ? quietFor + 1 : 0
    }
    log(quietFor >= 3 ? 'bench: host is quiet' : `bench: host still busy after ${settings.waitQuietS} s (${last.toFixed(0)}% of a core used by others); starting anyway`)
  }
  const started = Date.now()
  const notes: string[] = []
  if (HAS_TASKSET) {
    // This orchestrator only waits and samples, but it shares the load core, never the gateway's.
    spawnSync('taskset', ['-a', '-pc', String(LOAD_CORE), String(process.pid)])
  } else {
    notes.push('taskset not available: nothing was pinned, gateways share cores with the load generator')
  }
  const runner = prepareGatewayRunner(settings.tsx)
  const gatewayPath = runner.gateway
  if (!settings.selfCheck && !repoFileExists(gatewayPath)) {
    throw new Error(`bench: ${gatewayPath} not found; run with --self-check to test the harness against plain gateways only`)
  }
  const gatewaySource = settings.selfCheck ? '' : readFileSync(join(ROOT, gatewayPath), 'utf8')
  const modes = settings.selfCheck ? [] : MODES
  const presentModes = modes.filter((mode) => mode.present(gatewaySource))
  const redisVersion = (spawnSync('redis-server', ['--version'], { encoding: 'utf8' }).stdout ?? '').match(/v=(\S+)/)?.[1] ?? 'not installed'
  const needsRedis = presentModes.some((mode) => mode.redis)
  if (needsRedis && redisVersion === 'not installed') throw new Error('bench: redis-server is not installed (needed for the Redis modes)')
  const machine = machineFacts(settings.loadgen, redisVersion)
  log(`bench: ${machine.nproc} cores (${machine.cpuModel}), node ${machine.node}, ${machine.loadGenerator}, taskset ${machine.taskset}`)
  log(`bench: modes ${modes.map((m) => `${m.name}${presentModes.includes(m) ? '' : ' (not present)'}`).join(', ') || 'self-check (plain vs plain)'}; ` +
    `${settings.rounds} rounds × ${settings.measureS} s windows${settings.quick ? ' (--quick)' : ''}`)

  // Upstreams and Redis servers (core 1), started together; one Redis per gateway, so that each gateway's
  // command counters and key count are its own.
  const redisFor = new Map<string, BenchRedis>()
  const redisRoles = presentModes.filter((m) => m.redis).flatMap((m) => ['hit', 'new', ...(m.scale && settings.scale > 0 ? ['large'] : [])].map((role) => `${m.name}/${role}`))
  const [upstreamsStart] = await Promise.all([
    startProcess({ name: 'upstreams', command: process.execPath, args: [...runner.nodeArgs, runner.upstreams], core: LOAD_CORE, readyLine: /^upstreams / }),
    ...redisRoles.map(async (role) => { redisFor.set(role, await startRedis(`redis-server for ${role}`, LOAD_CORE)) })
  ])
  const upstreamList = upstreamsStart.line.replace(/^upstreams /, '').trim()
  const upstreamUrls = upstreamList.split(',').map((entry) => entry.slice(entry.indexOf('=') + 1))

  const secret = randomBytes(36).toString('base64url')
  const baseEnv: Record<string, string | undefined> = {
    ...stickyGatewayEnv(secret),
    UPSTREAMS: upstreamList,
    REDIS_URL: undefined,
    STICKY_NEAR_CACHE: undefined,
    NODE_OPTIONS: undefined
  }
  const startGateway = async (name: string, script: string, env: Record<string, string>, redis: BenchRedis | null, extraNodeArgs: string[] = []): Promise<Gateway> => {
    const port = await freePort()
    const { proc } = await startProcess({
      name,
      command: process.execPath,
      args: [...extraNodeArgs, ...runner.nodeArgs, script],
      // Started on both cores (loading is the slow part), pinned once listening.
      core: null,
      env: { ...baseEnv, ...env, PORT: String(port), ...(redis === null ? {} : { REDIS_URL: redis.url }) },
      readyLine: /listening/,
      readyTimeoutMs: 30_000
    })
    repin(proc, GATEWAY_CORE)
    return { name, url: `http://127.0.0.1:${port}`, proc, redis }
  }

  // Configs, blocks and gateways.
  const hitSpecs: ConfigSpec[] = [{ config: 'plain/hit', mode: 'plain', path: 'hit', bindings: '–', baseline: null }]
  // Configs probed as plain proxies (one upstream, no routing cookie) rather than as sticky gateways.
  const plainProbed = new Set<string>(['plain/hit', 'plain/new', 'plain-b/hit', 'plain-b/new'])
  const newSpecs: ConfigSpec[] = [{ config: 'plain/new', mode: 'plain', path: 'new', bindings: '–', baseline: null }]
  const gatewayOf = new Map<string, Gateway>()
  const pending: Array<Promise<void>> = []
  pending.push(startGateway('plain', runner.plain, {}, null).then((g) => {
    gatewayOf.set('plain/hit', g)
    gatewayOf.set('plain/new', g)
  }))
  const scaleLabel = formatCount(settings.scale)
  const scaleTargets: Array<{ mode: ModeSpec, redis: BenchRedis }> = []
  if (settings.selfCheck) {
    pending.push(startGateway('plain-b', runner.plain, {}, null).then((g) => {
      gatewayOf.set('plain-b/hit', g)
      gatewayOf.set('plain-b/new', g)
    }))
    hitSpecs.push({ config: 'plain-b/hit', mode: 'plain-b', path: 'hit', bindings: '–', baseline: 'plain/hit' })
    newSpecs.push({ config: 'plain-b/new', mode: 'plain-b', path: 'new', bindings: '–', baseline: 'plain/new' })
  }
  // Peer rows, hit path (the same cookie header as every hit-path config): @fastify/http-proxy, plain and through the
  // sticky http-proxy door (memory store), and nginx / HAProxy where installed. Not in a self-check.
  const peers: BenchReport['peers'][number][] = []
  if (!settings.selfCheck) {
    pending.push(startGateway('http-proxy', runner.httpProxy, { HTTP_PROXY_MODE: 'plain' }, null).then((g) => { gatewayOf.set('http-proxy/hit', g) }))
    hitSpecs.push({ config: 'http-proxy/hit', mode: '@fastify/http-proxy', path: 'hit', bindings: '–', baseline: 'plain/hit', peer: true })
    plainProbed.add('http-proxy/hit')
    peers.push({ name: '@fastify/http-proxy', present: true, note: 'one upstream, no stickiness, same Fastify options as the plain gateway' })
    pending.push(startGateway('http-proxy-sticky', runner.httpProxy, { HTTP_PROXY_MODE: 'sticky' }, null).then((g) => { gatewayOf.set('http-proxy+sticky/hit', g) }))
    hitSpecs.push({ config: 'http-proxy+sticky/hit', mode: 'stickyHttpProxy (memory)', path: 'hit', bindings: formatCount(SMALL_BINDINGS), baseline: 'plain/hit' })
    for (const peer of PEERS) {
      const path = peerBinary(peer.binary)
      if (path === null) {
        peers.push({ name: peer.label, present: false, note: `not installed (\`command -v ${peer.binary}\` found nothing): skipped` })
        continue
      }
      const version = peerVersion(peer, path)
      pending.push(startPeer(peer, path, upstreamUrls[0], GATEWAY_CORE).then(({ proc, url }) => {
        gatewayOf.set(`${peer.name}/hit`, { name: peer.name, url, proc, redis: null })
      }))
      hitSpecs.push({ config: `${peer.name}/hit`, mode: peer.label, path: 'hit', bindings: '–', baseline: 'plain/hit', peer: true })
      plainProbed.add(`${peer.name}/hit`)
      peers.push({ name: peer.label, present: true, note: `${version}; one ${peer.name === 'nginx' ? 'worker' : 'thread'}, keep-alive to one upstream, no stickiness` })
    }
    const skipped = peers.filter((p) => !p.present)
    if (skipped.length > 0) log(`bench: ${skipped.map((p) => `${p.name} ${p.note}`).join('; ')}`)
  }
  for (const mode of presentModes) {
    const makeRedis = (role: string): BenchRedis | null => redisFor.get(`${mode.name}/${role}`) ?? null
    const hitRedis = makeRedis('hit')
    const newRedis = makeRedis('new')
    pending.push(startGateway(`${mode.name}-hit`, gatewayPath, mode.env, hitRedis).then((g) => { gatewayOf.set(`${mode.name}/hit`, g) }))
    pending.push(startGateway(`${mode.name}-new`, gatewayPath, mode.env, newRedis).then((g) => { gatewayOf.set(`${mode.name}/new`, g) }))
    hitSpecs.push({ config: `${mode.name}/hit`, mode: mode.name, path: 'hit', bindings: formatCount(SMALL_BINDINGS), baseline: 'plain/hit' })
    newSpecs.push({ config: `${mode.name}/new`, mode: mode.name, path: 'new', bindings: 'grows', baseline: 'plain/new' })
    if (mode.scale && settings.scale > 0) {
      const largeRedis = makeRedis('large') as BenchRedis
      scaleTargets.push({ mode, redis: largeRedis })
      pending.push(startGateway(`${mode.name}-large`, gatewayPath, mode.env, largeRedis).then((g) => { gatewayOf.set(`${mode.name}/hit@large`, g) }))
      hitSpecs.push({ config: `${mode.name}/hit@large`, mode: mode.name, path: 'hit', bindings: scaleLabel, baseline: 'plain/hit', scaleOf: `${mode.name}/hit` })
    }
  }
  await Promise.all(pending)
  const plain = gatewayOf.get('plain/hit') as Gateway
  log(`bench: started ${gatewayOf.size} gateway endpoints on core ${GATEWAY_CORE}, ${redisFor.size} Redis + upstreams on core ${LOAD_CORE} (${((Date.now() - started) / 1000).toFixed(1)} s)`)

  // Seeding of the large stores (client pinned to the idle gateway core; Redis on its own core).
  let memory: Record<string, unknown> | null = null
  for (const { mode, redis } of scaleTargets) {
    log(`bench: seeding ${scaleLabel} bindings into ${redis.name}: ${formatCount(Math.min(settings.memoryAt, settings.scale))} through RedisBindingStore.bindIfAbsent, the rest in bulk (budget ${settings.seedBudgetMs / 1000} s)…`)
    const out = await runToEnd({
      name: 'seed',
      command: process.execPath,
      args: [...TS_NODE_ARGS, 'bench/seed.ts'],
      core: GATEWAY_CORE,
      env: {
        SEED_REDIS_URL: redis.url,
        SEED_PREFIX: PREFIX,
        SEED_POOL: GATEWAY_POOL,
        SEED_COUNT: String(settings.scale),
        SEED_MEMORY_AT: String(Math.min(settings.memoryAt, settings.scale)),
        SEED_UPSTREAMS: UPSTREAM_IDS.join(','),
        SEED_BUDGET_MS: String(settings.seedBudgetMs)
      },
      timeoutMs: settings.seedBudgetMs + 60_000
    })
    const line = out.stdout.split('\n').find((each) => each.startsWith('SEED_JSON '))
    if (out.code !== 0 || line === undefined) throw new Error(`bench: seeding failed (exit ${out.code}): ${out.stderr.trim().slice(-2000)}`)
    const seed = JSON.parse(line.slice('SEED_JSON '.length)) as SeedReport
    log(`bench: seeded ${seed.seeded} bindings in ${seed.seconds.toFixed(1)} s (${Math.round(seed.perSecond)}/s)${seed.stoppedByBudget ? ' — STOPPED BY TIME BUDGET' : ''}`)
    if (seed.seeded < settings.scale) {
      notes.push(`${mode.name}: seeding stopped at ${seed.seeded} of ${settings.scale} bindings (time budget); the large-store rows have ${formatCount(seed.seeded)} bindings`)
      const spec = hitSpecs.find((s) => s.config === `${mode.name}/hit@large`)
      if (spec !== undefined) hitSpecs[hitSpecs.indexOf(spec)] = { ...spec, bindings: formatCount(seed.seeded) }
    }
    if (memory === null) {
      const sample = seed.memoryAtSample
      memory = {
        mode: mode.name,
        seededThrough: `the first ${formatCount(seed.memoryAtSample?.bindings ?? seed.seeded)} through RedisBindingStore.bindIfAbsent (the real layout: binding string + index ZSET member; bytes per binding measured on these), ` +
          'the rest in bulk (pipelined SET PX + ZADD, keys from store.bindingKey()), checked with store.get() and store.sessionCounts()',
        seed,
        bytesPerBinding: sample === null ? null : (sample.usedMemory - seed.memoryBefore) / sample.bindings,
        bindingsAtSample: sample?.bindings ?? null,
        bytesPerBindingAtEnd: (seed.memoryAtEnd - seed.memoryBefore) / seed.seeded,
        bindingsAtEnd: seed.seeded
      }
      log(`bench: Redis used_memory per binding: ${fmt(memory.bytesPerBinding as number, 0)} B at ${formatCount(sample?.bindings ?? 0)}, ${fmt(memory.bytesPerBindingAtEnd as number, 0)} B at ${formatCount(seed.seeded)}` +
        (seed.breakdown === null ? '' : ` (MEMORY USAGE: binding key ≈ ${fmt(seed.breakdown.bindingKeyBytes, 0)} B, index ZSET ≈ ${fmt(seed.breakdown.indexBytesPerBinding, 0)} B per binding)`))
      if (seed.bulk !== null && (!seed.bulk.readBack || seed.bulk.counted < seed.seeded)) {
        throw new SanityError(`bulk-seeded bindings do not match the store's layout (read back: ${seed.bulk.readBack}, counted ${seed.bulk.counted} of ${seed.seeded}); update bench/seed.ts`)
      }
      if (seed.breakdown !== null) {
        notes.push(`Redis memory per binding ${fmt(memory.bytesPerBinding as number, 0)} B (used_memory at ${formatCount(sample?.bindings ?? 0)}); MEMORY USAGE puts ≈ ${fmt(seed.breakdown.bindingKeyBytes, 0)} B in the binding key and ≈ ${fmt(seed.breakdown.indexBytesPerBinding, 0)} B in the per-upstream index ZSETs, the rest in the keyspace/expires tables.`)
      }
    }
  }

  // Sanity probes, small-store bindings, hit cookies.
  const sanity: Record<string, unknown> = {}
  sanity.plain = await checkPlain(plain.url, COOKIE_NAME)
  for (const spec of [...hitSpecs, ...newSpecs]) {
    const gateway = gatewayOf.get(spec.config) as Gateway
    if (plainProbed.has(spec.config)) {
      if (spec.mode !== 'plain') sanity[spec.config] = await checkPlain(gateway.url, COOKIE_NAME)
      continue
    }
    if (spec.path === 'new') {
      sanity[spec.config] = { upstreamsOfThreeNewSessions: await checkNewPath(gateway.url, COOKIE_NAME) }
      continue
    }
    if (spec.scaleOf === undefined) await bindThroughGateway(gateway.url, COOKIE_NAME, SMALL_BINDINGS)
    const hit = await checkHitPath(gateway.url, COOKIE_NAME)
    gateway.hitCookie = hit.cookie
    sanity[spec.config] = { firstUpstream: hit.first, upstreamsWithCookie: hit.upstreams }
    if (gateway.redis !== null) {
      const keys = await gateway.redis.client.dbsize()
      if (keys < 2) throw new SanityError(`${gateway.name}: its Redis holds ${keys} keys after probing; is REDIS_URL honoured?`)
      // The large store was seeded into pool GATEWAY_POOL: check on the small store (few keys) that the
      // gateway's own bindings are there too, i.e. that the seeded bindings sit beside real ones.
      if (spec.scaleOf === undefined) {
        const inPool = await gateway.redis.client.keys(`${PREFIX}{${GATEWAY_POOL}:*}:b:*`).then((k) => k.length)
        if (inPool < SMALL_BINDINGS) {
          throw new SanityError(`${gateway.name}: only ${inPool} of its bindings are in pool "${GATEWAY_POOL}" under prefix "${PREFIX}"; update GATEWAY_POOL in bench/run.ts to the pool the gateway command uses`)
        }
      }
      ;(sanity[spec.config] as Record<string, unknown>).redisKeys = keys
    }
  }
  // The plain baseline of the hit block sends the same Cookie header bytes as the sticky gateways.
  const anyCookie = [...gatewayOf.values()].find((g) => g.hitCookie !== undefined)?.hitCookie ?? `${COOKIE_NAME}=1.${'A'.repeat(22)}.u1.selfcheck.${'B'.repeat(43)}`
  for (const g of new Set(gatewayOf.values())) g.hitCookie ??= anyCookie
  log(`bench: sanity ok — ${Object.entries(sanity).map(([k, v]) => `${k}: ${JSON.stringify(v)}`).join('; ')}`)

  if (settings.cpuProf) {
    const profile = await profilePaths(settings, runner, startGateway, gatewayOf, presentModes, [...hitSpecs, ...newSpecs])
    const dir = join(ROOT, 'bench', 'results')
    mkdirSync(dir, { recursive: true })
    writeFileSync(join(dir, 'profile.json'), JSON.stringify({ date: new Date().toISOString(), machine, ...profile }, null, 2) + '\n')
    writeFileSync(join(dir, 'profile.md'), renderProfile(profile, machine))
    log(readFileSync(join(dir, 'profile.md'), 'utf8'))
    log('bench: wrote bench/results/profile.md and profile.json (latest.* untouched)')
    return
  }

  // Rounds: the closed-loop ones, then the latency phase at a fixed rate on the hit path (plain, each sticky mode).
  const rateSpecs = hitSpecs.filter((spec) => spec.config === 'plain/hit' || spec.config === 'plain-b/hit' ||
    presentModes.some((mode) => spec.config === `${mode.name}/hit`))
  const estimate = settings.rounds * (hitSpecs.length + newSpecs.length) * (settings.measureS + settings.laterWarmupS + 0.4) +
    (hitSpecs.length + newSpecs.length) * (settings.warmupS - settings.laterWarmupS) +
    settings.rounds * rateSpecs.length * (settings.rateSettleS + settings.rateMeasureS + 1.2)
  log(`bench: measuring, about ${Math.round(estimate)} s (${Math.round((Date.now() - started) / 1000)} s so far)`)
  const windows: WindowRecord[] = []
  const rateWindows: WindowRecord[] = []
  const hostSpeeds: Array<{ round: number, core0Ms: number, core1Ms: number }> = []
  const warmed = new Set<string>()

  // Per phase: windows planned and measured, and the seconds a window takes besides waiting for quiet, learnt as
  // the run goes (load generator start-up, drains, INFO), so that waits in the first phase leave the second its time.
  const budgets = {
    saturation: { planned: settings.rounds * (hitSpecs.length + newSpecs.length), done: 0, costS: settings.measureS + settings.laterWarmupS + 1, measured: 0, spentS: 0, remeasures: 0 },
    rate: { planned: settings.rounds * rateSpecs.length, done: 0, costS: settings.rateSettleS + settings.rateMeasureS + 1.5, measured: 0, spentS: 0, remeasures: 0 }
  }
  const slackS = (): number => settings.deadlineS - (Date.now() - started) / 1000 -
    Object.values(budgets).reduce((sum, b) => sum + Math.max(0, b.planned - b.done) * b.costS, 0) -
    (settings.quick ? 0 : settings.rounds - hostSpeeds.length) * 0.7
  let quietWaitedS = 0
  // Waits (within the slack) until nothing outside the benchmark uses more than 15% of a core.
  const waitForQuiet = async (): Promise<number> => {
    const t0 = Date.now()
    for (;;) {
      const other = await otherCpuNow(300)
      if (other <= 15) break
      if (slackS() < 3 || Date.now() - t0 > 10_000) {
        log(`  host busy (${other.toFixed(0)}% of a core used by processes not ours); measuring anyway`)
        break
      }
      await sleep(700)
    }
    const waited = (Date.now() - t0) / 1000
    quietWaitedS += waited
    return waited
  }

  /** One window of `spec`: closed loop when `rate` is null, else paced at `rate` requests per second. */
  const measure = async (spec: ConfigSpec, round: number, order: number, rate: number | null): Promise<WindowRecord> => {
    const gateway = gatewayOf.get(spec.config) as Gateway
    const budget = rate === null ? budgets.saturation : budgets.rate
    await waitForQuiet()
    const windowStarted = Date.now()
    const headers: Record<string, string> = spec.path === 'hit' ? { cookie: gateway.hitCookie as string } : {}
    const load = (seconds: number): Promise<LoadResult> =>
      runLoad(settings.loadgen, { url: gateway.url + '/bench', seconds, connections: settings.connections, headers, core: LOAD_CORE })
    // The fixed-rate phase runs gateways the closed-loop rounds have warmed; its pacer settles in its own run.
    const warm = rate !== null ? 0 : warmed.has(spec.config) ? settings.laterWarmupS : settings.warmupS
    warmed.add(spec.config)
    if (warm > 0) await load(warm)
    // Redis figures are per request the upstreams served between the reset and the read, after in-flight
    // requests have drained on both sides (wrk does not count the requests still in flight when it stops).
    let served0 = 0
    if (gateway.redis !== null) {
      await sleep(settings.drainMs)
      served0 = await servedByUpstreams(upstreamUrls)
      await resetCommandStats(gateway.redis)
    }
    const steady = runningProcesses()
    const snapshot = () => ({
      at: process.hrtime.bigint(),
      gateway: processCpuSeconds(gateway.proc.pid) ?? 0,
      redis: gateway.redis === null ? 0 : processCpuSeconds(gateway.redis.proc.pid) ?? 0,
      ours: ourCpuSeconds(steady),
      cores: readCoreTimes(),
      load1: loadAverage1()
    })
    const before = snapshot()
    const startedAt = new Date().toISOString()
    // At a fixed rate the measured gateway leaves its core half idle, and the other gateways on it, idle but with
    // timers of their own, used up to ~30 ms of it in a window; requests queued behind such a turn make the p99
    // at this rate, not the measured gateway. They are paused (by PID) for the window, and resumed whatever happens.
    const paused = rate === null ? [] : [...new Set(gatewayOf.values())].filter((g) => g !== gateway && g.proc.core === GATEWAY_CORE).map((g) => g.proc)
    for (const proc of paused) process.kill(proc.pid, 'SIGSTOP')
    let paced: PacedLoadResult | null = null
    try {
      if (rate !== null) {
        paced = await runPacedLoad({ url: gateway.url + '/bench', rate, seconds: settings.rateMeasureS, settleSeconds: settings.rateSettleS, connections: settings.connections, headers, core: LOAD_CORE })
      }
    } finally {
      for (const proc of paused) process.kill(proc.pid, 'SIGCONT')
    }
    const result: LoadResult = paced ?? await load(settings.measureS)
    const after = snapshot()
    const wall = Number(after.at - before.at) / 1e9
    // The CPU snapshots span the whole paced run: its priming and settling requests were served in them too.
    const servedInWindow = Math.max(1, result.requests + (paced?.warmupRequests ?? 0))
    let counts: Awaited<ReturnType<typeof commandCounts>> | null = null
    let proxied: number | null = null
    if (gateway.redis !== null) {
      await sleep(settings.drainMs)
      proxied = await servedByUpstreams(upstreamUrls) - served0
      counts = await commandCounts(gateway.redis)
    }
    const cores = after.cores.map((c, i) => {
      const b = before.cores[i]
      const total = c.total - b.total || 1e-9
      return { busyPct: 100 * (c.busy - b.busy) / total, irqPct: 100 * (c.irq - b.irq) / total, stealPct: 100 * (c.steal - b.steal) / total }
    })
    const busyAll = after.cores.reduce((sum, c, i) => sum + c.busy - before.cores[i].busy, 0)
    const otherCpuPct = Math.max(0, 100 * (busyAll - (after.ours - before.ours)) / wall)
    budget.measured++
    budget.spentS += (Date.now() - windowStarted) / 1000
    budget.costS = Math.max(budget.costS, budget.spentS / budget.measured)
    const flags: string[] = []
    if (result.badStatus + result.socketErrors > 0) flags.push(`errors: ${result.badStatus} bad status, ${result.socketErrors} socket`)
    if (cores.some((c) => c.stealPct > 5)) flags.push('steal > 5%')
    if (otherCpuPct > 20) flags.push(`other CPU ${otherCpuPct.toFixed(0)}%`)
    // Behind the rate, requests queued in the pacer: the window measured saturation, not the latency asked for.
    if (paced !== null && paced.rps < RATE_HELD * paced.rate) flags.push(`short of the rate: ${Math.round(100 * paced.rps / paced.rate)}% of it served (saturated)`)
    const calls = counts === null ? 0 : Object.values(counts).reduce((sum, c) => sum + c.calls, 0)
    const scripts = counts === null ? 0 : Object.entries(counts).filter(([name]) => isScriptCommand(name)).reduce((sum, [, c]) => sum + c.calls, 0)
    return {
      round,
      order,
      config: spec.config,
      mode: spec.mode,
      path: spec.path,
      bindings: spec.bindings,
      startedAt,
      requests: result.requests,
      durationS: result.durationS,
      rps: result.rps,
      p50Ms: result.p50Ms,
      p99Ms: result.p99Ms,
      badStatus: result.badStatus,
      socketErrors: result.socketErrors,
      ...(paced === null ? {} : { paced: { rate: paced.rate, scheduled: paced.scheduled, warmupRequests: paced.warmupRequests, pacerLagP99Ms: paced.pacerLagP99Ms } }),
      gatewayCpuPct: 100 * (after.gateway - before.gateway) / wall,
      gatewayCpuUsPerReq: 1e6 * (after.gateway - before.gateway) / servedInWindow,
      redisCpuUsPerReq: gateway.redis === null ? null : 1e6 * (after.redis - before.redis) / servedInWindow,
      proxiedRequests: proxied,
      redisCommandsPerReq: counts === null ? null : calls / Math.max(1, proxied ?? 0),
      redisScriptsPerReq: counts === null ? null : scripts / Math.max(1, proxied ?? 0),
      redisCommands: counts,
      cores,
      otherCpuPct,
      load1Before: before.load1,
      load1After: after.load1,
      flags
    }
  }

  /**
   * Measures `specs` in this order as one round into `into`, with one immediate re-measure of a window disturbed by
   * something else on the host (never for errors, nor for a window only short of its rate: that is the gateway's own).
   */
  const measureRound = async (specs: readonly ConfigSpec[], round: number, rate: number | null, into: WindowRecord[]): Promise<void> => {
    const budget = rate === null ? budgets.saturation : budgets.rate
    const label = rate === null ? `  round ${round}` : `  fixed-rate round ${round}`
    let order = 0
    for (const spec of specs) {
      let w = await measure(spec, round, order++, rate)
      if (w.flags.some((f) => f.startsWith('steal') || f.startsWith('other CPU')) && !w.flags.some((f) => f.startsWith('errors')) &&
        budget.remeasures < settings.rounds && slackS() > budget.costS + 1) {
        budget.remeasures++
        log(`${label} ${spec.config}: ${w.flags.join(', ')} — re-measuring`)
        into.push(w)
        w = await measure(spec, round, order++, rate)
      }
      into.push(w)
      budget.done++
      const redis = w.redisCommandsPerReq === null ? '' : ` redis ${w.redisCommandsPerReq.toFixed(3)} cmd/req`
      const served = rate === null ? `${w.rps.toFixed(0).padStart(6)} req/s` : `${w.rps.toFixed(0).padStart(6)} of ${rate} req/s`
      const pacer = w.paced === undefined ? '' : `  pacer lag p99 ${w.paced.pacerLagP99Ms.toFixed(1)} ms`
      log(`${label} ${spec.config.padEnd(26)} ${served}  p50 ${w.p50Ms.toFixed(2)} ms  p99 ${w.p99Ms.toFixed(2)} ms  gw cpu ${w.gatewayCpuPct.toFixed(0)}% ${totalCpuUsPerReq(w).toFixed(1)} µs/req${redis}${pacer}${w.flags.length > 0 ? '  FLAGGED: ' + w.flags.join(', ') : ''}`)
    }
    // Windows re-measured are kept in the raw data but only the last one of a config per round counts.
    const seen = new Set<string>()
    for (let i = into.length - 1; i >= 0 && into[i].round === round; i--) {
      const w = into[i]
      if (seen.has(w.config) && w.flags.length === 0) (w.flags as string[]).push('superseded by re-measure')
      seen.add(w.config)
    }
  }

  const rotate = <T>(list: readonly T[], by: number): T[] => list.map((_, i) => list[(i + by) % list.length])
  for (let round = 1; round <= settings.rounds; round++) {
    if (round === 1 || !settings.quick) {
      const [core0Ms, core1Ms] = [await hostSpeed(GATEWAY_CORE), await hostSpeed(LOAD_CORE)]
      hostSpeeds.push({ round, core0Ms, core1Ms })
    }
    const blocks = [rotate(hitSpecs, round - 1), rotate(newSpecs, round - 1)]
    if (round % 2 === 0) blocks.reverse()
    await measureRound(blocks.flat(), round, null, windows)
    const hitRatio = (config: string): string => {
      const s = windows.find((w) => w.round === round && w.config === config && w.flags.length === 0)
      const p = windows.find((w) => w.round === round && w.config === (config.endsWith('/new') ? 'plain/new' : 'plain/hit') && w.flags.length === 0)
      return s === undefined || p === undefined ? '–' : `${(s.rps / p.rps).toFixed(2)} (CPU ${(totalCpuUsPerReq(s) / totalCpuUsPerReq(p)).toFixed(2)})`
    }
    log(`  round ${round} ratios: ` + [...hitSpecs, ...newSpecs].filter((s) => s.baseline !== null).map((s) => `${s.config} ${hitRatio(s.config)}`).join(', '))
  }
  const specs = [...hitSpecs, ...newSpecs]
  const summaries = summarise(specs, windows)
  const by = (config: string): ReturnType<typeof summarise>[number] | undefined => summaries.find((s) => s.config === config)

  // The latency phase: every config at one fixed rate, half of what plain served closed-loop, which is below the
  // sticky hit paths' saturation too (they serve about 0.7× plain closed-loop); same rounds, rotation and pairing.
  const plainRps = by('plain/hit')?.rps?.median ?? null
  const rate = plainRps === null ? null : Math.round(RATE_FRACTION * plainRps)
  if (rate !== null && rateSpecs.length > 1) {
    log(`bench: latency at a fixed rate: ${rate} req/s to each of ${rateSpecs.map((s) => s.config).join(', ')} (${Math.round(100 * RATE_FRACTION)} % of plain's median ` +
      `${Math.round(plainRps as number)} req/s), open loop, ${settings.connections} connections, ${settings.rounds} rounds × ${settings.rateMeasureS} s`)
    for (let round = 1; round <= settings.rounds; round++) {
      await measureRound(rotate(rateSpecs, round - 1), round, rate, rateWindows)
      const plainW = rateWindows.find((w) => w.round === round && w.config === 'plain/hit' && w.flags.length === 0)
      const added = (config: string): string => {
        const w = rateWindows.find((each) => each.round === round && each.config === config && each.flags.length === 0)
        return w === undefined || plainW === undefined ? '–' : `${w.p99Ms - plainW.p99Ms >= 0 ? '+' : ''}${(w.p99Ms - plainW.p99Ms).toFixed(2)} ms`
      }
      log(`  fixed-rate round ${round} p99 added: ` + rateSpecs.filter((s) => s.baseline !== null).map((s) => `${s.config} ${added(s.config)}`).join(', '))
    }
  } else {
    notes.push(`Fixed-rate latency phase not run: ${rate === null ? 'no clean plain hit-path window to take the rate from' : 'no sticky hit-path gateway to compare'}.`)
  }
  const rateSummaries = rate === null || rateWindows.length === 0 ? [] : summarise(rateSpecs, rateWindows)
  const rateBy = (config: string): ReturnType<typeof summarise>[number] | undefined => rateSummaries.find((s) => s.config === config)

  // Figures.
  const redisHit = by('redis/hit')
  const redisNew = by('redis/new')
  const nearHit = by('redis+near-cache/hit')
  const redisLarge = by('redis/hit@large')
  const bytesPerBinding = (memory?.bytesPerBinding as number | null | undefined) ?? null
  const nearPresent = presentModes.some((m) => m.name === 'redis+near-cache')
  // With REDIS_URL the command runs the near cache unless told otherwise: the p99 target's row.
  const p99Mode = nearPresent ? 'redis+near-cache' : 'redis'
  const p99Config = `${p99Mode}/hit`
  const targets: TargetVerdict[] = []
  if (!settings.selfCheck) {
    // Figures that had to include disturbed windows decide nothing: the gateway did not get its core (or, at a fixed
    // rate, could not keep up with it).
    const t = (name: string, target: string, value: string, judged: { verdict: TargetVerdict['verdict'], note: string }, configs: string[] = [],
      pool: readonly ConfigSummary[] = summaries): void => {
      const disturbed = configs.some((c) => pool.find((s) => s.config === c)?.disturbed === true)
      if (disturbed && judged.verdict !== 'not measured') {
        targets.push({ name, target, value, verdict: 'inconclusive', note: `${judged.note} (would be ${judged.verdict}), but too few undisturbed rounds (⚠)` })
      } else {
        targets.push({ name, target, value, verdict: judged.verdict, note: judged.note })
      }
    }
    const est = (ci: Interval | null | undefined, digits: number, unit: string): string => fmt(ci?.estimate, digits) + unit
    // CPU per request first: the primary figure. ≥ 0.97× req/s on a CPU-bound gateway ⇔ ≤ 1/0.97 CPU per request.
    t('hit path CPU µs/request, gateway + Redis (Redis store)', `≤ ${CPU_TARGET_HIT.toFixed(3)}× plain (⇔ ≥ 0.97× req/s)`, est(redisHit?.cpuRatioCi, 2, '×') + ` (${fmt(redisHit?.cpuUsPerReq?.median, 1)} µs)`,
      judgeIntervalAtMost(redisHit?.cpuRatioCi ?? null, Number(CPU_TARGET_HIT.toFixed(3))), ['redis/hit'])
    t('new-session path CPU µs/request, gateway + Redis (Redis store)', `≤ ${CPU_TARGET_NEW.toFixed(3)}× plain (⇔ ≥ 0.75× req/s)`, est(redisNew?.cpuRatioCi, 2, '×') + ` (${fmt(redisNew?.cpuUsPerReq?.median, 1)} µs)`,
      judgeIntervalAtMost(redisNew?.cpuRatioCi ?? null, Number(CPU_TARGET_NEW.toFixed(3))), ['redis/new'])
    t('hit path req/s (Redis store)', '≥ 0.97× plain', est(redisHit?.ratioCi, 2, '×'), judgeIntervalAtLeast(redisHit?.ratioCi ?? null, 0.97), ['redis/hit'])
    // Issue #17 asks for it below saturation: the closed-loop p99 in the table is mostly queueing behind 50
    // connections, so the target is judged on the fixed-rate phase, on the store mode the command runs by default.
    const p99Row = rateBy(p99Config)
    t('hit path added p99 (Redis store), below saturation', rate === null || p99Row === undefined
      ? '≤ 1 ms at a fixed rate below saturation (phase not run)'
      : `≤ 1 ms; judged on the fixed-rate table's ${p99Mode} hit row, at ${rate} req/s (${Math.round(100 * RATE_FRACTION)} % of plain's median), not on the saturated p99 columns`,
    est(p99Row?.p99AddedCi, 2, ' ms') + (p99Row?.p99Ms === undefined || p99Row.p99Ms === null ? '' : ` (median p99 ${fmt(p99Row.p99Ms.median, 2)} ms, plain's ${fmt(rateBy('plain/hit')?.p99Ms?.median, 2)} ms)`),
    judgeIntervalAtMost(p99Row?.p99AddedCi ?? null, 1, 2, ' ms'), [p99Config], rateSummaries)
    t('new-session path req/s (Redis store)', '≥ 0.75× plain', est(redisNew?.ratioCi, 2, '×'), judgeIntervalAtLeast(redisNew?.ratioCi ?? null, 0.75), ['redis/new'])
    // Command counts do not depend on how fast the host is: every error-free window counts, disturbed or not.
    const perWindow = (config: string): ReturnType<typeof spread> => spread(windows.filter((w) => w.config === config && w.redisCommandsPerReq !== null &&
      !w.flags.some((f) => f.startsWith('errors'))).map((w) => w.redisCommandsPerReq as number))
    // Judged at the precision shown (3 decimals): the sliding-TTL touch of the one hot binding adds ~0.0003.
    const atShown = (x: ReturnType<typeof spread>): ReturnType<typeof spread> => x === null ? null : { ...x, median: Math.round(x.median * 1000) / 1000, min: Math.round(x.min * 1000) / 1000, max: Math.round(x.max * 1000) / 1000 }
    const mix = (config: string): string => Object.entries(by(config)?.redisCommandMix ?? {}).sort((a, b) => b[1] - a[1]).map(([c, n]) => `${c} ${n.toFixed(4)}`).join(', ')
    const hitCmds = judgeAtMost(atShown(perWindow('redis/hit')), 1)
    t('Redis commands/request, hit path, no near-cache', '≤ 1 (server-side, Lua inner calls included)', fmt(redisHit?.redisCommandsPerReq, 4), { ...hitCmds, note: `${hitCmds.note}; per request: ${mix('redis/hit')}` })
    // Not every script call is a request's: each gateway re-reads its pool's session counts in the background (the
    // count script runs one ZCARD per upstream), which the request path does not wait for.
    const countCalls = (by('redis/new')?.redisCommandMix?.zcard ?? 0) / UPSTREAM_IDS.length
    // Judged at 2 decimals: the background reads come once a second, so a window's share differs from the run's
    // average by about a thousandth either way.
    const atHundredths = (x: ReturnType<typeof spread>): ReturnType<typeof spread> => x === null ? null : { ...x, median: Math.round(x.median * 100) / 100, min: Math.round(x.min * 100) / 100, max: Math.round(x.max * 100) / 100 }
    const newCmds = judgeAtMost(atHundredths(spread(windows.filter((w) => w.config === 'redis/new' && w.redisScriptsPerReq !== null && !w.flags.some((f) => f.startsWith('errors'))).map((w) => (w.redisScriptsPerReq as number) - countCalls))), 1)
    t('Redis round trips/request, new-session path', '≤ 1 (PERF-ANCHORS: 1 SET NX)',
      `${fmt((redisNew?.redisScriptsPerReq ?? NaN) - countCalls, 4)} on the request path (${fmt(redisNew?.redisScriptsPerReq, 4)} script calls with ${fmt(countCalls, 4)} background session-count reads; ${fmt(redisNew?.redisCommandsPerReq, 2)} commands server-side)`,
      { ...newCmds, note: `${newCmds.note}; per request: ${mix('redis/new')}` })
    if (nearPresent) {
      t('Redis commands/request, hit path, near-cache', '≤ 0.05', fmt(nearHit?.redisCommandsPerReq, 3), judgeAtMost(perWindow('redis+near-cache/hit'), 0.05))
    } else {
      targets.push({ name: 'Redis commands/request, hit path, near-cache', target: '≤ 0.05', value: 'near-cache not present', verdict: 'not measured', note: '' })
    }
    const bytes = bytesPerBinding === null ? null : { median: bytesPerBinding, min: bytesPerBinding, max: bytesPerBinding, n: 1 }
    const large = memory?.bytesPerBindingAtEnd as number | undefined
    t(`Redis memory per binding (at ${formatCount(Number(memory?.bindingsAtSample ?? 0))})`, '≤ 200 B', fmt(bytesPerBinding, 0) + ' B',
      { verdict: judgeAtMost(bytes, 200, ' B').verdict, note: `one used_memory difference; ${fmt(large, 0)} B at ${formatCount(Number(memory?.bindingsAtEnd ?? 0))}` })
    t(`hit path with ${redisLarge?.bindings ?? scaleLabel} vs ${formatCount(SMALL_BINDINGS)} bindings (Redis store)`, 'within 5% (≥ 0.95×)', est(redisLarge?.scaleRatioCi, 3, '×'), judgeIntervalAtLeast(redisLarge?.scaleRatioCi ?? null, 0.95), ['redis/hit@large'])
  }
  const flagged = windows.filter((w) => w.flags.length > 0 && !w.flags.includes('superseded by re-measure'))
  if (flagged.length > 0) {
    const reasons = new Map<string, number>()
    for (const w of flagged) for (const f of w.flags) reasons.set(f.replace(/\d+%/, 'N%'), (reasons.get(f.replace(/\d+%/, 'N%')) ?? 0) + 1)
    notes.push(`${flagged.length} of ${windows.length} windows flagged (${[...reasons].map(([r, n]) => `${n}× ${r}`).join(', ')}); flagged windows are left out of the figures, ` +
      'except in rows marked ⚠ disturbed, which had too few clean rounds (under half) and so use every error-free window. Per-window flags are in latest.json.')
  }
  const rateFlagged = rateWindows.filter((w) => w.flags.length > 0 && !w.flags.includes('superseded by re-measure'))
  if (rateFlagged.length > 0) {
    const reasons = new Map<string, number>()
    for (const w of rateFlagged) for (const f of w.flags) reasons.set(f.replace(/\d+%/, 'N%'), (reasons.get(f.replace(/\d+%/, 'N%')) ?? 0) + 1)
    notes.push(`Fixed-rate phase: ${rateFlagged.length} of ${rateWindows.length} windows flagged (${[...reasons].map(([r, n]) => `${n}× ${r}`).join(', ')}) and left out the same way; ` +
      `a window that served under ${Math.round(100 * RATE_HELD)} % of the rate was saturated, so its p99 is not one below saturation.`)
  }
  notes.push('Redis commands/request are counted server-side from INFO commandstats: a script call (EVALSHA) also counts the GET/SET/ZADD… it runs; "scripts" counts the EVALSHA calls alone.')
  notes.push(`Each gateway is one long-lived process, reused across rounds (one per mode and path, so the hit-path stores hold a fixed ${formatCount(SMALL_BINDINGS)} bindings while the new-session stores grow); only one is under load at a time.`)
  if (quietWaitedS >= 1) notes.push(`Waited ${quietWaitedS.toFixed(0)} s in all for other processes on the host to quiet down before windows (other CPU > 15% of a core).`)
  const hs = spread(hostSpeeds.map((h) => h.core0Ms))
  if (hs !== null) notes.push(`Host-speed probe on core ${GATEWAY_CORE} (fixed loop, lower is faster): ${fmt(hs.median, 0)} ms median, ${fmt(hs.min, 0)}–${fmt(hs.max, 0)} ms over the rounds.`)
  for (const mode of modes.filter((m) => !presentModes.includes(m))) notes.push(`mode ${mode.name}: not present in the gateway command (not measured)`)

  const coreNames = (core: number): string[] => runningProcesses().filter((p) => p.core === core).map((p) => p.name)
  const placement: Record<string, string[]> = HAS_TASKSET
    ? {
        [`core ${GATEWAY_CORE}`]: [...new Set([...coreNames(GATEWAY_CORE).map((n) => `gateway ${n}`), 'seeding client', 'host-speed probe'])],
        [`core ${LOAD_CORE}`]: [...new Set([`${machine.loadGenerator} (-c${settings.connections})`, `bench/paced-load.ts (fixed-rate phase, ${settings.connections} connections)`, 'upstreams (3 http servers, 1 process)', ...coreNames(LOAD_CORE).filter((n) => n.startsWith('redis')), 'bench orchestrator', 'host-speed probe'])]
      }
    : { unpinned: runningProcesses().map((p) => p.name) }
  const report: BenchReport = {
    schema: 1,
    date: new Date().toISOString(),
    durationS: Math.round((Date.now() - started) / 1000),
    quick: settings.quick,
    selfCheck: settings.selfCheck,
    machine,
    placement,
    settings: {
      rounds: settings.rounds,
      warmupS: settings.warmupS,
      laterWarmupS: settings.laterWarmupS,
      measureS: settings.measureS,
      connections: settings.connections,
      loadGenerator: settings.loadgen,
      scale: settings.scale,
      smallBindings: SMALL_BINDINGS,
      gatewayRunner: ['node', ...runner.nodeArgs, runner.gateway].join(' '),
      plainRunner: ['node', ...runner.nodeArgs, runner.plain].join(' ')
    },
    modes: modes.map((m) => ({ name: m.name, present: presentModes.includes(m), note: presentModes.includes(m) ? '' : 'not present in the gateway command' })),
    peers,
    ratio_hit: redisHit?.ratio?.median ?? null,
    ratio_new: redisNew?.ratio?.median ?? null,
    ratio_hit_ci: redisHit?.ratioCi ?? null,
    ratio_new_ci: redisNew?.ratioCi ?? null,
    cpu_ratio_hit_ci: redisHit?.cpuRatioCi ?? null,
    cpu_ratio_new_ci: redisNew?.cpuRatioCi ?? null,
    p99_added_hit_ms: redisHit?.p99AddedMs?.median ?? null,
    p99_added_new_ms: redisNew?.p99AddedMs?.median ?? null,
    p99_added_hit_ms_at_rate: rateBy(p99Config)?.p99AddedCi?.estimate ?? null,
    p99_added_hit_ci_at_rate: rateBy(p99Config)?.p99AddedCi ?? null,
    redis_commands_per_request_hit: redisHit?.redisCommandsPerReq ?? null,
    redis_commands_per_request_new: redisNew?.redisCommandsPerReq ?? null,
    redis_commands_per_request_hit_near_cache: nearHit?.redisCommandsPerReq ?? null,
    redis_bytes_per_binding: bytesPerBinding,
    redis_bytes_per_binding_at_large: (memory?.bytesPerBindingAtEnd as number | undefined) ?? null,
    scale_bindings_large: (memory?.bindingsAtEnd as number | undefined) ?? null,
    ratio_large_vs_small_hit: redisLarge?.scaleRatio?.median ?? null,
    summaries,
    fixed_rate: rate === null || rateWindows.length === 0
      ? null
      : {
          rate,
          fraction: RATE_FRACTION,
          plainRps: plainRps as number,
          heldShare: RATE_HELD,
          measureS: settings.rateMeasureS,
          settleS: settings.rateSettleS,
          connections: settings.connections,
          loadGenerator: 'bench/paced-load.ts (keep-alive sockets, requests released on a 1 ms timer)',
          judgedConfig: p99Config,
          summaries: rateSummaries,
          windows: rateWindows
        },
    targets,
    memory,
    sanity,
    hostSpeed: hostSpeeds,
    windows,
    notes,
    profile: null
  }
  const written = writeReport(report, join(ROOT, 'bench', 'results'), settings.readme && !settings.quick && !settings.selfCheck ? join(ROOT, 'docs', 'benchmark.md') : null)
  log('')
  log(readFileSync(join(ROOT, 'bench', 'results', 'latest.md'), 'utf8'))
  log(`bench: wrote ${written.map((p) => p.slice(ROOT.length + 1)).join(', ')} in ${report.durationS} s total`)
}

/** The request paths a `--cpu-prof` run profiles, in the order profile.md lists them. */
const PROFILED_PATHS = ['hit', 'new'] as const
type ProfiledPath = typeof PROFILED_PATHS[number]

const PATH_LABEL: Readonly<Record<ProfiledPath, string>> = { hit: 'hit path', new: 'new-session path' }

/** One gateway profiled on one path: self time, plus throughput and CPU per request under the profiler. */
interface GatewayProfile extends ProfileSummary {
  readonly mode: string
  readonly path: ProfiledPath
  readonly rps: number
  /** Requests completed in the measured window. */
  readonly requests: number
  /** Sampled busy time ÷ requests completed in the measured window, µs. */
  readonly cpuUsPerReq: number
  /** CPU of the gateway's Redis server over the measured window ÷ requests, µs; null without Redis. */
  readonly redisCpuUsPerReq: number | null
  /** Error answers and socket errors in the measured window. */
  readonly errors: number
}

/** Profiles of each gateway on each path, keyed `mode/path`, hit path first. */
interface Profiles {
  readonly note: string
  /** What each path's load sends. */
  readonly paths: Readonly<Record<ProfiledPath, string>>
  readonly byConfig: Record<string, GatewayProfile>
}

/** A gateway to profile on one path. */
interface ProfileTarget {
  readonly mode: string
  readonly path: ProfiledPath
  readonly script: string
  readonly env: Record<string, string>
  /** Whether the gateway uses Redis: the hit path's Redis is the measured hit gateway's, a new-session one gets its own. */
  readonly redis: boolean
}

/**
 * CPU-profiles the plain gateway and each sticky mode, first on the hit path, then on the new-session path, under
 * the same load, and summarises the profiles by self time (fresh processes with --cpu-prof; the profile is written
 * when they exit).
 */
async function profilePaths (
  settings: Settings,
  runner: GatewayRunner,
  startGateway: (name: string, script: string, env: Record<string, string>, redis: BenchRedis | null, extra?: string[]) => Promise<Gateway>,
  gatewayOf: Map<string, Gateway>,
  modes: readonly ModeSpec[],
  specs: readonly ConfigSpec[]
): Promise<Profiles> {
  const byConfig: Record<string, GatewayProfile> = {}
  for (const path of PROFILED_PATHS) {
    const targets: ProfileTarget[] = [{ mode: 'plain', path, script: runner.plain, env: {}, redis: false }]
    for (const mode of modes) {
      if (!specs.some((s) => s.config === `${mode.name}/${path}`)) continue
      targets.push({ mode: mode.name, path, script: runner.gateway, env: { ...mode.env }, redis: mode.redis })
    }
    for (const target of targets) byConfig[`${target.mode}/${path}`] = await profileGateway(settings, target, startGateway, gatewayOf)
  }
  return {
    note: 'self time under --cpu-prof, one fresh gateway process each, 2 s warm-up, then only the samples of the measured window; ' +
      'CPU µs per request = sampled busy time ÷ requests completed in that window (the gateway\'s main thread, profiler overhead included); .cpuprofile files in bench/results/tmp/',
    paths: {
      hit: 'a fixed routing cookie on every request (bound by a first request to the same gateway; with Redis, in the Redis of the measured hit gateway)',
      new: 'no cookie, so every request creates a binding and gets a Set-Cookie; with Redis, each gateway has a fresh Redis of its own'
    },
    byConfig
  }
}

/** Profiles one gateway on one path: a fresh process (and, for new sessions with Redis, a fresh Redis), stopped after. */
async function profileGateway (
  settings: Settings,
  target: ProfileTarget,
  startGateway: (name: string, script: string, env: Record<string, string>, redis: BenchRedis | null, extra?: string[]) => Promise<Gateway>,
  gatewayOf: Map<string, Gateway>
): Promise<GatewayProfile> {
  const dir = join(ROOT, 'bench', 'results', 'tmp')
  const label = `${target.mode} ${PATH_LABEL[target.path]}`
  // New sessions grow the store: a Redis shared with another gateway would mix their keys and load.
  const ownRedis = target.redis && target.path === 'new' ? await startRedis(`redis-server for profile-${target.mode}/new`, LOAD_CORE) : null
  const redis = !target.redis ? null : ownRedis ?? gatewayOf.get(`${target.mode}/hit`)?.redis ?? null
  const file = `${target.path}-${target.mode.replace(/[^a-z0-9]+/g, '-')}-${process.pid}.cpuprofile`
  try {
    const gateway = await startGateway(`profile-${target.mode}-${target.path}`, target.script, target.env, redis,
      ['--cpu-prof', `--cpu-prof-dir=${dir}`, `--cpu-prof-name=${file}`])
    let result: LoadResult
    let redisCpuS: number | null = null
    let windowStart = 0
    let windowEnd = 0
    try {
      const headers: Record<string, string> = {}
      if (target.path === 'hit') {
        headers.cookie = target.mode === 'plain' ? (gatewayOf.get('plain/hit')?.hitCookie as string) : (await checkHitPath(gateway.url, COOKIE_NAME)).cookie
      } else if (target.mode !== 'plain') {
        await checkNewPath(gateway.url, COOKIE_NAME)
        const keys = redis === null ? null : await redis.client.dbsize()
        if (keys !== null && keys < 2) throw new SanityError(`${gateway.name}: its Redis holds ${keys} keys after probing; is REDIS_URL honoured?`)
      }
      const load = (seconds: number): Promise<LoadResult> => runLoad(settings.loadgen, { url: gateway.url + '/bench', seconds, connections: settings.connections, headers, core: LOAD_CORE })
      await load(2)
      const redisCpu = (): number => redis === null ? 0 : processCpuSeconds(redis.proc.pid) ?? 0
      const redisBefore = redisCpu()
      windowStart = Date.now()
      result = await load(settings.quick ? 2 : 5)
      windowEnd = Date.now()
      if (redis !== null) redisCpuS = redisCpu() - redisBefore
    } finally {
      await stopProcess(gateway.proc, 10_000)
    }
    // The profile ends when the process exits: keep only the samples of the measured window.
    const exitedAt = Date.now()
    await sleep(200)
    const summary = summariseProfile(join(dir, file), 15, { fromEndUs: (exitedAt - windowStart) * 1000, toEndUs: (exitedAt - windowEnd) * 1000 })
    const requests = Math.max(1, result.requests)
    const profile: GatewayProfile = {
      ...summary,
      mode: target.mode,
      path: target.path,
      rps: result.rps,
      requests: result.requests,
      cpuUsPerReq: 1000 * summary.busyMs / requests,
      redisCpuUsPerReq: redisCpuS === null ? null : 1e6 * redisCpuS / requests,
      errors: result.badStatus + result.socketErrors
    }
    log(`bench: profiled ${label}: ${result.rps.toFixed(0)} req/s, ${profile.cpuUsPerReq.toFixed(1)} µs CPU per request under --cpu-prof` +
      (profile.errors > 0 ? ` (${profile.errors} errors)` : ''))
    return profile
  } finally {
    if (ownRedis !== null) {
      ownRedis.client.disconnect()
      await stopProcess(ownRedis.proc)
    }
  }
}

function renderProfile (profile: Profiles, machine: Record<string, string | number>): string {
  const lines = [`# CPU profiles, hit and new-session paths (${new Date().toISOString()}, ${machine.cpuModel} × ${machine.nproc})`, '', profile.note, '']
  for (const path of PROFILED_PATHS) lines.push(`- ${PATH_LABEL[path]}: ${profile.paths[path]}`)
  lines.push('')
  for (const p of Object.values(profile.byConfig)) {
    lines.push(`## ${p.mode}, ${PATH_LABEL[p.path]}: ${p.rps.toFixed(0)} req/s under the profiler; ${p.busyMs} ms busy, ${p.idleMs} ms idle sampled`, '')
    lines.push(`CPU µs per request under the profiler: ${p.cpuUsPerReq.toFixed(1)} (${p.busyMs} ms busy ÷ ${p.requests} requests in the measured window)` +
      (p.redisCpuUsPerReq === null ? '' : `; its Redis server: ${p.redisCpuUsPerReq.toFixed(1)} µs per request`) +
      (p.errors > 0 ? `; ${p.errors} errors in the window` : ''), '')
    lines.push('| self % | self ms | function |', '|---:|---:|---|')
    for (const f of p.topFunctions) lines.push(`| ${f.pct.toFixed(1)} | ${f.ms.toFixed(0)} | \`${f.name}\` |`)
    lines.push('', '| self % | origin |', '|---:|---|')
    for (const o of p.byOrigin.slice(0, 12)) lines.push(`| ${o.pct.toFixed(1)} | ${o.name} |`)
    lines.push('')
  }
  return lines.join('\n')
}

const shutdown = stopProcessesOnExit('bench', log)

main().then(() => shutdown(0), (error: unknown) => {
  process.stderr.write(`\n${error instanceof SanityError ? 'bench: SANITY CHECK FAILED: ' : ''}${(error as Error).stack ?? String(error)}\n`)
  void shutdown(1)
})
