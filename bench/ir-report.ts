/**
 * The report of `npm run bench:ir`: per build and run, steady instructions per request and their categories; B÷A;
 * the functions where B differs most from A; the builds' own code; the timer-driven and background work. Rendered
 * as markdown and written with its JSON under bench/results/ir/.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import {
  CATEGORIES, CATEGORY_LABELS, EXCLUDED_CATEGORIES, EXCLUDED_ROW, UNRESOLVED_JIT_ROW, type FunctionCost, type IrCategory, type WindowProfile
} from './ir-profile'
import { fmt } from './report'

/** The two builds under comparison. */
export type SideName = 'A' | 'B'

/**
 * How far steady Ir per request of undisturbed runs of one build has strayed here: 1.5 % (a memory-store hit, six
 * runs in two comparisons: 251.6k-255.5k). A B÷A closer to 1 than this is not told apart from 1.
 */
export const RUN_SPREAD = 0.015

/**
 * Major GC Ir per request above which a mark-compact ran in the window. Undisturbed windows had 1-4k; ones with a
 * mark-compact 44-86k, and read up to 7 % high in steady Ir: write barriers take their slow path while marking runs,
 * and code that depended on what the collector changed is deoptimized.
 */
const MARK_COMPACT_FLOOR = 10_000

/** The most a disturbance added to a run's steady Ir here (a mark-compact and a re-optimization in one window: 7 %). */
const DISTURBED_SPREAD = 0.07

/** How many functions the difference table lists. */
const TOP_DIFFERENCES = 30
/** How many optimized functions are named per run. */
const TOP_OPTIMIZED = 8
/** How many functions of the background (idle) window are listed. */
const TOP_BACKGROUND = 12
/** How many functions of each build the JSON lists (the callgrind files hold them all). */
const JSON_FUNCTIONS = 200

/** One measured run: a fresh gateway process under callgrind. */
export interface RunRecord {
  readonly side: SideName
  /** 1-based, per side. */
  readonly run: number
  readonly pid: number
  /** Requests the gateway's HTTP parser completed in the measured window (counted by callgrind): the divisor. */
  readonly requests: number
  /** Requests the upstreams served between the zero and the dump (a check on `requests`, ± the requests in flight). */
  readonly forwarded: number
  /** Wall-clock seconds from zeroing the counters to dumping them. */
  readonly windowS: number
  /** Why the run is left out (its load had errors); empty when kept. */
  readonly flags: string[]
  readonly measured: WindowProfile
  /** The window with no load after the measured one, or null when `--idle 0`. */
  readonly idle: { readonly seconds: number, readonly profile: WindowProfile } | null
  /** The callgrind files of the run, relative to the repository. */
  readonly files: string[]
  /**
   * Functions V8 optimized (Turbofan) in the measured window, and how many times: the compiler's work there.
   * One function many times is a deoptimization loop; a burst of them, a JIT that had not settled.
   */
  readonly optimized: ReadonlyArray<{ readonly name: string, readonly times: number }>
}

/** A build as the report names it. */
export interface ReportBuild {
  readonly label: string
  readonly script: string
  /** Whether its first answer set a routing cookie. */
  readonly sticky: boolean
  /** The directories its own code is counted under, relative to the repository, or null (the plain baseline). */
  readonly ownCode: string | null
}

