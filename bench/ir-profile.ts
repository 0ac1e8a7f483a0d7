/**
 * What one callgrind window of a Node gateway says, for `npm run bench:ir`: its instructions (Ir) by category,
 * the steady part of them, and per function, JIT code named from V8's perf map.
 *
 * Steady Ir leaves out major GC and the optimizing compiler: whether a full mark-compact or a late Turbofan job
 * lands in a window or just outside it is chance, and either moves a window's total by several per cent, while
 * the rest (JS, builtins, runtime, libc, llhttp, scavenges) is proportional to the requests served. Undisturbed runs
 * of one build agreed within 1.5 % on steady Ir, not on the total.
 *
 * Categories go by symbol name (node ships its symbols; JIT code has none, and lives in anonymous memory).
 */
import { dirname, basename, relative, sep } from 'node:path'
import type { CallgrindFunction, CallgrindProfile } from './callgrind'
import type { PerfMap } from './perf-map'

/** Where an instruction was executed. */
export type IrCategory = 'jit' | 'builtins' | 'runtime' | 'libc' | 'llhttp' | 'minorGc' | 'majorGc' | 'compiler'

/** Every category, in report order. */
export const CATEGORIES: readonly IrCategory[] = ['jit', 'builtins', 'runtime', 'libc', 'llhttp', 'minorGc', 'majorGc', 'compiler']

/** The categories left out of steady Ir (their share of a window is chance; see the module comment). */
export const EXCLUDED_CATEGORIES: ReadonlySet<IrCategory> = new Set(['majorGc', 'compiler'])

/** How the report names each category. */
export const CATEGORY_LABELS: Readonly<Record<IrCategory, string>> = {
  jit: 'JS (JIT)',
  builtins: 'builtins',
  runtime: 'C++ runtime',
  libc: 'libc',
  llhttp: 'llhttp',
  minorGc: 'minor GC',
  majorGc: 'major GC',
  compiler: 'compiler'
}

/** The one row all excluded functions are lumped into in function tables. */
export const EXCLUDED_ROW = '[excluded: major GC and optimizing compiler]'

/** A row for JIT code at an address the perf map does not cover (most likely WebAssembly: undici's llhttp). */
export const UNRESOLVED_JIT_ROW = '[JIT code not in the perf map]'

const COMPILER = /compiler::|maglev|Maglev|Turbofan|Pipeline|Compil(?!ationCache)/
const MINOR_GC = /Scaveng|SemiSpace|NewSpace/
// Heap functions the running program calls itself (array shifts and trims, ArrayBuffer allocation, the
// WeakRef checkpoint of every microtask run): per-request work, though named like the collector's.
const MUTATOR_HEAP = /Heap::(AllocateExternalBackingStore|NotifyObjectSizeChange|MoveRange|CopyRange|WriteBarrierForRange|ClearKeptObjects)|ArrayBufferSweeper::Append/
const MAJOR_GC = /Mark|Sweep|Evacuat|RememberedSet|PointersUpdating|MemoryChunk|ActiveSystemPages|Heap::|heap::|ObjectCache|SizeFromMap|popcount|LiveObject|IteratePointers|RelocIterator|Pretenuring|EvacuationAllocator|BodyDescriptor/

/**
 * Puts a function of a profile in its category (JIT code until its perf map name says otherwise: see
 * {@link profileWindow}). First match wins, in this order: the compiler's and the minor GC's names also match the
 * major GC's patterns.
 */
export function categorise (fn: Pick<CallgrindFunction, 'name' | 'object'>): IrCategory {
  if (fn.object === '???') return 'jit'
  const name = fn.name
  if (COMPILER.test(name)) return 'compiler'
  if (MINOR_GC.test(name)) return 'minorGc'
  if (!MUTATOR_HEAP.test(name) && MAJOR_GC.test(name)) return 'majorGc'
  if (name.startsWith('Builtins_')) return 'builtins'
  if (fn.object.startsWith('libc.so')) return 'libc'
  if (name.includes('llhttp')) return 'llhttp'
  return 'runtime'
}

