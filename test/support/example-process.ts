/**
 * A runnable example started the way a user starts it (`npx tsx <file>`), with its output collected and waited on.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import type { TeardownOwner } from './teardown-owner'

/** An example running in its own process. */
export interface ExampleProcess {
  readonly child: ChildProcess
  /** Everything it printed on stdout, and on stderr, so far. */
  output (): { readonly out: string, readonly err: string }
  /** Resolves with the first match of `re` in stdout so far or to come; rejects after 20 s, or when it exits first. */
  waitFor (re: RegExp): Promise<RegExpExecArray>
  /** Sends SIGINT (Ctrl-C) and resolves with its exit code. */
  interrupt (): Promise<number | null>
}

/**
 * Starts `npx tsx <script>` from the project root with `env` added; ended at `t` teardown if still running
 * (SIGTERM, not SIGKILL: tsx passes it on to the process running the example).
 */
export function startExampleProcess (t: TeardownOwner, script: string, env: Record<string, string>): ExampleProcess {
  const child = spawn(process.execPath, [require.resolve('tsx/cli'), script], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  const pid = child.pid
  if (pid === undefined) throw new Error(`${script} did not start`)
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
    async interrupt () {
      const exited = once(child, 'exit')
      process.kill(pid, 'SIGINT')
      const [code] = await exited
      return code as number | null
    }
  }
}