/** One build's kept runs, per request: its calmest run (the lowest steady Ir), and the spread of them all. */
export interface BuildSummary {
  readonly runs: number
  /** The run the figures below are from: the one with the lowest steady Ir. */
  readonly calmest: number
  /** What disturbed the calmest run, as far as can be seen ({@link disturbancesOf}); empty when nothing did. */
  readonly calmestDisturbances: readonly string[]
  /**
   * Steady Ir per request: the calmest run's; the second lowest of the undisturbed runs, over the lowest of them
   * (null with fewer than two undisturbed runs); the mean and highest of all.
   */
  readonly steady: { readonly lowest: number, readonly undisturbedSpread: number | null, readonly mean: number, readonly highest: number }
  readonly total: number
  readonly categories: Readonly<Record<IrCategory, number>>
  readonly own: number
  readonly timers: number
  /** Background Ir per second with no load (mean over the runs), or null when no idle window was taken. */
  readonly idlePerS: number | null
  /** Self Ir per request by function. */
  readonly functions: ReadonlyMap<string, { category: FunctionCost['category'], perReq: number }>
  /** Background Ir per second by function, mean over the runs. */
  readonly idleFunctions: ReadonlyMap<string, { category: FunctionCost['category'], perS: number }>
}

/** A row of the difference table. */
export interface FunctionDifference {
  readonly name: string
  readonly category: FunctionCost['category']
  readonly a: number
  readonly b: number
  readonly diff: number
}

/** What the command ran with. */
export interface IrSettings {
  readonly mode: string
  readonly path: string
  readonly warm: number
  readonly requests: number
  readonly runs: number
  readonly idle: number
  readonly connections: number
}

/** Everything the report shows. */
export interface IrReport {
  readonly date: string
  readonly machine: Readonly<Record<string, string | number>>
  readonly settings: IrSettings
  readonly builds: Readonly<Record<SideName, ReportBuild>>
  readonly runs: readonly RunRecord[]
  readonly summary: Readonly<Record<SideName, BuildSummary | null>>
  /** B÷A of the calmest runs' steady Ir per request; null unless both builds have a kept run. */
  readonly ratio: number | null
  /** B÷A of the means over all kept runs. */
  readonly meanRatio: number | null
  /**
   * How far apart a build's two calmest undisturbed runs are (the larger over both builds): this comparison's own
   * noise, or null when no build has two undisturbed runs.
   */
  readonly calmSpread: number | null
  readonly differences: readonly FunctionDifference[]
}

const mean = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length

/**
 * What may have pushed a run's steady Ir up (disturbances only add instructions): a mark-compact in the window, a
 * function deoptimized and re-optimized in it.
 * @returns one note per disturbance seen, empty when none
 */
export function disturbancesOf (r: RunRecord): string[] {
  const notes: string[] = []
  const majorGc = r.measured.byCategory.majorGc / r.requests
  if (majorGc >= MARK_COMPACT_FLOOR) notes.push(`mark-compact in the window (${k(majorGc)} major GC Ir/req)`)
  const again = r.optimized.filter((o) => o.times > 1)
  if (again.length > 0) notes.push(`re-optimized in the window: ${again.slice(0, 3).map((o) => `${shorten(o.name, 60)} ×${o.times}`).join(', ')}${again.length > 3 ? ', …' : ''}`)
  return notes
}

/**
 * Sums up a build's kept runs around its calmest one. Whatever disturbs a run (a mark-compact's marking, code
 * re-optimized after a deoptimization, a host busy with other work shifting what the JIT and the GC do when) adds
 * instructions; none takes any away. So the lowest steady Ir of K runs is the least disturbed figure, and B÷A is
 * taken between the calmest runs (the per-function and per-category figures too).
 * @returns null when no run of the build was kept
 */
