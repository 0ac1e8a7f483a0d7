/**
 * The checks every option validator shares: each failure throws FST_STICKY_INVALID_OPTION naming the dotted
 * option path, what it must be, and (briefly) what it was.
 */
import { parseDuration } from '../duration'
import { InvalidOptionError } from '../errors'
import { redactCredentials } from '../redact-credentials'

/** A short description of a bad value for an error message (URL credentials hidden, strings cut at 60 characters, objects never dumped). */
export function show (value: unknown): string {
  if (typeof value === 'string') {
    // Redacted before the cut: a cut could drop the '@' that marks the userinfo.
    const text = redactCredentials(value)
    return JSON.stringify(text.length > 60 ? text.slice(0, 60) + '…' : text)
  }
  if (typeof value === 'function') return 'a function'
  if (value === null || typeof value !== 'object') return String(value)
  return Array.isArray(value) ? 'an array' : 'an object'
}

/** @throws FST_STICKY_INVALID_OPTION: `<path> must be <expectation>, got <value>` */
export function fail (path: string, expectation: string, value: unknown): never {
  throw new InvalidOptionError(`${path} must be ${expectation}, got ${show(value)}`)
}

/** @returns whether the value is a plain object (not null, not an array) */
export function isRecord (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** Calls `onError` with the dotted path of the first key not in `allowed`. */
export function checkKeys (path: string, value: Record<string, unknown>, allowed: readonly string[], onError: (path: string, message: string) => never): void {
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) onError(path === '' ? key : `${path}.${key}`, `is not a known option (known: ${allowed.join(', ')})`)
  }
}

/** @returns the duration in ms (`fallback` when absent); fails on anything else */
export function duration (path: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback
  return parseDuration(value) ?? fail(path, "a positive duration (ms as a number, or a string like '30s', '30m', '12h')", value)
}

/** @returns the positive integer (`fallback` when absent); fails on anything else */
export function positiveInteger (path: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback
  if (!Number.isSafeInteger(value) || (value as number) < 1) fail(path, 'a positive integer', value)
  return value as number
}
