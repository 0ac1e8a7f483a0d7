/**
 * V8's perf map (`node --perf-basic-prof` writes `/tmp/perf-<pid>.map`): which JIT code lies at which address, so
 * that the bare addresses callgrind reports for code without a symbol can be named.
 *
 * Each line is `<start hex> <size hex> <type>:<name>`, e.g. `3a1c0e41d2c0 1a4 JS:*decide /app/dist/core/sticky-core.js:104:20`.
 * V8 appends a line whenever it makes code (line-buffered: the file is current while the process runs) and never
 * removes one, so an address can be covered by several lines when code was freed and its space reused. The code a
 * window ran is the newest written before the window ended: code made later (the shutdown path compiles some) can
 * sit where the window's code was, so the map is read only up to its size at the window's end.
 */
import { closeSync, fstatSync, openSync, readSync, unlinkSync } from 'node:fs'

/** One code object of the map. */
export interface PerfMapEntry {
  readonly start: number
  readonly size: number
  /** As V8 wrote it: `JS:*decide /app/dist/core/sticky-core.js:104:20`, `RegExp:^[a-z]+$`, `Builtin:LoadIC`. */
  readonly name: string
  /** Line number in the map: later lines describe newer code. */
  readonly order: number
}

/** A perf map, ready to name addresses. */
export interface PerfMap {
  /**
   * @returns the newest code object covering `address`, or undefined when none does (code V8 does not list in
   *   the map, such as WebAssembly, or code made after the map was last written)
   */
  resolve (address: number): PerfMapEntry | undefined
  readonly entries: number
}

/** A process's perf map, held open from the process's start. */
export interface PerfMapFile {
  readonly path: string
  /** @returns its size now: where to read it up to for a window ending now */
  size (): number
  /**
   * Reads it.
   * @param upTo - its size when the window ended ({@link size}): later lines are left out
   */
  read (upTo?: number): PerfMap
  /**
   * @param from - its size when the window began
   * @param to - its size when the window ended
   * @returns the names of the code objects V8 made in between (`JS:*decide /app/dist/core/sticky-core.js:104:20`)
   */
  namesBetween (from: number, to: number): string[]
  /** Closes it and removes the file (idempotent). */
  discard (): void
}

/**
 * Opens the perf map of a running process. It is read through this descriptor, not by name: the file stays readable
 * if something removes its name meanwhile (a hand-run cleanup of /tmp/perf-*.map did, in the middle of a run).
 * @returns the open map, or null when the process has none (yet)
 */
export function openPerfMap (pid: number): PerfMapFile | null {
  const path = `/tmp/perf-${pid}.map`
  let fd: number | null
  try {
    fd = openSync(path, 'r')
  } catch {
    return null
  }
  const bytes = (from: number, to: number): string => {
    if (fd === null || to <= from) return ''
    const buffer = Buffer.alloc(to - from)
    const read = readSync(fd, buffer, 0, buffer.length, from)
    return buffer.subarray(0, read).toString('utf8')
  }
  const size = (): number => fd === null ? 0 : fstatSync(fd).size
  return {
    path,
    size,
    read: (upTo = Infinity) => parsePerfMap(bytes(0, Math.min(size(), upTo))),
    namesBetween (from: number, to: number): string[] {
      const names: string[] = []
      // Both sizes fall between lines (V8 writes the map a line at a time): every line here is whole.
      for (const line of bytes(from, to).split('\n')) {
        const second = line.indexOf(' ', line.indexOf(' ') + 1)
        if (second > 0) names.push(line.slice(second + 1))
      }
      return names
    },
    discard (): void {
      if (fd === null) return
      closeSync(fd)
      fd = null
      try { unlinkSync(path) } catch {}
    }
  }
}

/** @returns the map in `text`, ready to name addresses; a last line without its newline is left out */
function parsePerfMap (text: string): PerfMap {
  const entries: PerfMapEntry[] = []
  let order = 0
  for (const line of text.slice(0, text.lastIndexOf('\n') + 1).split('\n')) {
    const first = line.indexOf(' ')
    const second = line.indexOf(' ', first + 1)
    if (first <= 0 || second <= first) continue
    const start = parseInt(line.slice(0, first), 16)
    const size = parseInt(line.slice(first + 1, second), 16)
    if (!Number.isFinite(start) || !Number.isFinite(size) || size <= 0) continue
    entries.push({ start, size, name: line.slice(second + 1), order: order++ })
  }
  entries.sort((a, b) => a.start - b.start || a.order - b.order)
  const starts = entries.map((entry) => entry.start)
  const largest = entries.reduce((max, entry) => Math.max(max, entry.size), 0)

  return {
    entries: entries.length,
    resolve (address: number): PerfMapEntry | undefined {
      // The last entry starting at or before the address, then back over every entry that could still reach it.
      let low = 0
      let high = starts.length
      while (low < high) {
        const mid = (low + high) >>> 1
        if (starts[mid] <= address) low = mid + 1
        else high = mid
      }
      let best: PerfMapEntry | undefined
      for (let i = low - 1; i >= 0 && address - entries[i].start < largest; i--) {
        const entry = entries[i]
        if (address < entry.start + entry.size && (best === undefined || entry.order > best.order)) best = entry
      }
      return best
    }
  }
}

