/**
 * Turns the measured windows into figures (paired per-round ratios, medians, targets) and writes
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
  /** Why the window is excluded from the figures (errors, steal, other CPU); empty when kept. */
  readonly flags: string[]
}

/** A configuration under test, as laid out in the rounds. */
export interface ConfigSpec {
  readonly config: string
  readonly mode: string
  readonly path: 'hit' | 'new'
  readonly bindings: string
  /** The config this one is paired with for its main ratio (the plain baseline of its block), or null. */
  readonly baseline: string | null
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

/** Figures of one configuration over all kept windows. */
export interface ConfigSummary {
  readonly config: string
  readonly mode: string
  readonly path: 'hit' | 'new'
  readonly bindings: string
  readonly rps: Spread | null
  readonly p50Ms: Spread | null
  readonly p99Ms: Spread | null
  readonly gatewayCpuPct: Spread | null
  readonly gatewayCpuUsPerReq: Spread | null
  /** sticky ÷ plain, paired per round. */
  readonly ratio: Spread | null
  /** sticky p99 − plain p99, paired per round, ms. */
  readonly p99AddedMs: Spread | null
  /** large store ÷ small store, paired per round (large-store configs only). */
  readonly scaleRatio: Spread | null
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
      rps: spread(mine.map((w) => w.rps)),
      p50Ms: spread(mine.map((w) => w.p50Ms)),
      p99Ms: spread(mine.map((w) => w.p99Ms)),
      gatewayCpuPct: spread(mine.map((w) => w.gatewayCpuPct)),
      gatewayCpuUsPerReq: spread(mine.map((w) => w.gatewayCpuUsPerReq)),
      ratio: spread(ratios),
      p99AddedMs: spread(added),
      scaleRatio: spread(scale),
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

/** @returns `true` for commands that run a script (their inner calls are counted separately by Redis) */
export function isScriptCommand (name: string): boolean {
  return /^(eval|evalsha|eval_ro|evalsha_ro|fcall|fcall_ro)$/.test(name)
}

/** One target of issue #4, with its verdict. */
export interface TargetVerdict {
  readonly name: string
  readonly target: string
  readonly value: string
  /** `met`, `missed`, `not measured`, or `inconclusive` (too few undisturbed rounds to decide). */
  readonly verdict: 'met' | 'missed' | 'not measured' | 'inconclusive'
  /** Whether the spread over rounds lies wholly on one side of the threshold. */
  readonly note: string
}

/** Where a paired spread lies relative to a lower bound. */
export function judgeAtLeast (s: Spread | null, bound: number): { verdict: TargetVerdict['verdict'], note: string } {
  if (s === null) return { verdict: 'not measured', note: '' }
  const verdict = s.median >= bound ? 'met' : 'missed'
  const note = s.min >= bound ? `every round ≥ ${bound}` : s.max < bound ? `every round < ${bound}` : `rounds on both sides of ${bound} (${fmt(s.min, 2)}–${fmt(s.max, 2)}): not resolved by this run`
  return { verdict, note }
}

/** Where a paired spread lies relative to an upper bound. */
export function judgeAtMost (s: Spread | null, bound: number, unit = ''): { verdict: TargetVerdict['verdict'], note: string } {
  if (s === null) return { verdict: 'not measured', note: '' }
  const verdict = s.median <= bound ? 'met' : 'missed'
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
  /** Redis mode, hit path: sticky ÷ plain req/s, median of per-round ratios. */
  readonly ratio_hit: number | null
  /** Redis mode, new-session path. */
  readonly ratio_new: number | null
  readonly p99_added_hit_ms: number | null
  readonly p99_added_new_ms: number | null
  readonly redis_commands_per_request_hit: number | null
  readonly redis_commands_per_request_new: number | null
  readonly redis_commands_per_request_hit_near_cache: number | null
  readonly redis_bytes_per_binding: number | null
  readonly redis_bytes_per_binding_at_large: number | null
  readonly scale_bindings_large: number | null
  readonly ratio_large_vs_small_hit: number | null
  readonly summaries: ConfigSummary[]
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
    'Ratios are paired: sticky ÷ plain reply-from measured in the same round, then the median (min–max) over rounds.')
  lines.push('')
  lines.push('| config | path | bindings | req/s median (min–max) | p50 ms | p99 ms | ÷ plain, paired | p99 added ms | gateway CPU µs/req | Redis cmds/req (scripts) | Redis CPU µs/req | kept/windows |')
  lines.push('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
  for (const s of report.summaries) {
    const redisCmds = s.redisCommandsPerReq === null ? '–' : `${fmt(s.redisCommandsPerReq, 3)} (${fmt(s.redisScriptsPerReq, 3)})`
    const ratio = s.scaleRatio !== null ? `${fmtSpread(s.ratio, 2)}; ÷ ${s.mode} 1k: ${fmtSpread(s.scaleRatio, 2)}` : fmtSpread(s.ratio, 2)
    lines.push(`| ${s.mode} | ${s.path} | ${s.bindings} | ${fmtSpread(s.rps, 0)} | ${fmt(s.p50Ms?.median, 2)} | ${fmt(s.p99Ms?.median, 2)} | ${ratio} | ${s.p99AddedMs === null ? '–' : fmt(s.p99AddedMs.median, 2)} | ${fmt(s.gatewayCpuUsPerReq?.median, 1)} | ${redisCmds} | ${fmt(s.redisCpuUsPerReq?.median, 1)} | ${s.windows - s.flaggedWindows}/${s.windows}${s.disturbed ? ' ⚠ disturbed' : ''} |`)
  }
  for (const mode of report.modes.filter((each) => !each.present)) {
    lines.push(`| ${mode.name} | – | – | not present | | | | | | | | |`)
  }
  lines.push('')
  lines.push('Targets (issue #4):')
  lines.push('')
  lines.push('| target | wanted | measured | verdict | spread over rounds |')
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

/** @returns a small hand-written SVG bar chart of the paired ratios, with the 1.0 line and the targets */
export function renderSvg (report: BenchReport): string {
  const bars = report.summaries.filter((s) => s.ratio !== null).map((s) => ({
    label: `${s.mode} ${s.path === 'hit' ? 'hit' : 'new session'}${s.path === 'hit' && s.bindings !== '–' ? ` (${s.bindings} bindings)` : ''}${s.disturbed ? ' ⚠' : ''}`,
    path: s.path,
    ratio: s.ratio as Spread
  }))
  const missing = report.modes.filter((mode) => !mode.present).map((mode) => mode.name)
  const width = 760
  const left = 230
  const right = 50
  const barH = 22
  const gap = 10
  const top = 58
  const maxX = Math.max(1.25, Math.ceil((Math.max(...bars.map((b) => b.ratio.max)) + 0.05) * 4) / 4)
  const x = (v: number): number => left + (v / maxX) * (width - left - right)
  const rows = bars.length + missing.length
  const bottom = top + rows * (barH + gap)
  const height = bottom + 62
  const out: string[] = []
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`)
  out.push(`<rect width="${width}" height="${height}" fill="#fff"/>`)
  out.push('<text x="10" y="20" font-size="15" font-weight="bold">fastify-sticky req/s ÷ plain @fastify/reply-from</text>')
  out.push(`<text x="10" y="38" fill="#444">paired per round; bar = median, whisker = min–max over ${escapeXml(String(report.settings.rounds))} rounds${report.quick ? ' (--quick: indicative only)' : ''}</text>`)
  const step = maxX <= 2 ? 0.25 : maxX <= 4 ? 0.5 : 1
  for (let tick = 0; tick <= maxX + 1e-9; tick += step) {
    out.push(`<line x1="${x(tick).toFixed(1)}" x2="${x(tick).toFixed(1)}" y1="${top - 4}" y2="${bottom}" stroke="#e4e4e4"/>`)
    out.push(`<text x="${x(tick).toFixed(1)}" y="${bottom + 14}" text-anchor="middle" fill="#666">${tick.toFixed(2)}</text>`)
  }
  bars.forEach((bar, i) => {
    const y = top + i * (barH + gap)
    const color = bar.path === 'hit' ? '#4a7bd0' : '#d08a4a'
    out.push(`<text x="${left - 8}" y="${y + barH / 2 + 4}" text-anchor="end">${escapeXml(bar.label)}</text>`)
    out.push(`<rect x="${left}" y="${y}" width="${(x(bar.ratio.median) - left).toFixed(1)}" height="${barH}" fill="${color}"/>`)

    out.push(`<line x1="${x(bar.ratio.min).toFixed(1)}" x2="${x(bar.ratio.max).toFixed(1)}" y1="${y + barH / 2}" y2="${y + barH / 2}" stroke="#222" stroke-width="1.5"/>`)
    out.push(`<line x1="${x(bar.ratio.min).toFixed(1)}" x2="${x(bar.ratio.min).toFixed(1)}" y1="${y + 6}" y2="${y + barH - 6}" stroke="#222" stroke-width="1.5"/>`)
    out.push(`<line x1="${x(bar.ratio.max).toFixed(1)}" x2="${x(bar.ratio.max).toFixed(1)}" y1="${y + 6}" y2="${y + barH - 6}" stroke="#222" stroke-width="1.5"/>`)
    out.push(`<text x="${(x(bar.ratio.max) + 6).toFixed(1)}" y="${y + barH / 2 + 4}" font-weight="bold">${fmt(bar.ratio.median, 2)}</text>`)
    // The target this bar is judged against: ≥ 0.97 on the hit path, ≥ 0.75 on the new-session path.
    const target = bar.path === 'hit' ? 0.97 : 0.75
    out.push(`<line x1="${x(target).toFixed(1)}" x2="${x(target).toFixed(1)}" y1="${y - 3}" y2="${y + barH + 3}" stroke="#c00" stroke-width="2" stroke-dasharray="3,2"/>`)
  })
  missing.forEach((name, i) => {
    const y = top + (bars.length + i) * (barH + gap)
    out.push(`<text x="${left - 8}" y="${y + barH / 2 + 4}" text-anchor="end">${escapeXml(name)}</text>`)
    out.push(`<text x="${left + 4}" y="${y + barH / 2 + 4}" fill="#888">not present (not measured)</text>`)
  })
  out.push(`<line x1="${x(1).toFixed(1)}" x2="${x(1).toFixed(1)}" y1="${top - 6}" y2="${bottom}" stroke="#000" stroke-width="1.5"/>`)
  out.push(`<text x="${x(1).toFixed(1)}" y="${top - 10}" text-anchor="middle">1.0 = plain</text>`)
  out.push(`<text x="10" y="${bottom + 36}" fill="#c00">red dashes: targets (hit path ≥ 0.97, new session ≥ 0.75)</text>`)
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
