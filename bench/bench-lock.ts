/**
 * The machine-wide lock that keeps measurements from overlapping: `flock /tmp/bench.lock`, the file hand-run
 * measurements on this VM lock too. Two instruction-count runs at once moved each other's figures by ~4 %
 * (event-loop batching and which objects survive a scavenge depend on timing), so every measured run holds it.
 */
import { spawn } from 'node:child_process'
import { closeSync, openSync } from 'node:fs'

/** The lock file shared with hand-run measurements (`flock /tmp/bench.lock …`). */
export const BENCH_LOCK_PATH = '/tmp/bench.lock'

/** After this long without the lock, say who is waiting for what. */
const WAIT_NOTICE_MS = 1000

/**
 * Takes the lock, waiting as long as another holder keeps it.
 *
 * flock(1) locks a descriptor it inherits from this process: a flock(2) lock belongs to the open file, which this
 * process keeps open after flock(1) exits, so the lock is held until `release()` closes it, or until this process
 * dies (the kernel closes it then: no stale lock). Node opens files close-on-exec, so the processes started
 * while it is held do not inherit it.
 * @param log - where the waiting notice goes
 * @returns `release()`, which drops the lock (idempotent)
 * @throws when flock(1) is missing or fails
 */
export async function acquireBenchLock (log: (line: string) => void, path = BENCH_LOCK_PATH): Promise<() => void> {
  // Append mode: creates the file when missing, never truncates one a hand-run measurement holds.
  const fd = openSync(path, 'a')
  try {
    await new Promise<void>((resolve, reject) => {
      const child = spawn('flock', ['--exclusive', '3'], { stdio: ['ignore', 'ignore', 'pipe', fd] })
      let stderr = ''
      child.stderr?.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
      const notice = setTimeout(() => log(`  waiting for ${path} (another measurement holds it)`), WAIT_NOTICE_MS)
      child.once('error', (error) => {
        clearTimeout(notice)
        reject(new Error(`bench: flock (util-linux) is needed to lock ${path}: ${error.message}`))
      })
      child.once('exit', (code, signal) => {
        clearTimeout(notice)
        if (code === 0) resolve()
        else reject(new Error(`bench: flock ${path} failed (${signal ?? `exit ${code}`}): ${stderr.trim()}`))
      })
    })
  } catch (error) {
    closeSync(fd)
    throw error
  }
  let held = true
  return () => {
    if (!held) return
    held = false
    closeSync(fd)
  }
}
