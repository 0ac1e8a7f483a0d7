/**
 * A runnable example or the `fastify-sticky` command started the way a user starts it (`npx tsx <file>`, or
 * `node dist/gateway/cli.js`, what the installed bin runs), with its output collected and waited on.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { join } from 'node:path'
import type { TeardownOwner } from './teardown-owner'

/** The compiled command (`pretest` builds dist/ when lib/ changed). */
export const GATEWAY_COMMAND = join(__dirname, '..', '..', 'dist', 'gateway', 'cli.js')

/** An example running in its own process. */
export interface ExampleProcess {
  readonly child: ChildProcess
  /** Everything it printed on stdout, and on stderr, so far. */
  output (): { readonly out: string, readonly err: string }
  /** Resolves with the first match of `re` in stdout so far or to come; rejects after 20 s, or when it exits first. */
  waitFor (re: RegExp): Promise<RegExpExecArray>
  /** Sends SIGINT (Ctrl-C) and resolves with its exit code. */
  interrupt (): Promise<number | null>
  /** Sends `signal` and resolves with its exit code (`null` when a signal ended it). */
  signal (signal: NodeJS.Signals): Promise<number | null>
  /** Resolves with its exit code once it exits by itself. */
  exited (): Promise<number | null>
}

/**
 * Starts `npx tsx <script>` from the project root with `env` added; ended at `t` teardown if still running
 * (SIGTERM, not SIGKILL: tsx passes it on to the process running the example).
 */
export function startExampleProcess (t: TeardownOwner, script: string, env: Record<string, string>): ExampleProcess {
  return startNodeProcess(t, [require.resolve('tsx/cli'), script], env)
}

/**
 * Starts the `fastify-sticky` command with `args`, `env` over the current environment (`PORT=0` and
 * `LOG_LEVEL=silent` unless given); ended at `t` teardown if still running (its workers follow their primary).
 */
export function startGatewayCommand (t: TeardownOwner, env: Record<string, string>, args: readonly string[] = []): ExampleProcess {
  return startNodeProcess(t, [GATEWAY_COMMAND, ...args], { PORT: '0', LOG_LEVEL: 'silent', ...env })
}

function startNodeProcess (t: TeardownOwner, argv: readonly string[], env: Record<string, string>): ExampleProcess {
  const child = spawn(process.execPath, argv, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  const pid = child.pid
  if (pid === undefined) throw new Error(`${argv.join(' ')} did not start`)
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) process.kill(pid, 'SIGTERM') })
  let out = ''
  let err = ''
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => { out += chunk })
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => { err += chunk })
  const waitFor = (re: RegExp): Promise<RegExpExecArray> => new Promise((resolve, reject) => {
    const done = (): void => {
      clearTimeout(timer)
      child.stdout?.off('data', look)
      child.off('exit', early)
    }
    const look = (): void => {
      const match = re.exec(out)
      if (match === null) return
      done()
      resolve(match)
    }
    const early = (): void => { done(); reject(new Error(`exited before ${re}: ${out}${err}`)) }
    const timer = setTimeout(() => { done(); reject(new Error(`no ${re} in: ${out}${err}`)) }, 20_000)
    child.stdout?.on('data', look)
    child.once('exit', early)
    look()
  })
  return {
    child,
    output: () => ({ out, err }),
    waitFor,
    interrupt: () => sendSignal('SIGINT'),
    signal: sendSignal,
    async exited () {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode
      const [code] = await once(child, 'exit')
      return code as number | null
    }
  }

  async function sendSignal (signal: NodeJS.Signals): Promise<number | null> {
    if (child.exitCode !== null || child.signalCode !== null) return child.exitCode
    const exited = once(child, 'exit')
    process.kill(pid as number, signal)
    const [code] = await exited
    return code as number | null
  }
}
