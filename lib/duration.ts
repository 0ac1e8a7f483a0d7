/** Durations as options take them: milliseconds as a number, or a string such as `'500ms'`, `'30s'`, `'30m'`, `'12h'`, `'1d'`. */
export type Duration = number | `${number}${'ms' | 's' | 'm' | 'h' | 'd'}`

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }
const DURATION_RE = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/

/**
 * Parses a {@link Duration} into whole milliseconds.
 * @param value - a number of milliseconds or a string with a unit
 * @returns the duration in ms, or `undefined` when the value is not a positive finite duration
 */
export function parseDuration (value: unknown): number | undefined {
  let ms: number
  if (typeof value === 'number') {
    ms = value
  } else if (typeof value === 'string') {
    const match = DURATION_RE.exec(value.trim())
    if (match === null) return undefined
    ms = Number(match[1]) * UNIT_MS[match[2]]
  } else {
    return undefined
  }
  if (!Number.isFinite(ms) || ms <= 0) return undefined
  return Math.round(ms)
}
