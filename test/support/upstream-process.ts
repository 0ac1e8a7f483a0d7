import type { ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import type { TeardownOwner } from './teardown-owner'
import { launchEchoUpstream } from '../../scripts/echo-upstream'

/** An upstream running in its own process (scripts/echo-upstream.ts), so a test can kill it the way a crash would. */
export interface UpstreamProcess {
  readonly id: string
  readonly url: string
  readonly port: number
  /** SIGKILLs the process (no goodbye to open connections) and waits for it to exit. */
  kill (): Promise<void>
  /** Starts it again on the same port. */
  restart (): Promise<void>
}

/** Starts upstream processes on free loopback ports; every one is killed in `t.teardown`. */
export async function startUpstreamProcesses (t: TeardownOwner, ids: string[]): Promise<UpstreamProcess[]> {
  const result: UpstreamProcess[] = []
  const children = new Set<ChildProcess>()
  t.teardown(async () => {
    await Promise.all([...children].map(async (child) => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL')
        await once(child, 'exit')
      }
    }))
  })
  const track = (child: ChildProcess): void => { children.add(child) }
  for (const id of ids) {
    let { child, port } = await launchEchoUpstream(id, 0, track)
    result.push({
      id,
      port,
      url: `http://127.0.0.1:${port}`,
      async kill () {
        if (child.exitCode !== null || child.signalCode !== null) return
        child.kill('SIGKILL')
        await once(child, 'exit')
      },
      async restart () {
        await this.kill()
        ;({ child } = await launchEchoUpstream(id, port, track))
      }
    })
  }
  return result
}