export function summariseBuild (runs: readonly RunRecord[]): BuildSummary | null {
  const kept = runs.filter((r) => r.flags.length === 0)
  if (kept.length === 0) return null
  const steadyOf = (r: RunRecord): number => r.measured.steadyIr / r.requests
  const sorted = [...kept].sort((x, y) => steadyOf(x) - steadyOf(y))
  const calm = sorted[0]
  const undisturbed = sorted.filter((r) => disturbancesOf(r).length === 0)
  const per = (ir: number): number => ir / calm.requests
  const functions = new Map<string, { category: FunctionCost['category'], perReq: number }>()
  for (const [name, cost] of calm.measured.functions) functions.set(name, { category: cost.category, perReq: per(cost.ir) })
  const idleRuns = kept.filter((r) => r.idle !== null && r.idle.seconds > 0)
  const idleFunctions = new Map<string, { category: FunctionCost['category'], perS: number }>()
  for (const r of idleRuns) {
    if (r.idle === null) continue
    for (const [name, cost] of r.idle.profile.functions) {
      const row = idleFunctions.get(name) ?? { category: cost.category, perS: 0 }
      row.perS += cost.ir / r.idle.seconds / idleRuns.length
      idleFunctions.set(name, row)
    }
  }
  return {
    runs: kept.length,
    calmest: calm.run,
    calmestDisturbances: disturbancesOf(calm),
    steady: {
      lowest: steadyOf(calm),
      undisturbedSpread: undisturbed.length > 1 ? steadyOf(undisturbed[1]) / steadyOf(undisturbed[0]) - 1 : null,
      mean: mean(kept.map(steadyOf)),
      highest: steadyOf(sorted[sorted.length - 1])
    },
    total: per(calm.measured.totalIr),
    categories: Object.fromEntries(CATEGORIES.map((c) => [c, per(calm.measured.byCategory[c])])) as Record<IrCategory, number>,
    own: per(calm.measured.ownIr),
    timers: per(calm.measured.timerIr),
    idlePerS: idleRuns.length === 0 ? null : mean(idleRuns.map((r) => (r.idle?.profile.totalIr ?? 0) / (r.idle?.seconds ?? 1))),
    functions,
    idleFunctions
  }
}

/**
 * @returns how far apart a build's two calmest undisturbed runs are, the larger over both builds; null when no build
 *   has two undisturbed runs
 */
export function calmSpreadOf (summaries: ReadonlyArray<BuildSummary | null>): number | null {
  const spreads = summaries.flatMap((s) => s?.steady.undisturbedSpread == null ? [] : [s.steady.undisturbedSpread])
  return spreads.length === 0 ? null : Math.max(...spreads)
}

/** @returns the functions by |B − A| self Ir per request, largest first */
export function functionDifferences (a: BuildSummary, b: BuildSummary, top = TOP_DIFFERENCES): FunctionDifference[] {
  const names = new Set([...a.functions.keys(), ...b.functions.keys()])
  const rows: FunctionDifference[] = []
  for (const name of names) {
    const ra = a.functions.get(name)
    const rb = b.functions.get(name)
    const va = ra?.perReq ?? 0
    const vb = rb?.perReq ?? 0
    rows.push({ name, category: (rb ?? ra)?.category ?? 'runtime', a: va, b: vb, diff: vb - va })
  }
  return rows.sort((x, y) => Math.abs(y.diff) - Math.abs(x.diff)).slice(0, top)
}

/** @returns a count of instructions as `248.1k` */
const k = (x: number): string => fmt(x / 1000, 1) + 'k'
/** @returns a share as `12.3 %` */
const pct = (x: number, digits = 1): string => fmt(x * 100, digits) + ' %'
/** Markdown cells must not break the table. */
const cell = (text: string): string => text.replace(/\|/g, '\\|').replace(/\n/g, ' ')
const shorten = (text: string, max = 110): string => text.length > max ? text.slice(0, max - 1) + '…' : text

