/**
 * Reading a gateway config file: YAML or JSON text → `${ENV}` interpolation → the published JSON Schema
 * (config.schema.json). Every error is one line naming the file, the dotted path and what was expected; values that
 * came from the environment are never printed back (they are secrets as often as not).
 */
import Ajv, { type ErrorObject, type ValidateFunction } from 'ajv'
import { readFileSync } from 'node:fs'
import { parseDocument } from 'yaml'
import schema from './config.schema.json'
import { GatewayEnvError } from './settings'

/** A config file the gateway cannot run with; its message is the one line the command prints. */
export class GatewayConfigError extends GatewayEnvError {}

/** A parsed, interpolated and schema-checked config file (its shape is config.schema.json's). */
export interface ConfigDocument {
  /** The file as named on the command line. */
  readonly file: string
  readonly data: Record<string, unknown>
  /** Every value taken from the environment, to scrub from any message that might quote it. */
  readonly secrets: readonly string[]
}

let validator: ValidateFunction | undefined

function validate (data: unknown): readonly ErrorObject[] {
  // Compiled on first use: `--help` and the environment gateway never pay for it.
  validator ??= new Ajv({ allErrors: true, strict: false, verbose: true }).compile(schema)
  return validator(data) ? [] : validator.errors ?? []
}

/** `a.b[0].c` from `/a/b/0/c`. */
function dotted (pointer: string): string {
  return pointer.split('/').slice(1).map((part) => part.replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce((path, part) => /^\d+$/.test(part) ? `${path}[${part}]` : path === '' ? part : `${path}.${part}`, '')
}

function depth (error: ErrorObject): number {
  const extra = error.keyword === 'additionalProperties' || error.keyword === 'required' ? 1 : 0
  return error.instancePath.split('/').length + extra
}

// At one depth, what says most: a string that fails its pattern (a bad duration) says more than "must be a number",
// the other alternative of the same value, and either says more than "not any of the accepted forms".
const KEYWORD_WEIGHT: Record<string, number> = { oneOf: 0, type: 1, const: 1 }

function describe (value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? value.slice(0, 60) + '…' : value)
  if (value === null || typeof value !== 'object') return String(value)
  return Array.isArray(value) ? 'a list' : 'a mapping'
}

function valueAt (data: unknown, pointer: string): unknown {
  let value = data
  for (const part of pointer.split('/').slice(1)) {
    if (value === null || typeof value !== 'object') return undefined
    value = (value as Record<string, unknown>)[part.replace(/~1/g, '/').replace(/~0/g, '~')]
  }
  return value
}

const TYPE_NAMES: Record<string, string> = { object: 'a mapping', array: 'a list', string: 'a string', integer: 'an integer', number: 'a number', boolean: 'true or false' }

// The deepest error is the one nearest the mistake: a bad upstream URL inside a list also fails the list's
// alternative (a `{ dns }` mapping), whose error sits one level up and says less.
function schemaMessage (errors: readonly ErrorObject[], data: unknown): string {
  const error = [...errors].sort((a, b) => depth(b) - depth(a) || (KEYWORD_WEIGHT[b.keyword] ?? 2) - (KEYWORD_WEIGHT[a.keyword] ?? 2))[0]
  const at = dotted(error.instancePath)
  const where = (path: string): string => path === '' ? 'the top level' : path
  const value = valueAt(data, error.instancePath)
  switch (error.keyword) {
    case 'additionalProperties': {
      const key = (error.params as { additionalProperty: string }).additionalProperty
      const known = Object.keys((error.parentSchema as { properties?: object }).properties ?? {}).filter((k) => k !== '$schema')
      return `${at === '' ? key : `${at}.${key}`} is not a known key (known at ${where(at)}: ${known.join(', ')})`
    }
    case 'required':
      return `${at === '' ? '' : `${at}.`}${(error.params as { missingProperty: string }).missingProperty} is required`
    case 'enum':
      return `${where(at)} must be one of ${(error.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(', ')}, got ${describe(value)}`
    case 'type':
      return `${where(at)} must be ${TYPE_NAMES[(error.params as { type: string }).type] ?? (error.params as { type: string }).type}, got ${describe(value)}`
    case 'pattern':
      return error.schemaPath.includes('duration')
        ? `${where(at)} must be a duration (milliseconds, or '500ms', '30s', '5m', '12h', '1d'), got ${describe(value)}`
        : `${where(at)} must match ${(error.params as { pattern: string }).pattern}, got ${describe(value)}`
    case 'oneOf': {
      const description = (error.parentSchema as { description?: string }).description
      return `${where(at)} is not any of the accepted forms${description === undefined ? '' : ` (${description})`}, got ${describe(value)}`
    }
    default:
      return `${where(at)} ${error.message ?? 'is invalid'}, got ${describe(value)}`
  }
}

