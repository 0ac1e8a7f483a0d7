/**
 * Turns the measured windows into figures (paired per-round ratios with 95% t-intervals over their logs, medians,
 * targets judged on the intervals) and writes
 * bench/results/latest.json, latest.md and latest.svg, and the block of docs/benchmark.md between
 * `<!-- bench:begin -->` and `<!-- bench:end -->`.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { LoadResult } from './load'
import type { CommandStat } from './redis'

/** One measured load window: what the load generator saw, and what was measured around it. */
export interface WindowRecord extends LoadResult {
  readonly round: number
  /** Position in the round (0 = first measured). */
  readonly order: number
  readonly config: string
  readonly mode: string
  readonly path: 'hit' | 'new'
  /** Live bindings in the gateway's store when the window started (hit path), as labelled. */
  readonly bindings: string
  readonly startedAt: string
  /** CPU of the gateway process over the window, % of one core. */
  readonly gatewayCpuPct: number
  readonly gatewayCpuUsPerReq: number
  /** Requests the upstreams served from the Redis counter reset to its read (in-flight ones included); null without Redis. */
  readonly proxiedRequests: number | null
  /** CPU of the gateway's Redis over the window (µs per request); null without Redis. */
  readonly redisCpuUsPerReq: number | null
  /** Server-side command calls per request (inner Lua calls included); null without Redis. */
  readonly redisCommandsPerReq: number | null
  /** Script invocations (EVAL/EVALSHA/FCALL) per request; null without Redis. */
  readonly redisScriptsPerReq: number | null
  readonly redisCommands: Record<string, CommandStat> | null
  /** Per core: busy (processes), irq+softirq and steal, % of the window. */
  readonly cores: ReadonlyArray<{ readonly busyPct: number, readonly irqPct: number, readonly stealPct: number }>
  /** CPU used by processes the benchmark did not start, % of one core (busy − ours, never negative). */
  readonly otherCpuPct: number
  readonly load1Before: number
  readonly load1After: number
  /** Why the window is excluded from the figures (errors, steal, other CPU, short of its fixed rate); empty when kept. */
  readonly flags: string[]
  /** What the pacer of a fixed-rate window reports (absent in closed-loop windows); `rps` is then the rate achieved. */
  readonly paced?: {
    /** The rate asked for, requests per second. */
    readonly rate: number
    readonly scheduled: number
    /** Requests before the measured part (priming, settling): their CPU is in the window's CPU figures. */
    readonly warmupRequests: number
    readonly pacerLagP99Ms: number
  }
}

/** A configuration under test, as laid out in the rounds. */
export interface ConfigSpec {
  readonly config: string
  readonly mode: string
  readonly path: 'hit' | 'new'
  readonly bindings: string
  /** The config this one is paired with for its main ratio (the plain baseline of its block), or null. */
  readonly baseline: string | null
  /** A peer row (another proxy, not fastify-sticky's own gateway): shown for comparison, judged against no target. */
  readonly peer?: boolean
  /** For a large-store config: the same mode's small-store config it is compared with. */
  readonly scaleOf?: string
}

/** Median, min and max of a list. */
export interface Spread {
  readonly median: number
  readonly min: number
  readonly max: number
  readonly n: number
}

/** @returns the spread of `values`, or null when empty */
export function spread (values: readonly number[]): Spread | null {
  const finite = values.filter((v) => Number.isFinite(v))
  if (finite.length === 0) return null
  const sorted = [...finite].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  const median = sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
  return { median, min: sorted[0], max: sorted[sorted.length - 1], n: sorted.length }
}

/**
 * A confidence interval of a paired figure over rounds. For ratios: a t-interval over the per-round log-ratios,
 * back-transformed (estimate = geometric mean of the ratios); for differences: a t-interval over the differences.
 * With fewer than 2 rounds `low` and `high` are NaN (nothing is resolved).
 */
export interface Interval {
  readonly estimate: number
  readonly low: number
  readonly high: number
  readonly n: number
  /** Confidence level, e.g. 0.95. */
  readonly level: number
}

/** Two-sided 95% Student t quantiles (0.975) for 1..30 degrees of freedom. */
const T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16, 2.145, 2.131,
  2.12, 2.11, 2.101, 2.093, 2.086, 2.08, 2.074, 2.069, 2.064, 2.06, 2.056, 2.052, 2.048, 2.045, 2.042]