/** @returns the one-line verdict on B÷A */
export function verdict (report: IrReport): string {
  if (report.ratio === null) return 'no verdict: a build has no kept run'
  const r = report.ratio
  const change = Math.abs(r - 1)
  const disturbed = (['A', 'B'] as const).filter((side) => (report.summary[side]?.calmestDisturbances.length ?? 0) > 0)
  const own = report.calmSpread !== null && report.calmSpread > RUN_SPREAD
  const spread = disturbed.length > 0 ? DISTURBED_SPREAD : own && report.calmSpread !== null ? report.calmSpread : RUN_SPREAD
  const which = disturbed.length > 0
    ? `the ${pct(DISTURBED_SPREAD, 0)} a disturbance has added here, as even the calmest run of ${disturbed.join(' and ')} was disturbed ` +
      '(see the table; more runs give an undisturbed one)'
    : own
      ? `the ${pct(spread, 2)} between a build's two calmest undisturbed runs in this comparison`
      : `the ${pct(RUN_SPREAD, 2)} by which undisturbed runs of one build have differed here`
  const means = report.meanRatio !== null && report.settings.runs > 1 ? `; of the means, ${fmt(report.meanRatio, 4)}` : ''
  if (change < spread) return `B÷A ${fmt(r, 4)} (calmest runs${means}): within ${which}, so not told apart from 1`
  return `B executes ${pct(change, 2)} ${r >= 1 ? 'more' : 'fewer'} steady instructions per request than A ` +
    `(B÷A ${fmt(r, 4)}, calmest runs${means}; more than ${which})`
}