/** Where a build's code is, to name its JS functions the same way whichever directory the build runs from. */
export interface CodeOrigin {
  /**
   * The directory holding the build's `dist/` (a worktree, a copied tree, the repository), or null for a
   * build with no `dist/` above its script (the plain baseline): then no function counts as the build's own.
   */
  readonly buildRoot: string | null
  /** The repository, to shorten other paths. */
  readonly repoRoot: string
}

/**
 * @param script - the absolute path of the script a build runs
 * @returns where its code is: the build's root is the parent of the nearest `dist` directory above the script
 */
export function codeOrigin (script: string, repoRoot: string): CodeOrigin {
  for (let dir = dirname(script); dir !== dirname(dir); dir = dirname(dir)) {
    if (basename(dir) === 'dist') return { buildRoot: dirname(dir), repoRoot }
  }
  return { buildRoot: null, repoRoot }
}

/** Self Ir of one function (or of the lumped excluded row) in a window. */
export interface FunctionCost {
  readonly category: IrCategory | 'excluded'
  ir: number
}

/** One window (between a zero and a dump of the counters) of one gateway process. */
export interface WindowProfile {
  /** Every instruction of the window, all threads. */
  readonly totalIr: number
  /** {@link totalIr} without the excluded categories. */
  readonly steadyIr: number
  readonly byCategory: Readonly<Record<IrCategory, number>>
  /**
   * Self Ir by function, named so that one function has one name across runs and builds (tier markers dropped,
   * paths relative to the build), the excluded categories lumped into {@link EXCLUDED_ROW}.
   */
  readonly functions: ReadonlyMap<string, FunctionCost>
  /** Self Ir of the build's own JS (its root's dist/ and lib/): what it runs as JIT code itself. */
  readonly ownIr: number
  /**
   * Ir of timer callbacks: `node::Environment::RunTimers` and all it called (whatever category). Timers fire by
   * the clock, requests here are ~50× slower than at full speed, so this is ~50× its weight per request there.
   */
  readonly timerIr: number
  /** Self Ir of JIT code the perf map does not cover. */
  readonly unresolvedJitIr: number
}

/**
 * Sums a callgrind window by category and by function.
 * @param map - the process's perf map, or null to leave JIT code unnamed
 */
export function profileWindow (profile: CallgrindProfile, map: PerfMap | null, origin: CodeOrigin): WindowProfile {
  const byCategory = Object.fromEntries(CATEGORIES.map((c) => [c, 0])) as Record<IrCategory, number>
  const functions = new Map<string, FunctionCost>()
  let ownIr = 0
  let timerIr = 0
  let unresolvedJitIr = 0
  for (const fn of profile.functions) {
    if (fn.name.startsWith('node::Environment::RunTimers(')) timerIr += fn.self + fn.calls
    if (fn.self === 0) continue
    let category = categorise(fn)
    let key: string
    if (category === 'jit') {
      const named = nameJitCode(fn.name, map, origin)
      category = named.category
      key = named.key
      if (named.own) ownIr += fn.self
      if (key === UNRESOLVED_JIT_ROW) unresolvedJitIr += fn.self
    } else {
      // callgrind marks recursion depth as `name'2`: one function still.
      key = `${fn.name.replace(/'\d+$/, '')} [${fn.object}]`
    }
    byCategory[category] += fn.self
    const excluded = EXCLUDED_CATEGORIES.has(category)
    if (excluded) key = EXCLUDED_ROW
    const row = functions.get(key)
    if (row === undefined) functions.set(key, { category: excluded ? 'excluded' : category, ir: fn.self })
    else row.ir += fn.self
  }
  const totalIr = CATEGORIES.reduce((sum, c) => sum + byCategory[c], 0)
  const steadyIr = CATEGORIES.reduce((sum, c) => sum + (EXCLUDED_CATEGORIES.has(c) ? 0 : byCategory[c]), 0)
  return { totalIr, steadyIr, byCategory, functions, ownIr, timerIr, unresolvedJitIr }
}

/**
 * Names JIT code at a bare address (`0x000000000d1d62c0`) from the perf map.
 * @returns its row name, its category (code V8 lists as a builtin or bytecode handler is a builtin), and whether it
 *   is the build's own JS
 */