const REFERENCE_RE = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\$\{/g

function interpolate (value: unknown, env: NodeJS.ProcessEnv, path: string, secrets: string[], file: string): unknown {
  if (typeof value === 'string') {
    const whole = /^\$\{[A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\}$/.test(value)
    const text = value.replace(REFERENCE_RE, (match, name: string | undefined, fallback: string | undefined) => {
      if (name === undefined) return '${' // `$${` writes a literal `${`
      const found = env[name]
      if (found !== undefined && found !== '') {
        secrets.push(found)
        return found
      }
      if (fallback !== undefined) return fallback
      throw new GatewayConfigError(`${file}: ${path === '' ? 'the top level' : path} uses \${${name}}, which is not set in the environment`)
    })
    // `port: ${PORT}` means a number, as if it had been written in the file.
    if (whole && /^-?\d+(\.\d+)?$/.test(text)) return Number(text)
    if (whole && (text === 'true' || text === 'false')) return text === 'true'
    return text
  }
  if (Array.isArray(value)) return value.map((item, i) => interpolate(item, env, `${path}[${i}]`, secrets, file))
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {}
    for (const [key, item] of Object.entries(value)) out[key] = interpolate(item, env, path === '' ? key : `${path}.${key}`, secrets, file)
    return out
  }
  return value
}

/**
 * Removes every value taken from the environment from a message.
 * @returns the message with each such value (4 characters or more) shown as `***`
 */
export function scrub (message: string, secrets: readonly string[]): string {
  let text = message
  for (const secret of secrets) {
    if (secret.length < 4) continue
    text = text.split(secret).join('***')
    // Messages quote long values cut short (60 or 80 characters, then '…'): the cut copy is as secret as the whole.
    for (const cut of SHOWN_LENGTHS) if (secret.length > cut) text = text.split(secret.slice(0, cut)).join('***')
  }
  return text
}

// Where the messages quoting a value cut it (this file's describe, the plugin's show, the environment gateway's).
const SHOWN_LENGTHS = [60, 80]

/**
 * Parses config text (JSON when the name ends in `.json`, else YAML), interpolates `${NAME}` and `${NAME:-default}`
 * from `env`, and checks it against the schema.
 * @param file - the file's name, for messages
 * @throws GatewayConfigError naming the file and the dotted path
 */
export function parseConfigText (file: string, text: string, env: NodeJS.ProcessEnv): ConfigDocument {
  let parsed: unknown
  if (file.endsWith('.json')) {
    try {
      parsed = JSON.parse(text)
    } catch (error) {
      throw new GatewayConfigError(`${file}: not valid JSON (${(error as Error).message})`)
    }
  } else {
    const document = parseDocument(text, { prettyErrors: true, uniqueKeys: true })
    const problem = document.errors[0]
    if (problem !== undefined) {
      const line = problem.linePos?.[0]
      throw new GatewayConfigError(`${file}${line === undefined ? '' : `:${line.line}:${line.col}`}: not valid YAML (${problem.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '')})`)
    }
    parsed = document.toJS({ maxAliasCount: 100 })
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new GatewayConfigError(`${file}: the top level must be a mapping (pools, routes, …), got ${describe(parsed)}`)
  }
  const secrets: string[] = []
  const data = interpolate(parsed, env, '', secrets, file) as Record<string, unknown>
  const errors = validate(data)
  if (errors.length > 0) throw new GatewayConfigError(scrub(`${file}: ${schemaMessage(errors, data)}`, secrets))
  return { file, data, secrets }
}

/**
 * Reads and checks a config file.
 * @throws GatewayConfigError when it cannot be read or is invalid
 */
export function readConfigFile (path: string, env: NodeJS.ProcessEnv): ConfigDocument {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (error) {
    throw new GatewayConfigError(`${path}: cannot read the config file (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`)
  }
  return parseConfigText(path, text, env)
}