/** @returns the 0.975 quantile of Student's t with `df` degrees of freedom (Cornish-Fisher beyond 30) */
export function tQuantile975 (df: number): number {
  if (df < 1) return NaN
  return df <= 30 ? T975[df - 1] : 1.96 + 2.37 / df
}

/**
 * A 95% t-interval of paired per-round values.
 * @param log - true for ratios (interval of the mean log-ratio, back-transformed), false for differences
 * @returns null when there is no value
 */
export function pairedInterval (values: readonly number[], log: boolean): Interval | null {
  const xs = values.filter((v) => Number.isFinite(v) && (!log || v > 0)).map((v) => log ? Math.log(v) : v)
  const n = xs.length
  if (n === 0) return null
  const mean = xs.reduce((a, b) => a + b, 0) / n
  const back = (x: number): number => log ? Math.exp(x) : x
  if (n < 2) return { estimate: back(mean), low: NaN, high: NaN, n, level: 0.95 }
  const sd = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1))
  const half = tQuantile975(n - 1) * sd / Math.sqrt(n)
  return { estimate: back(mean), low: back(mean - half), high: back(mean + half), n, level: 0.95 }
}

/** Figures of one configuration over all kept windows. */
export interface ConfigSummary {
  readonly config: string
  readonly mode: string
  readonly path: 'hit' | 'new'
  readonly bindings: string
  readonly peer: boolean
  readonly rps: Spread | null
  readonly p50Ms: Spread | null
  readonly p99Ms: Spread | null
  readonly gatewayCpuPct: Spread | null
  readonly gatewayCpuUsPerReq: Spread | null
  /** sticky ÷ plain req/s, paired per round. */
  readonly ratio: Spread | null
  /** The same, 95% t-interval over the per-round log-ratios. */
  readonly ratioCi: Interval | null
  /** Gateway + Redis CPU µs per request (the primary figure; Redis counts 0 without Redis). */
  readonly cpuUsPerReq: Spread | null
  /** (gateway + Redis CPU µs/req) ÷ plain gateway CPU µs/req, paired per round. */
  readonly cpuRatio: Spread | null
  readonly cpuRatioCi: Interval | null
  /** Gateway CPU µs/req alone ÷ plain gateway CPU µs/req, paired per round. */
  readonly gatewayCpuRatioCi: Interval | null
  /** sticky p99 − plain p99, paired per round, ms. */
  readonly p99AddedMs: Spread | null
  readonly p99AddedCi: Interval | null
  /** large store ÷ small store, paired per round (large-store configs only). */
  readonly scaleRatio: Spread | null
  readonly scaleRatioCi: Interval | null
  readonly redisCommandsPerReq: number | null
  readonly redisScriptsPerReq: number | null
  readonly redisCpuUsPerReq: Spread | null
  /** Server-side calls per request of each command, over all kept windows. */
  readonly redisCommandMix: Record<string, number> | null
  readonly windows: number
  readonly flaggedWindows: number
  /** Too few undisturbed rounds: the figures include windows flagged for host disturbance (never errors). */
  readonly disturbed: boolean
}

/**
 * Summarises every configuration: spreads over kept windows, and ratios taken per round against the
 * baseline measured in the same round (a round where either side is flagged gives no ratio).
 */