/** @returns the report as markdown */
export function renderIrMarkdown (report: IrReport): string {
  const { settings } = report
  const out: string[] = []
  out.push(`# Instruction counts per request: A vs B (${report.date.slice(0, 16).replace('T', ' ')} UTC)`, '')
  out.push(`- A = ${report.builds.A.label}`, `- B = ${report.builds.B.label}`)
  out.push(`- mode ${settings.mode}, ${settings.path} path; each run a fresh gateway under \`valgrind --tool=callgrind\`: ${settings.warm} requests of warm-up, ` +
    `then ${settings.requests} measured (autocannon, ${settings.connections} connections)${settings.idle > 0 ? `, then ${settings.idle} s without load` : ''}; ` +
    `${settings.runs} run(s) per build, A and B alternating; ${report.machine.valgrind}, node ${report.machine.node}`, '')

  out.push('## Steady instructions per request', '')
  out.push('Steady Ir = every instruction of the gateway process (all threads) in the measured window, less major GC and ' +
    'the optimizing compiler, ÷ the requests it forwarded; the excluded columns are shown, not counted. Disturbances ' +
    '(a mark-compact\'s marking, code re-optimized after a deoptimization, a busy host) only add instructions, so each ' +
    'build is taken at its calmest run: the lowest steady Ir.', '')
  const cats = CATEGORIES.map((c) => EXCLUDED_CATEGORIES.has(c) ? `excl. ${CATEGORY_LABELS[c]}` : CATEGORY_LABELS[c])
  out.push(`| build | run | requests | window | req/s | **steady** | ${cats.join(' | ')} | total | own code | timers | disturbances |`)
  out.push(`|---|---:|---:|---:|---:|---:|${CATEGORIES.map(() => '---:').join('|')}|---:|---:|---:|---|`)
  for (const r of report.runs) {
    const per = (x: number): string => k(x / r.requests)
    const calmest = report.summary[r.side]?.calmest === r.run && r.flags.length === 0
    const notes = [...r.flags.map((f) => `left out: ${f}`), ...disturbancesOf(r)]
    out.push(`| ${r.side} | ${r.run}${calmest ? ' (calmest)' : ''} | ${r.requests} | ${fmt(r.windowS, 1)} s | ${fmt(r.requests / r.windowS)} | ` +
      `**${per(r.measured.steadyIr)}** | ${CATEGORIES.map((c) => per(r.measured.byCategory[c])).join(' | ')} | ${per(r.measured.totalIr)} | ` +
      `${report.builds[r.side].ownCode === null ? '–' : per(r.measured.ownIr)} | ${per(r.measured.timerIr)} | ${cell(notes.join('; ')) || '–'} |`)
  }
  out.push('')
  if (settings.runs > 1) {
    for (const side of ['A', 'B'] as const) {
      const s = report.summary[side]
      if (s !== null) out.push(`- ${side}: calmest ${k(s.steady.lowest)}, mean ${k(s.steady.mean)}, highest ${k(s.steady.highest)} over ${s.runs} run(s)`)
    }
    out.push('')
  }
  out.push(`**${verdict(report)}**`, '')
  if (settings.runs === 1) {
    out.push('One run per build: a disturbed run reads 1-7 % high (one with a mark-compact and a re-optimization in its window ' +
      'read 7 % high here), and a single run cannot be checked against a calmer one: use `--runs 3` for differences of a few per cent.', '')
  }
  const a = report.summary.A
  const b = report.summary.B
  if (a !== null && b !== null) {
  out.push('By category, B − A Ir per request: ' + CATEGORIES.map((c) =>
      `${EXCLUDED_CATEGORIES.has(c) ? '(' : ''}${CATEGORY_LABELS[c]} ${signed(b.categories[c] - a.categories[c])}${EXCLUDED_CATEGORIES.has(c) ? ', excluded)' : ''}`).join(', ') + '.', '')

    out.push(`## Where B differs from A: ${report.differences.length} functions by |B − A|`, '')
    out.push('Self Ir per request in each build\'s calmest run. JIT code is named from V8\'s perf map, one row per function whatever ' +
      'its tier (`*` optimized, `^` baseline dropped); what an optimized function inlined counts as its own. ' +
      'Paths are relative to the build, or to node_modules.', '')
    out.push('| B − A | A | B | category | function |', '|---:|---:|---:|---|---|')
    for (const d of report.differences) {
      out.push(`| ${signed(d.diff)} | ${fmt(d.a)} | ${fmt(d.b)} | ${d.category === 'excluded' ? 'excluded' : CATEGORY_LABELS[d.category]} | ${cell(shorten(d.name))} |`)
    }
    out.push('')
  }

  out.push('## The optimizing compiler in the measured windows', '')
  out.push('Left out of steady Ir, but a sign of code running in slower tiers meanwhile: optimized code V8 made in each ' +
    'window (from its perf map), per function. One function many times is a deoptimization loop.', '')
  for (const r of report.runs) {
    const jobs = r.optimized.reduce((n, o) => n + o.times, 0)
    const top = r.optimized.slice(0, TOP_OPTIMIZED).map((o) => `${shorten(o.name, 70)}${o.times > 1 ? ` ×${o.times}` : ''}`).join(', ')
    out.push(`- ${r.side}${r.run}: ${fmt(r.measured.byCategory.compiler / r.requests)} Ir per request; ${jobs} optimization(s) of ${r.optimized.length} function(s)` +
      (jobs > 0 ? `: ${cell(top)}${r.optimized.length > TOP_OPTIMIZED ? ', …' : ''}` : ''))
  }
  out.push('')

  out.push('## Own code', '')
  for (const side of ['A', 'B'] as const) {
    const s = report.summary[side]
    const build = report.builds[side]
    if (s === null) continue
    out.push(build.ownCode === null
      ? `- ${side}: none (no \`dist/\` above its script: the plain baseline has no fastify-sticky code)`
      : `- ${side}: ${k(s.own)} Ir per request, ${pct(s.own / s.steady.lowest)} of steady (calmest run): self Ir of its JS under ${build.ownCode} as JIT code; ` +
        'the builtins and runtime it calls (property lookups, Map operations, HMAC) count where they run, not here.')
  }
  out.push('')

  out.push('## Timer-driven and background work (over-weighted here)', '')
  out.push('Under valgrind a request takes ~50× as long, while timers still fire by the clock (sweeps, flushes, health ' +
    'polls: every second or so), so per request they weigh ~50× what they weigh at full speed. They are in steady Ir; ' +
    'a change to timer-driven code shows here far larger than it is.', '')
  for (const side of ['A', 'B'] as const) {
    const s = report.summary[side]
    if (s === null) continue
    out.push(`- ${side}: timer callbacks in the measured window (\`node::Environment::RunTimers\` and all it called) ${fmt(s.timers)} Ir per request, ` +
      `${pct(s.timers / s.steady.lowest, 2)} of steady (calmest run)` +
      (s.idlePerS === null ? '.' : `; with no load, ${k(s.idlePerS)} Ir per second (timers, GC and compiler tasks, closing connections).`))
  }
  for (const side of ['A', 'B'] as const) {
    const s = report.summary[side]
    if (s === null || s.idlePerS === null) continue
    out.push('', `Background work of ${side} with no load (${settings.idle} s after the measured window), Ir per second by function:`, '')
    out.push('| Ir/s | category | function |', '|---:|---|---|')
    const rows = [...s.idleFunctions].sort((x, y) => y[1].perS - x[1].perS).slice(0, TOP_BACKGROUND)
    for (const [name, row] of rows) out.push(`| ${fmt(row.perS)} | ${row.category === 'excluded' ? 'excluded' : CATEGORY_LABELS[row.category]} | ${cell(shorten(name))} |`)
  }
  out.push('')

  out.push('## What this is not', '')
  out.push('Instructions, not time: cache and TLB misses, branch mispredictions, and the kernel\'s work (syscalls, loopback ' +
    'networking) are invisible to it, and an instruction of a hash costs what an instruction of a copy costs. It tells ' +
    `which build executes more, to within ${pct(RUN_SPREAD, 2)} between undisturbed runs; \`npm run bench:ab\` tells which ` +
    `costs more CPU time, to within ~±4 %. Row ${UNRESOLVED_JIT_ROW}: code V8 does not list in its perf map (most likely ` +
    `WebAssembly: undici parses responses with a WebAssembly llhttp). Row ${EXCLUDED_ROW}: every function of the excluded ` +
    'categories, outside steady Ir.', '')
  out.push(`Callgrind files: ${report.runs.flatMap((r) => r.files).map((f) => `\`${f}\``).join(', ')} (\`callgrind_annotate\` reads them; JIT code is unnamed there).`, '')
  return out.join('\n')
}

