/**
 * Reads a V8 `.cpuprofile` (node --cpu-prof) and sums self time per function and per code origin
 * (this project's lib/, a package under node_modules, node internals, GC, idle).
 * Also runnable on its own: `npx tsx bench/profile-summary.ts file.cpuprofile [topN]`.
 */
import { readFileSync } from 'node:fs'

interface ProfileNode {
  readonly id: number
  readonly callFrame: { readonly functionName: string, readonly url: string, readonly lineNumber: number }
}

interface CpuProfile {
  readonly startTime: number
  readonly endTime: number
  readonly nodes: readonly ProfileNode[]
  readonly samples: readonly number[]
  readonly timeDeltas: readonly number[]
}

/** Self time of one function or origin. */
export interface SelfTime {
  readonly name: string
  readonly ms: number
  /** Share of all non-idle samples, %. */
  readonly pct: number
}

/** What {@link summariseProfile} reports. */
export interface ProfileSummary {
  readonly file: string
  /** Sampled time that was not idle, ms. */
  readonly busyMs: number
  readonly idleMs: number
  readonly topFunctions: SelfTime[]
  readonly byOrigin: SelfTime[]
}

function origin (url: string, functionName: string): string {
  if (url === '') return functionName.startsWith('(') ? functionName : '(native/builtin)'
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)
  if (pkg !== null) return pkg[1]
  if (url.startsWith('node:')) return 'node internals'
  if (url.includes('/lib/')) return 'fastify-sticky lib/'
  if (url.includes('/bench/') || url.includes('/examples/')) return 'bench/examples'
  return url
}

function shortUrl (url: string): string {
  const pkg = url.indexOf('node_modules/')
  if (pkg >= 0) return url.slice(pkg + 'node_modules/'.length)
  const lib = url.lastIndexOf('/lib/')
  if (lib >= 0 && !url.startsWith('node:')) return url.slice(lib + 1)
  return url.replace(/^file:\/\//, '')
}

/**
 * @param file - a `.cpuprofile`
 * @param top - how many functions to list
 * @param window - only samples taken between these many µs before the profile's end (startup and shutdown left out)
 * @returns self time per function (top `top`) and per origin, idle excluded from the percentages
 */
export function summariseProfile (file: string, top: number, window?: { readonly fromEndUs: number, readonly toEndUs: number }): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile
  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  const perFunction = new Map<string, number>()
  const perOrigin = new Map<string, number>()
  let idle = 0
  let busy = 0
  const from = window === undefined ? -Infinity : profile.endTime - window.fromEndUs
  const to = window === undefined ? Infinity : profile.endTime - window.toEndUs
  let at = profile.startTime
  profile.samples.forEach((id, i) => {
    const us = profile.timeDeltas[i] ?? 0
    at += us
    if (at < from || at > to) return
    const node = byId.get(id)
    if (node === undefined) return
    const { functionName, url, lineNumber } = node.callFrame
    if (functionName === '(idle)') {
      idle += us
      return
    }
    busy += us
    const name = `${functionName || '(anonymous)'} ${url === '' ? '' : shortUrl(url) + ':' + (lineNumber + 1)}`.trim()
    perFunction.set(name, (perFunction.get(name) ?? 0) + us)
    const where = origin(url, functionName)
    perOrigin.set(where, (perOrigin.get(where) ?? 0) + us)
  })
  const rank = (map: Map<string, number>, n: number): SelfTime[] => [...map.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([name, us]) => ({ name, ms: Math.round(us / 100) / 10, pct: Math.round(1000 * us / Math.max(1, busy)) / 10 }))
  return { file, busyMs: Math.round(busy / 1000), idleMs: Math.round(idle / 1000), topFunctions: rank(perFunction, top), byOrigin: rank(perOrigin, 20) }
}

if (require.main === module) {
  const file = process.argv[2]
  if (file === undefined) {
    process.stderr.write('usage: tsx bench/profile-summary.ts file.cpuprofile [topN]\n')
    process.exit(2)
  }
  const summary = summariseProfile(file, Number(process.argv[3] ?? 20))
  process.stdout.write(`busy ${summary.busyMs} ms, idle ${summary.idleMs} ms\n\nself time by function:\n`)
  for (const f of summary.topFunctions) process.stdout.write(`${f.pct.toFixed(1).padStart(5)}%  ${f.ms.toFixed(1).padStart(8)} ms  ${f.name}\n`)
  process.stdout.write('\nself time by origin:\n')
  for (const o of summary.byOrigin) process.stdout.write(`${o.pct.toFixed(1).padStart(5)}%  ${o.ms.toFixed(1).padStart(8)} ms  ${o.name}\n`)
}