export function summarise (specs: readonly ConfigSpec[], windows: readonly WindowRecord[]): ConfigSummary[] {
  const kept = windows.filter((w) => w.flags.length === 0)
  // Disturbed (but error-free, not superseded) windows: used only when a config has too few clean rounds.
  const usable = windows.filter((w) => !w.flags.some((f) => f.startsWith('errors') || f.startsWith('superseded')))
  const rounds = new Set(windows.map((w) => w.round)).size
  const minPairs = Math.max(2, Math.ceil(rounds / 2))
  const pairs = (pool: readonly WindowRecord[], config: string, other: string): Array<[WindowRecord, WindowRecord]> => {
    const mine = pool.filter((w) => w.config === config)
    const theirs = new Map(pool.filter((w) => w.config === other).map((w) => [w.round, w]))
    return mine.flatMap((w) => { const o = theirs.get(w.round); return o === undefined ? [] : [[w, o] as [WindowRecord, WindowRecord]] })
  }
  return specs.map((spec) => {
    const cleanEnough = (spec.baseline === null || pairs(kept, spec.config, spec.baseline).length >= minPairs) &&
      (spec.scaleOf === undefined || pairs(kept, spec.config, spec.scaleOf).length >= minPairs) &&
      kept.filter((w) => w.config === spec.config).length >= minPairs
    const pool = cleanEnough ? kept : usable
    const mine = pool.filter((w) => w.config === spec.config)
    const ratioPairs = spec.baseline === null ? [] : pairs(pool, spec.config, spec.baseline)
    const ratios = ratioPairs.map(([w, b]) => w.rps / b.rps)
    const cpuRatios = ratioPairs.map(([w, b]) => totalCpuUsPerReq(w) / totalCpuUsPerReq(b))
    const gatewayCpuRatios = ratioPairs.map(([w, b]) => w.gatewayCpuUsPerReq / b.gatewayCpuUsPerReq)
    const added = ratioPairs.map(([w, b]) => w.p99Ms - b.p99Ms)
    const scale = spec.scaleOf === undefined ? [] : pairs(pool, spec.config, spec.scaleOf).map(([w, small]) => w.rps / small.rps)
    let mix: Record<string, number> | null = null
    let perReq: number | null = null
    let scriptsPerReq: number | null = null
    // Command counts do not depend on host speed: every error-free window of the config counts.
    const withRedis = usable.filter((w) => w.config === spec.config && w.redisCommands !== null)
    if (withRedis.length > 0) {
      const requests = withRedis.reduce((sum, w) => sum + (w.proxiedRequests ?? w.requests), 0)
      const calls: Record<string, number> = {}
      for (const w of withRedis) {
        for (const [name, stat] of Object.entries(w.redisCommands ?? {})) calls[name] = (calls[name] ?? 0) + stat.calls
      }
      mix = {}
      for (const [name, count] of Object.entries(calls)) mix[name] = count / requests
      perReq = Object.values(calls).reduce((a, b) => a + b, 0) / requests
      scriptsPerReq = Object.entries(calls).filter(([name]) => isScriptCommand(name)).reduce((sum, [, c]) => sum + c, 0) / requests
    }
    return {
      config: spec.config,
      mode: spec.mode,
      path: spec.path,
      bindings: spec.bindings,
      peer: spec.peer === true,
      rps: spread(mine.map((w) => w.rps)),
      p50Ms: spread(mine.map((w) => w.p50Ms)),
      p99Ms: spread(mine.map((w) => w.p99Ms)),
      gatewayCpuPct: spread(mine.map((w) => w.gatewayCpuPct)),
      gatewayCpuUsPerReq: spread(mine.map((w) => w.gatewayCpuUsPerReq)),
      ratio: spread(ratios),
      ratioCi: pairedInterval(ratios, true),
      cpuUsPerReq: spread(mine.map(totalCpuUsPerReq)),
      cpuRatio: spread(cpuRatios),
      cpuRatioCi: pairedInterval(cpuRatios, true),
      gatewayCpuRatioCi: pairedInterval(gatewayCpuRatios, true),
      p99AddedMs: spread(added),
      p99AddedCi: pairedInterval(added, false),
      scaleRatio: spread(scale),
      scaleRatioCi: pairedInterval(scale, true),
      redisCommandsPerReq: perReq,
      redisScriptsPerReq: scriptsPerReq,
      redisCpuUsPerReq: spread(mine.flatMap((w) => w.redisCpuUsPerReq === null ? [] : [w.redisCpuUsPerReq])),
      redisCommandMix: mix,
      windows: windows.filter((w) => w.config === spec.config && !w.flags.some((f) => f.startsWith('superseded'))).length,
      flaggedWindows: windows.filter((w) => w.config === spec.config && w.flags.length > 0 && !w.flags.some((f) => f.startsWith('superseded'))).length,
      disturbed: !cleanEnough
    }
  })
}

/** @returns CPU µs per request of the gateway process plus its Redis server (none: 0) in one window */
export function totalCpuUsPerReq (w: WindowRecord): number {
  return w.gatewayCpuUsPerReq + (w.redisCpuUsPerReq ?? 0)
}

/** @returns `true` for commands that run a script (their inner calls are counted separately by Redis) */
export function isScriptCommand (name: string): boolean {
  return /^(eval|evalsha|eval_ro|evalsha_ro|fcall|fcall_ro)$/.test(name)
}

/** One target of issue #4, with its verdict. */
export interface TargetVerdict {
  readonly name: string
  readonly target: string
  readonly value: string
  /**
   * `met` / `missed` only when the whole 95% interval (or, for counts, every round) is on one side of the target;
   * `not resolved` when it straddles it; `not measured`; `inconclusive` (too few undisturbed rounds to decide).
   */
  readonly verdict: 'met' | 'missed' | 'not resolved' | 'not measured' | 'inconclusive'
  /** The interval or spread the verdict was read from. */
  readonly note: string
}

