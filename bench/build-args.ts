/**
 * The command line of a two-build comparison (`bench:ab`, `bench:ir`): `--a <build> --b <build>`, options as
 * `--name value` or `--name=value`, flags without a value, and `--help`.
 */
import { BuildSpecError } from './builds'
import { SanityError } from './probe'

/** Thrown for a bad command line: printed with the usage, exit code 2. */
export class UsageError extends Error {}

/** The command line read, with typed access to its options. */
export interface BuildArgs {
  readonly a: string
  readonly b: string
  /** @returns whether the flag was given */
  flag (name: string): boolean
  /**
   * @returns the option's value, or `fallback` when it was not given
   * @throws UsageError when the value is not one of `allowed`
   */
  oneOf<T extends string> (name: string, allowed: readonly T[], fallback: T): T
  /**
   * @returns the option as a whole number, or `fallback` when it was not given
   * @throws UsageError when it is not a whole number from `min` to `max`
   */
  int (name: string, min: number, max: number, fallback: number): number
}

/**
 * Reads the command line; `--help` prints `usage` and exits.
 * @param known - the options that take a value (besides `--a` and `--b`) and the flags that take none
 * @throws UsageError naming the bad argument
 */
export function parseBuildArgs (argv: readonly string[], known: { readonly options: readonly string[], readonly flags: readonly string[], readonly usage: string }): BuildArgs {
  const values = new Map<string, string>()
  const flags = new Set<string>()
  const options = ['--a', '--b', ...known.options]
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (known.flags.includes(arg)) {
      flags.add(arg)
      continue
    }
    if (arg === '--help' || arg === '-h') {
      process.stdout.write(known.usage)
      process.exit(0)
    }
    const eq = arg.indexOf('=')
    const name = eq > 0 ? arg.slice(0, eq) : arg
    if (!options.includes(name)) throw new UsageError(`unknown argument ${JSON.stringify(arg.slice(0, 80))}`)
    const value = eq > 0 ? arg.slice(eq + 1) : argv[++i]
    if (value === undefined || value === '') throw new UsageError(`${name} needs a value`)
    values.set(name, value)
  }
  const a = values.get('--a')
  const b = values.get('--b')
  if (a === undefined || b === undefined) throw new UsageError('--a and --b are both required')
  return {
    a,
    b,
    flag: (name) => flags.has(name),
    oneOf<T extends string> (name: string, allowed: readonly T[], fallback: T): T {
      const raw = values.get(name)
      if (raw === undefined) return fallback
      if (!(allowed as readonly string[]).includes(raw)) throw new UsageError(`${name} must be ${allowed.join(', ')}; got ${JSON.stringify(raw)}`)
      return raw as T
    },
    int (name, min, max, fallback) {
      const raw = values.get(name)
      if (raw === undefined) return fallback
      const n = Number(raw)
      if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`${name} must be a whole number from ${min} to ${max}, got ${JSON.stringify(raw)}`)
      return n
    }
  }
}

/**
 * Writes why a comparison failed, as both commands do: a bad command line or build with the usage (exit code 2), a
 * failed sanity check or any other error with its stack (exit code 1).
 * @param label - the command's name, prefixed to its lines (`bench:ab`)
 * @returns the exit code
 */
export function reportFailure (label: string, usage: string, error: unknown): 1 | 2 {
  if (error instanceof UsageError || error instanceof BuildSpecError) {
    process.stderr.write(`${label}: ${error.message}\n\n${usage}`)
    return 2
  }
  process.stderr.write(`\n${error instanceof SanityError ? `${label}: SANITY CHECK FAILED: ` : ''}${(error as Error).stack ?? String(error)}\n`)
  return 1
}
