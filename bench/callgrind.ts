/**
 * Reads a callgrind profile (`valgrind --tool=callgrind` output, format version 1) into self and call costs per
 * function. Written here rather than read from `callgrind_annotate` because the annotate of this VM's valgrind
 * (3.19) prints inclusive costs whatever it is asked, and inclusive costs do not add up to the total.
 *
 * Format: https://valgrind.org/docs/manual/cl-format.html. What matters here: names are compressed (`fn=(12) name`
 * the first time, `fn=(12)` after), `fn`/`cfn` share one table and `ob`/`cob` another; a cost line is positions
 * then events; the cost line right after a `calls=` line is the call's inclusive cost, not the caller's own.
 */
import { readFileSync } from 'node:fs'
import { basename } from 'node:path'

/** One function of a profile, as callgrind names it. */
export interface CallgrindFunction {
  /** A symbol (C++ demangled), or a bare address such as `0x000000000d1d62c0` for code without one (JIT code). */
  readonly name: string
  /** The file name of the ELF object the code is in (`node`, `libc.so.6`), `???` for anonymous memory (JIT). */
  readonly object: string
  /** Instructions executed in the function itself (Ir). */
  self: number
  /** Instructions executed in the calls it made, callees included (so `self + calls` is its inclusive cost). */
  calls: number
}

/** A parsed profile: one dump of one process, all threads together (callgrind's default). */
export interface CallgrindProfile {
  readonly file: string
  readonly pid: number | null
  /** The `totals:` line (Ir), or null when the file has none; the functions' `self` add up to it. */
  readonly totals: number | null
  readonly functions: CallgrindFunction[]
  /** How many times each function was called (by name, whatever its object). */
  readonly callCounts: ReadonlyMap<string, number>
}

/** The event every figure here counts: instructions executed. */
const IR_EVENT = 'Ir'

/**
 * Parses one callgrind output file.
 * @returns every function with a cost, self and calls in Ir
 * @throws when the file is not a callgrind profile or counts no `Ir`
 */
export function readCallgrind (file: string): CallgrindProfile {
  const text = readFileSync(file, 'utf8')
  const functionNames = new Map<string, string>()
  const objectNames = new Map<string, string>()
  const byKey = new Map<string, CallgrindFunction>()
  const callCounts = new Map<string, number>()
  let callee = ''
  let positions = 1
  let irColumn = -1
  let pid: number | null = null
  let totals: number | null = null
  let object = '???'
  let current: CallgrindFunction | null = null
  // The next cost line belongs to a call (its inclusive cost), not to the current function's own code.
  let callCostNext = false

  // `(12) name` defines entry 12, `(12)` refers to it, a bare `name` is uncompressed.
  const lookup = (table: Map<string, string>, spec: string): string => {
    const match = /^\((\d+)\)(?: (.*))?$/.exec(spec)
    if (match === null) return spec
    if (match[2] !== undefined) table.set(match[1], match[2])
    const name = table.get(match[1])
    if (name === undefined) throw new Error(`bench: ${file}: name (${match[1]}) used before it is defined`)
    return name
  }

  for (const line of text.split('\n')) {
    const first = line.charCodeAt(0)
    // Cost lines first: they are most of the file. Positions may be relative (+3, -2) or repeated (*).
    if ((first >= 48 && first <= 57) || first === 43 || first === 45 || first === 42) {
      if (current === null || irColumn < 0) continue
      const fields = line.split(' ')
      const cost = Number(fields[positions + irColumn] ?? 0)
      if (callCostNext) {
        current.calls += cost
        callCostNext = false
      } else {
        current.self += cost
      }
      continue
    }
    const eq = line.indexOf('=')
    const colon = line.indexOf(':')
    if (eq > 0 && (colon < 0 || eq < colon)) {
      const key = line.slice(0, eq)
      const value = line.slice(eq + 1)
      if (key === 'fn') {
        const name = lookup(functionNames, value)
        const id = object + '\0' + name
        current = byKey.get(id) ?? null
        if (current === null) {
          current = { name, object, self: 0, calls: 0 }
          byKey.set(id, current)
        }
      } else if (key === 'cfn') {
        callee = lookup(functionNames, value)
      } else if (key === 'ob') {
        object = objectLabel(lookup(objectNames, value))
      } else if (key === 'cob') {
        lookup(objectNames, value)
      } else if (key === 'calls') {
        // calls=<count> <target position>
        callCounts.set(callee, (callCounts.get(callee) ?? 0) + parseInt(value, 10))
        callCostNext = true
      }
      // fl, fi, fe, cfi, cfl (source files) and jump, jcnd (jump counts) do not change whose cost a line is.
      continue
    }
    if (line.startsWith('events:')) {
      irColumn = line.slice('events:'.length).trim().split(/\s+/).indexOf(IR_EVENT)
    } else if (line.startsWith('positions:')) {
      positions = line.slice('positions:'.length).trim().split(/\s+/).length
    } else if (line.startsWith('pid:')) {
      pid = Number(line.slice('pid:'.length).trim())
    } else if (line.startsWith('totals:')) {
      totals = Number(line.slice('totals:'.length).trim().split(/\s+/)[irColumn] ?? NaN)
    }
  }
  if (irColumn < 0) throw new Error(`bench: ${file} is not a callgrind profile counting ${IR_EVENT} (no "events:" line naming it)`)
  return { file, pid, totals, functions: [...byKey.values()], callCounts }
}

/** @returns an object's file name (`/usr/lib/x86_64-linux-gnu/libc.so.6` → `libc.so.6`); `???` stays */
function objectLabel (path: string): string {
  return path === '???' || path === '' ? '???' : basename(path)
}