/** @returns `[low, high]` of an interval at `digits` decimals */
export function fmtInterval (ci: Interval | null, digits: number): string {
  if (ci === null) return '–'
  return Number.isFinite(ci.low) ? `[${fmt(ci.low, digits)}, ${fmt(ci.high, digits)}]` : '[1 round: no interval]'
}

/** Where a 95% interval lies relative to a lower bound: met / missed only when it is wholly on one side. */
export function judgeIntervalAtLeast (ci: Interval | null, bound: number, digits = 2, unit = ''): { verdict: TargetVerdict['verdict'], note: string } {
  if (ci === null) return { verdict: 'not measured', note: '' }
  const where = `95% CI ${fmtInterval(ci, digits)}${unit} over ${ci.n} paired rounds`
  if (ci.low >= bound) return { verdict: 'met', note: `${where}, wholly ≥ ${bound}${unit}` }
  if (ci.high < bound) return { verdict: 'missed', note: `${where}, wholly < ${bound}${unit}` }
  return { verdict: 'not resolved', note: `${where}, straddles ${bound}${unit}` }
}

/** Where a 95% interval lies relative to an upper bound: met / missed only when it is wholly on one side. */
export function judgeIntervalAtMost (ci: Interval | null, bound: number, digits = 2, unit = ''): { verdict: TargetVerdict['verdict'], note: string } {
  if (ci === null) return { verdict: 'not measured', note: '' }
  const where = `95% CI ${fmtInterval(ci, digits)}${unit} over ${ci.n} paired rounds`
  if (ci.high <= bound) return { verdict: 'met', note: `${where}, wholly ≤ ${bound}${unit}` }
  if (ci.low > bound) return { verdict: 'missed', note: `${where}, wholly > ${bound}${unit}` }
  return { verdict: 'not resolved', note: `${where}, straddles ${bound}${unit}` }
}

/** Where a paired spread lies relative to a lower bound. */
export function judgeAtLeast (s: Spread | null, bound: number): { verdict: TargetVerdict['verdict'], note: string } {
  if (s === null) return { verdict: 'not measured', note: '' }
  const verdict = s.min >= bound ? 'met' : s.max < bound ? 'missed' : 'not resolved'
  const note = s.min >= bound ? `every round ≥ ${bound}` : s.max < bound ? `every round < ${bound}` : `rounds on both sides of ${bound} (${fmt(s.min, 2)}–${fmt(s.max, 2)}): not resolved by this run`
  return { verdict, note }
}

/** Where a paired spread lies relative to an upper bound. */
export function judgeAtMost (s: Spread | null, bound: number, unit = ''): { verdict: TargetVerdict['verdict'], note: string } {
  if (s === null) return { verdict: 'not measured', note: '' }
  const verdict = s.max <= bound ? 'met' : s.min > bound ? 'missed' : 'not resolved'
  const note = s.max <= bound ? `every round ≤ ${bound}${unit}` : s.min > bound ? `every round > ${bound}${unit}` : `rounds on both sides of ${bound}${unit} (${fmt(s.min, 2)}–${fmt(s.max, 2)}): not resolved by this run`
  return { verdict, note }
}

/** @returns `x` with `digits` decimals, or `–` */
export function fmt (x: number | null | undefined, digits = 0): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '–'
  return x.toFixed(digits)
}

function fmtSpread (s: Spread | null, digits: number): string {
  if (s === null) return '–'
  return `${fmt(s.median, digits)} (${fmt(s.min, digits)}–${fmt(s.max, digits)})`
}

/**
 * The latency phase (issue #17: added p99 below saturation): plain and each sticky hit-path gateway at one fixed
 * rate, a share of plain's closed-loop req/s, in interleaved rounds paired like the closed-loop ones.
 */
export interface FixedRateReport {
  /** Requests per second asked of every config: `fraction` × `plainRps`, rounded. */
  readonly rate: number
  readonly fraction: number
  /** Plain's median hit-path req/s in the closed-loop rounds. */
  readonly plainRps: number
  /** A window that served less than this share of `rate` was saturated, and is flagged. */
  readonly heldShare: number
  readonly measureS: number
  /** Seconds paced before each measured window, not recorded. */
  readonly settleS: number
  readonly connections: number
  /** How the load was made: always the open-loop pacer, whichever generator ran the closed-loop rounds. */
  readonly loadGenerator: string
  /** The row the added-p99 target is judged on. */
  readonly judgedConfig: string
  /** Per config; `p99AddedCi` is config p99 − plain p99, paired per round (the other ratios are at a fixed rate too). */
  readonly summaries: ConfigSummary[]
  readonly windows: readonly WindowRecord[]
}