/** @returns `+1,234` / `−56` */
function signed (x: number): string {
  const rounded = Math.round(x)
  if (rounded === 0) return '0'
  return (rounded > 0 ? '+' : '−') + Math.abs(rounded).toLocaleString('en-US')
}

/**
 * Writes `latest.json` and `latest.md` under `dir` (bench/results/ir/).
 * @returns the paths written
 */
export function writeIrReport (report: IrReport, dir: string): string[] {
  mkdirSync(dir, { recursive: true })
  const perBuild = (s: BuildSummary | null): unknown => s === null
    ? null
    : {
        ...s,
        functions: [...s.functions].sort((x, y) => y[1].perReq - x[1].perReq).slice(0, JSON_FUNCTIONS).map(([name, row]) => ({ name, ...row })),
        idleFunctions: [...s.idleFunctions].sort((x, y) => y[1].perS - x[1].perS).slice(0, TOP_BACKGROUND * 4).map(([name, row]) => ({ name, ...row }))
      }
  const runs = report.runs.map((r) => ({
    ...r,
    measured: windowJson(r.measured),
    idle: r.idle === null ? null : { seconds: r.idle.seconds, ...windowJson(r.idle.profile) }
  }))
  const json = { ...report, runs, summary: { A: perBuild(report.summary.A), B: perBuild(report.summary.B) }, verdict: verdict(report) }
  const written = [join(dir, 'latest.json'), join(dir, 'latest.md')]
  writeFileSync(written[0], JSON.stringify(json, null, 2) + '\n')
  writeFileSync(written[1], renderIrMarkdown(report))
  return written
}

/** A window's figures for the JSON, without its per-function table (the build summaries hold those). */
function windowJson (w: WindowProfile): Record<string, unknown> {
  return { totalIr: w.totalIr, steadyIr: w.steadyIr, byCategory: w.byCategory, ownIr: w.ownIr, timerIr: w.timerIr, unresolvedJitIr: w.unresolvedJitIr }
}