function nameJitCode (address: string, map: PerfMap | null, origin: CodeOrigin): NamedCode {
  const entry = map?.resolve(parseInt(address, 16))
  return entry === undefined ? { key: UNRESOLVED_JIT_ROW, category: 'jit', own: false, optimized: false } : nameCode(entry.name, origin)
}

/** A code object of the perf map, as rows name it. */
interface NamedCode {
  readonly key: string
  readonly category: IrCategory
  /** Whether it is the build's own JS. */
  readonly own: boolean
  /** Whether it is a JS function's optimized code (Turbofan `*`, Maglev `+`). */
  readonly optimized: boolean
}

/** @returns the row a perf map name (`JS:*decide /app/dist/core/sticky-core.js:104:20`) goes to */
function nameCode (mapName: string, origin: CodeOrigin): NamedCode {
  const colon = mapName.indexOf(':')
  const type = colon > 0 ? mapName.slice(0, colon) : ''
  const rest = colon > 0 ? mapName.slice(colon + 1) : mapName
  const other = (key: string, category: IrCategory): NamedCode => ({ key, category, own: false, optimized: false })
  if (type === 'Builtin') return other(`Builtins_${rest} [node]`, 'builtins')
  if (type === 'BytecodeHandler' || type === 'Handler' || type === 'Stub') return other(`${type} ${rest}`, 'builtins')
  if (type === 'RegExp') return other(`RegExp /${rest}/`, 'jit')
  if (type !== 'JS' && type !== 'Eval' && type !== 'Script') return other(mapName, 'jit')
  // `*` optimized (Turbofan), `+` Maglev, `^` baseline (Sparkplug), `~` interpreted: one row whatever the tier.
  const optimized = rest.startsWith('*') || rest.startsWith('+')
  const text = rest.replace(/^[*^~+]/, '')
  const space = text.lastIndexOf(' ')
  const name = space >= 0 ? text.slice(0, space) : text
  const location = /^(.*):(\d+):(\d+)$/.exec(space >= 0 ? text.slice(space + 1) : '')
  if (location === null) return { key: name || '(anonymous)', category: 'jit', own: false, optimized }
  const { path, own } = shortenPath(location[1].replace(/^file:\/\//, ''), origin)
  // Named functions keep one name when an edit moves their line; anonymous ones have only their position.
  return { key: name === '' ? `(anonymous) ${path}:${location[2]}:${location[3]}` : `${name} ${path}`, category: 'jit', own, optimized }
}

/**
 * Counts the optimized code V8 made in a window, per function: each is one optimizing-compiler job that finished
 * (a function that shows up again and again is deoptimized and re-optimized in a loop).
 * @param mapNames - the names of the perf map lines written in the window (`perfMapNamesBetween`, bench/perf-map.ts)
 * @returns times per function, most first
 */
export function countOptimizations (mapNames: readonly string[], origin: CodeOrigin): Array<{ name: string, times: number }> {
  const times = new Map<string, number>()
  for (const mapName of mapNames) {
    const code = nameCode(mapName, origin)
    if (code.optimized) times.set(code.key, (times.get(code.key) ?? 0) + 1)
  }
  return [...times].map(([name, n]) => ({ name, times: n })).sort((a, b) => b.times - a.times || a.name.localeCompare(b.name))
}

/** @returns a source path as rows show it, and whether it is the build's own code */
function shortenPath (path: string, origin: CodeOrigin): { path: string, own: boolean } {
  const modules = path.lastIndexOf(`${sep}node_modules${sep}`)
  if (modules >= 0) return { path: path.slice(modules + `${sep}node_modules${sep}`.length), own: false }
  if (origin.buildRoot !== null && path.startsWith(origin.buildRoot + sep)) {
    const inBuild = relative(origin.buildRoot, path)
    return { path: inBuild, own: /^(dist|lib)\//.test(inBuild) }
  }
  if (path.startsWith(origin.repoRoot + sep)) return { path: relative(origin.repoRoot, path), own: false }
  return { path, own: false }
}