/** Everything the JSON report holds; the MD and SVG are drawn from it. */
export interface BenchReport {
  readonly schema: 1
  readonly date: string
  readonly durationS: number
  readonly quick: boolean
  readonly selfCheck: boolean
  readonly machine: Record<string, string | number>
  readonly placement: Record<string, string[]>
  readonly settings: Record<string, string | number | boolean>
  readonly modes: ReadonlyArray<{ readonly name: string, readonly present: boolean, readonly note: string }>
  /** Peer proxies (other than fastify-sticky) and whether they were measured. */
  readonly peers: ReadonlyArray<{ readonly name: string, readonly present: boolean, readonly note: string }>
  /** Redis mode, hit path: sticky ÷ plain req/s, median of per-round ratios. */
  readonly ratio_hit: number | null
  /** Redis mode, new-session path. */
  readonly ratio_new: number | null
  /** The same two as geometric means of the per-round ratios with their 95% intervals. */
  readonly ratio_hit_ci: Interval | null
  readonly ratio_new_ci: Interval | null
  /** Redis mode: (gateway + Redis CPU µs/request) ÷ plain's, paired, 95% interval. */
  readonly cpu_ratio_hit_ci: Interval | null
  readonly cpu_ratio_new_ci: Interval | null
  /** Redis mode (near cache off), p99 − plain's in the closed-loop rounds, i.e. at saturation; median of rounds, ms. */
  readonly p99_added_hit_ms: number | null
  readonly p99_added_new_ms: number | null
  /** p99 − plain's at the fixed rate on the row the target is judged on (`fixed_rate.judgedConfig`), mean of rounds, ms. */
  readonly p99_added_hit_ms_at_rate: number | null
  readonly p99_added_hit_ci_at_rate: Interval | null
  readonly redis_commands_per_request_hit: number | null
  readonly redis_commands_per_request_new: number | null
  readonly redis_commands_per_request_hit_near_cache: number | null
  readonly redis_bytes_per_binding: number | null
  readonly redis_bytes_per_binding_at_large: number | null
  readonly scale_bindings_large: number | null
  readonly ratio_large_vs_small_hit: number | null
  readonly summaries: ConfigSummary[]
  /** The latency phase at a fixed rate; null when it did not run. */
  readonly fixed_rate: FixedRateReport | null
  readonly targets: TargetVerdict[]
  readonly memory: Record<string, unknown> | null
  readonly sanity: Record<string, unknown>
  readonly hostSpeed: ReadonlyArray<{ readonly round: number, readonly core0Ms: number, readonly core1Ms: number }>
  readonly windows: readonly WindowRecord[]
  readonly notes: string[]
  readonly profile: Record<string, unknown> | null
}

/** @returns the Markdown report (also used for the README block) */
export function renderMarkdown (report: BenchReport): string {
  const lines: string[] = []
  const m = report.machine
  lines.push(`Measured ${report.date} on ${m.cpuModel} × ${m.nproc} cores (${m.kernel}), Node ${m.node}, Redis ${m.redis}; ` +
    `load generator ${m.loadGenerator}${report.quick ? '; **--quick run: short windows, indicative only**' : ''}${report.selfCheck ? '; **--self-check: plain vs plain**' : ''}.`)
  lines.push(`${report.settings.rounds} interleaved rounds, order rotated per round; per window ${report.settings.warmupS} s warm-up (first round; ${report.settings.laterWarmupS} s later) + ${report.settings.measureS} s measured, ${report.settings.connections} connections. ` +
    'Every ratio is paired: a config ÷ plain reply-from measured in the same round; shown as the geometric mean of the per-round ratios and its 95% confidence interval ' +
    '(Student t over the per-round log-ratios, n − 1 degrees of freedom). **CPU µs per request is the primary figure** (gateway process + its Redis server, from /proc; ' +
    'what a request costs whichever side saturates first); req/s is closed-loop and moves with the host and the load generator. ' +
    `The p50 and p99 here are closed-loop too, at saturation (mostly queueing behind ${report.settings.connections} connections)${report.fixed_rate === null ? '' : '; latency below saturation, on which the p99 target is judged, is in the second table'}.`)
  lines.push('')
  lines.push('| config | path | bindings | CPU µs/req: gateway + Redis (median) | CPU ÷ plain, paired [95% CI] | req/s median (min–max) | req/s ÷ plain, paired [95% CI] | p50 ms | p99 ms | p99 added ms [95% CI] | Redis cmds/req (scripts) | kept/windows |')
  lines.push('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
  const ci = (x: Interval | null, digits: number): string => x === null ? '–' : `${fmt(x.estimate, digits)} ${fmtInterval(x, digits)}`
  for (const s of report.summaries) {
    const redisCmds = s.redisCommandsPerReq === null ? '–' : `${fmt(s.redisCommandsPerReq, 3)} (${fmt(s.redisScriptsPerReq, 3)})`
    const ratio = s.scaleRatioCi !== null ? `${ci(s.ratioCi, 2)}; ÷ ${s.mode} 1k: ${ci(s.scaleRatioCi, 2)}` : ci(s.ratioCi, 2)
    const cpu = `**${fmt(s.cpuUsPerReq?.median, 1)}**${s.redisCpuUsPerReq === null ? '' : ` (${fmt(s.gatewayCpuUsPerReq?.median, 1)} + ${fmt(s.redisCpuUsPerReq.median, 1)})`}`
    lines.push(`| ${s.mode} | ${s.path} | ${s.bindings} | ${cpu} | ${s.cpuRatioCi === null ? '–' : `**${ci(s.cpuRatioCi, 2)}**`} | ${fmtSpread(s.rps, 0)} | ${ratio} | ${fmt(s.p50Ms?.median, 2)} | ${fmt(s.p99Ms?.median, 2)} | ${ci(s.p99AddedCi, 1)} | ${redisCmds} | ${s.windows - s.flaggedWindows}/${s.windows}${s.disturbed ? ' ⚠ disturbed' : ''} |`)
  }
  for (const mode of report.modes.filter((each) => !each.present)) {
    lines.push(`| ${mode.name} | – | – | not present | | | | | | | | |`)
  }
  for (const peer of report.peers.filter((each) => !each.present)) {
    lines.push(`| ${peer.name} | – | – | ${peer.note} | | | | | | | | |`)
  }
  lines.push('')
  if (report.fixed_rate !== null) lines.push(...renderFixedRate(report.fixed_rate, report.settings.loadGenerator), '')
  lines.push('Targets (issue #4). A verdict is met or missed only when the whole 95% interval (for counts: every round) lies on one side of the target; otherwise it is not resolved by this run.')
  lines.push('')
  lines.push('| target | wanted | measured | verdict | what decided it |')
  lines.push('|---|---|---|---|---|')
  for (const t of report.targets) lines.push(`| ${t.name} | ${t.target} | ${t.value} | **${t.verdict}** | ${t.note} |`)
  lines.push('')
  lines.push('Where it ran: ' + Object.entries(report.placement).map(([where, what]) => `${where}: ${what.join(', ')}`).join('; ') + '.')
  if (report.notes.length > 0) {
    lines.push('')
    for (const note of report.notes) lines.push(`- ${note}`)
  }
  return lines.join('\n') + '\n'
}

function renderFixedRate (phase: FixedRateReport, closedLoopGenerator: string | number | boolean): string[] {
  const pct = Math.round(100 * phase.fraction)
  const lines = [
    `**Latency at ${pct} % of plain's rate**: ${phase.rate} req/s to every config (${pct} % of plain's median ${fmt(phase.plainRps, 0)} req/s above), ` +
    `open loop with ${phase.loadGenerator}, ${phase.connections} connections: not ${closedLoopGenerator === 'wrk' ? 'wrk, which has no rate option, nor autocannon' : 'autocannon'}, ` +
    'whose rate option sends each connection\'s quota for a second back to back from the second\'s start (a burst at saturation, then idle). ' +
    `${new Set(phase.windows.map((w) => w.round)).size} interleaved rounds, order rotated per round, ` +
    `${phase.settleS} s settling + ${phase.measureS} s measured per window, the other gateways on the gateway core paused meanwhile; latency from the release of a request to the end of its answer. ` +
    `p99 added = config p99 − plain p99 in the same round, 95% t-interval. A window that served under ${Math.round(100 * phase.heldShare)} % of the rate was saturated and is flagged. ` +
    `The added-p99 target is judged on the ${phase.judgedConfig.replace(/\/hit$/, '')} row.`,
    '',
    '| config | path | bindings | req/s served, median (min–max) | p50 ms | p99 ms | p99 added ms, paired [95% CI] | kept/windows |',
    '|---|---|---:|---:|---:|---:|---:|---:|'
  ]
  for (const s of phase.summaries) {
    const added = s.p99AddedCi === null ? '–' : `${fmt(s.p99AddedCi.estimate, 2)} ${fmtInterval(s.p99AddedCi, 2)}`
    lines.push(`| ${s.mode} | ${s.path} | ${s.bindings} | ${fmtSpread(s.rps, 0)} | ${fmt(s.p50Ms?.median, 2)} | ${fmt(s.p99Ms?.median, 2)} | ${added} | ${s.windows - s.flaggedWindows}/${s.windows}${s.disturbed ? ' ⚠ too few clean rounds' : ''} |`)
  }
  return lines
}

/** CPU targets equivalent to the req/s targets on a CPU-bound gateway: ≥ 0.97× req/s ⇔ ≤ 1/0.97 CPU per request. */
export const CPU_TARGET_HIT = 1 / 0.97
export const CPU_TARGET_NEW = 1 / 0.75

/**
 * @returns a small hand-written SVG bar chart of the paired CPU-per-request ratios (bar = geometric mean, whisker =
 *   95% CI), with the 1.0 line and the targets
 */
export function renderSvg (report: BenchReport): string {
  const bars = report.summaries.filter((s) => s.cpuRatioCi !== null).map((s) => {
    const c = s.cpuRatioCi as Interval
    const low = Number.isFinite(c.low) ? c.low : c.estimate
    const high = Number.isFinite(c.high) ? c.high : c.estimate
    return {
      label: `${s.mode} ${s.path === 'hit' ? 'hit' : 'new session'}${s.path === 'hit' && s.bindings !== '–' ? ` (${s.bindings} bindings)` : ''}${s.disturbed ? ' ⚠' : ''}`,
      path: s.path,
      peer: s.peer,
      ratio: { median: c.estimate, min: low, max: high, n: c.n }
    }
  })
  const missing = report.modes.filter((mode) => !mode.present).map((mode) => mode.name)
  const width = 760
  const left = 230
  const right = 50
  const barH = 22
  const gap = 10
  const top = 58
  // Capped at 3×: a wide interval of a short run is drawn clipped, not squeezing every bar.
  const maxX = Math.min(3, Math.max(1.5, Math.ceil((Math.max(...bars.map((b) => b.ratio.max)) + 0.05) * 4) / 4))
  const x = (v: number): number => left + (Math.min(Math.max(v, 0), maxX) / maxX) * (width - left - right)
  const rows = bars.length + missing.length
  const bottom = top + rows * (barH + gap)
  const height = bottom + 62
  const out: string[] = []
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`)
  out.push(`<rect width="${width}" height="${height}" fill="#fff"/>`)
  out.push('<text x="10" y="20" font-size="15" font-weight="bold">CPU µs per request (gateway + Redis) ÷ plain @fastify/reply-from — lower is better</text>')
  out.push(`<text x="10" y="38" fill="#444">paired per round; bar = geometric mean, whisker = 95% CI over ${escapeXml(String(report.settings.rounds))} rounds${report.quick ? ' (--quick: indicative only)' : ''}</text>`)
  const step = maxX <= 2 ? 0.25 : maxX <= 4 ? 0.5 : 1
  for (let tick = 0; tick <= maxX + 1e-9; tick += step) {
    out.push(`<line x1="${x(tick).toFixed(1)}" x2="${x(tick).toFixed(1)}" y1="${top - 4}" y2="${bottom}" stroke="#e4e4e4"/>`)
    out.push(`<text x="${x(tick).toFixed(1)}" y="${bottom + 14}" text-anchor="middle" fill="#666">${tick.toFixed(2)}</text>`)
  }
  bars.forEach((bar, i) => {
    const y = top + i * (barH + gap)
    const color = bar.peer ? '#8a8a8a' : bar.path === 'hit' ? '#4a7bd0' : '#d08a4a'
    out.push(`<text x="${left - 8}" y="${y + barH / 2 + 4}" text-anchor="end">${escapeXml(bar.label)}</text>`)
    out.push(`<rect x="${left}" y="${y}" width="${(x(bar.ratio.median) - left).toFixed(1)}" height="${barH}" fill="${color}"/>`)

    out.push(`<line x1="${x(bar.ratio.min).toFixed(1)}" x2="${x(bar.ratio.max).toFixed(1)}" y1="${y + barH / 2}" y2="${y + barH / 2}" stroke="#222" stroke-width="1.5"/>`)
    out.push(`<line x1="${x(bar.ratio.min).toFixed(1)}" x2="${x(bar.ratio.min).toFixed(1)}" y1="${y + 6}" y2="${y + barH - 6}" stroke="#222" stroke-width="1.5"/>`)
    out.push(`<line x1="${x(bar.ratio.max).toFixed(1)}" x2="${x(bar.ratio.max).toFixed(1)}" y1="${y + 6}" y2="${y + barH - 6}" stroke="#222" stroke-width="1.5"/>`)
    out.push(`<text x="${(x(bar.ratio.max) + 6).toFixed(1)}" y="${y + barH / 2 + 4}" font-weight="bold">${fmt(bar.ratio.median, 2)}</text>`)
    // The target a sticky bar is judged against: ≤ 1/0.97 on the hit path, ≤ 1/0.75 on the new-session path.
    const target = bar.path === 'hit' ? CPU_TARGET_HIT : CPU_TARGET_NEW
    if (!bar.peer) out.push(`<line x1="${x(target).toFixed(1)}" x2="${x(target).toFixed(1)}" y1="${y - 3}" y2="${y + barH + 3}" stroke="#c00" stroke-width="2" stroke-dasharray="3,2"/>`)
  })
  missing.forEach((name, i) => {
    const y = top + (bars.length + i) * (barH + gap)
    out.push(`<text x="${left - 8}" y="${y + barH / 2 + 4}" text-anchor="end">${escapeXml(name)}</text>`)
    out.push(`<text x="${left + 4}" y="${y + barH / 2 + 4}" fill="#888">not present (not measured)</text>`)
  })
  out.push(`<line x1="${x(1).toFixed(1)}" x2="${x(1).toFixed(1)}" y1="${top - 6}" y2="${bottom}" stroke="#000" stroke-width="1.5"/>`)
  out.push(`<text x="${x(1).toFixed(1)}" y="${top - 10}" text-anchor="middle">1.0 = plain</text>`)
  out.push(`<text x="10" y="${bottom + 36}" fill="#c00">red dashes: targets (hit path ≤ ${CPU_TARGET_HIT.toFixed(2)}, new session ≤ ${CPU_TARGET_NEW.toFixed(2)}: ≥ 0.97× / ≥ 0.75× req/s); grey: peers</text>`)
  if (report.summaries.some((s) => s.disturbed)) {
    out.push(`<text x="${width - 10}" y="${bottom + 36}" text-anchor="end" fill="#a60">⚠ host busy with other work: too few undisturbed rounds</text>`)
  }
  out.push(`<text x="10" y="${bottom + 54}" fill="#666">${escapeXml(report.date.slice(0, 16).replace('T', ' '))} UTC, ${escapeXml(String(report.machine.cpuModel))} × ${escapeXml(String(report.machine.nproc))}, ${escapeXml(String(report.machine.loadGenerator))}</text>`)
  out.push('</svg>')
  return out.join('\n') + '\n'
}

function escapeXml (text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
}

const README_BEGIN = '<!-- bench:begin -->'
const README_END = '<!-- bench:end -->'

/**
 * Writes latest.json, latest.md and latest.svg under `dir`, and the block of the page at `readmePath` when it has one.
 * @returns the paths written
 */
export function writeReport (report: BenchReport, dir: string, readmePath: string | null): string[] {
  mkdirSync(dir, { recursive: true })
  const markdown = renderMarkdown(report)
  const written = [join(dir, 'latest.json'), join(dir, 'latest.md'), join(dir, 'latest.svg')]
  writeFileSync(written[0], JSON.stringify(report, null, 2) + '\n')
  writeFileSync(written[1], '# fastify-sticky benchmark: latest run\n\n![paired ratios](latest.svg)\n\n' + markdown)
  writeFileSync(written[2], renderSvg(report))
  if (readmePath !== null && existsSync(readmePath)) {
    const readme = readFileSync(readmePath, 'utf8')
    const begin = readme.indexOf(README_BEGIN)
    const end = readme.indexOf(README_END)
    if (begin >= 0 && end > begin) {
      writeFileSync(readmePath, readme.slice(0, begin + README_BEGIN.length) + '\n' + markdown + readme.slice(end))
      written.push(readmePath)
    }
  }
  return written
}
