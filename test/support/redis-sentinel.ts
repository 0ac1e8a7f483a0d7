import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import type { TeardownOwner } from './teardown-owner'
import { freePort, pingRedis } from '../../scripts/loopback'
import { run } from './redis-cluster'
import { startRedis, type RedisServer } from './redis'

/** A master, a replica and sentinels monitoring them, all real processes owned by one test. */
export interface RedisSentinelSetup {
  /** The master group's name in the sentinels. */
  readonly name: string
  /** The server that is master at start. */
  readonly master: RedisServer
  /** Its replica at start (the one a failover promotes). */
  readonly replica: RedisServer
  /** `{ host: '127.0.0.1', port }` of every sentinel, for ioredis' `sentinels` option. */
  readonly sentinels: ReadonlyArray<{ host: string, port: number }>
  /** PIDs of the sentinel processes. */
  readonly sentinelPids: readonly number[]
  /** Asks the sentinels where the master is now. @returns its port */
  masterPort (): Promise<number>
  /**
   * Forces a failover (`SENTINEL FAILOVER`) and waits until the sentinels name the replica as master.
   * @returns how long it took, in ms
   */
  failover (timeoutMs?: number): Promise<number>
}

/** Options of {@link startRedisSentinel}. */
export interface StartRedisSentinelOptions {
  /** Number of sentinels (quorum: a majority of them). @defaultValue 1 */
  sentinels?: number
}

const NAME = 'sticky'

/**
 * Starts a Redis master and one replica (`startRedis`, so no persistence and killed by PID at teardown) and
 * `sentinels` sentinel processes on free loopback ports monitoring them. The sentinels run the Debian
 * `redis-sentinel` binary when it is installed (`scripts/ensure-redis.js` installs it), else `redis-server
 * --sentinel` (the same program). Resolves once every sentinel knows the replica, so a failover can pick it.
 * Teardown kills the sentinels by PID and removes their directory.
 *
 * @param t - the test that owns the processes
 * @returns the running setup
 * @throws Error when a process does not start, or the sentinels do not see the replica within 15 s
 */
export async function startRedisSentinel (t: TeardownOwner, options: StartRedisSentinelOptions = {}): Promise<RedisSentinelSetup> {
  const count = options.sentinels ?? 1
  const dir = await mkdtemp(path.join(os.tmpdir(), 'sticky-sentinel-'))
  const sentinels: SentinelProcess[] = []
  // Registered first, so it runs last (teardowns run last-in first-out): the servers stop before it.
  t.teardown(async () => {
    await Promise.all(sentinels.map((sentinel) => sentinel.stop()))
    await rm(dir, { recursive: true, force: true })
  })
  // Replication writes RDB files (a replica loads its full sync from disk): into the temporary directory, not the cwd.
  await Promise.all(['master', 'replica'].map((name) => mkdir(path.join(dir, name))))
  // A diskless full sync waits repl-diskless-sync-delay (5 s by default) for more replicas to join it; there is only
  // one. Both get 0, as the replica serves the old master's full sync after a failover.
  const sync = ['--repl-diskless-sync-delay', '0']
  const master = await startRedis(t, { args: ['--dir', path.join(dir, 'master'), ...sync] })
  const replica = await startRedis(t, { args: ['--dir', path.join(dir, 'replica'), ...sync, '--replicaof', '127.0.0.1', String(master.port)] })
  // Sentinels learn replicas from the master's INFO, sent when they connect and then every 10 s: start them once
  // the replica is attached, so they know it at once.
  await until(async () => /slave0:.*state=online/.test(await run('redis-cli', ['-p', String(master.port), 'info', 'replication'])),
    10_000, 'the replica did not attach to the master')
  const quorum = Math.floor(count / 2) + 1
  for (let i = 0; i < count; i++) {
    const port = await freePort()
    const file = path.join(dir, `sentinel-${i}.conf`)
    await writeFile(file, [
      `port ${port}`,
      'bind 127.0.0.1',
      'protected-mode no',
      `dir ${dir}`,
      `sentinel monitor ${NAME} 127.0.0.1 ${master.port} ${quorum}`,
      `sentinel down-after-milliseconds ${NAME} 1000`,
      `sentinel failover-timeout ${NAME} 10000`,
      `sentinel parallel-syncs ${NAME} 1`,
      ''
    ].join('\n'))
    sentinels.push(await spawnSentinel(file, port))
  }
  const ask = (sentinel: SentinelProcess, ...args: string[]): Promise<string> => run('redis-cli', ['-p', String(sentinel.port), ...args])
  for (const sentinel of sentinels) {
    await until(async () => {
      const replicas = await ask(sentinel, 'sentinel', 'replicas', NAME)
      return replicas.includes(String(replica.port)) && !/disconnected|s_down/.test(replicas)
    }, 15_000, `sentinel ${sentinel.port} did not see the replica`)
    if (count > 1) {
      await until(async () => /num-other-sentinels\n(\d+)/.exec(await ask(sentinel, 'sentinel', 'master', NAME))?.[1] === String(count - 1),
        15_000, `sentinel ${sentinel.port} did not see the other sentinels`)
    }
  }
  const masterPort = async (): Promise<number> => Number((await ask(sentinels[0], 'sentinel', 'get-master-addr-by-name', NAME)).trim().split('\n')[1])
  return {
    name: NAME,
    master,
    replica,
    sentinels: sentinels.map((sentinel) => ({ host: '127.0.0.1', port: sentinel.port })),
    sentinelPids: sentinels.map((sentinel) => sentinel.pid),
    masterPort,
    async failover (timeoutMs = 20_000) {
      const started = Date.now()
      const answer = await ask(sentinels[0], 'sentinel', 'failover', NAME)
      if (!/OK/.test(answer)) throw new Error(`SENTINEL FAILOVER answered: ${answer}`)
      await until(async () => (await masterPort()) === replica.port &&
        /role:master/.test(await run('redis-cli', ['-p', String(replica.port), 'info', 'replication'])), timeoutMs, 'the failover did not complete')
      return Date.now() - started
    }
  }
}

async function until (check: () => Promise<boolean>, timeoutMs: number, message: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    let ok = false
    try {
      ok = await check()
    } catch {}
    if (ok) return
    if (Date.now() > deadline) throw new Error(`${message} within ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

interface SentinelProcess {
  readonly port: number
  readonly pid: number
  stop (): Promise<void>
}

function sentinelCommand (): [string, string[]] {
  const probe = spawnSync('redis-sentinel', ['--version'], { stdio: 'ignore' })
  return probe.error === undefined && probe.status === 0 ? ['redis-sentinel', []] : ['redis-server', ['--sentinel']]
}

async function spawnSentinel (file: string, port: number): Promise<SentinelProcess> {
  const [command, extra] = sentinelCommand()
  const child = spawn(command, [file, ...extra], { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  const collect = (chunk: Buffer): void => { output = (output + chunk.toString('utf8')).slice(-8192) }
  child.stdout?.on('data', collect)
  child.stderr?.on('data', collect)
  const exited = new Promise<void>((resolve) => {
    child.once('error', () => resolve())
    child.once('exit', () => resolve())
  })
  const running = (): boolean => child.exitCode === null && child.signalCode === null && child.pid !== undefined
  if (child.pid !== undefined) track(child)
  const stop = async (): Promise<void> => {
    if (running()) {
      child.kill('SIGTERM')
      const timer = setTimeout(() => { if (running()) child.kill('SIGKILL') }, 1500)
      await exited
      clearTimeout(timer)
    }
    untrack(child)
  }
  const deadline = Date.now() + 5000
  while (!(await pingRedis(port))) {
    if (!running() || Date.now() > deadline) {
      await stop()
      throw new Error(`${command} ${file} did not answer PING on ${port}:\n${output}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  return { port, pid: child.pid as number, stop }
}


// If the test process dies before teardown (tap SIGKILLs a file that times out), the sentinels must not outlive
// it: an 'exit' hook kills them, and a small sh watchdog holding a pipe kills the PIDs it was told about once the
// pipe closes (as test/support/redis.ts does for redis-server).
const live = new Set<ChildProcess>()
let watchdog: ChildProcess | undefined
let exitHook = false

function track (child: ChildProcess): void {
  if (!exitHook) {
    exitHook = true
    process.once('exit', () => { for (const each of live) each.kill('SIGKILL') })
  }
  live.add(child)
  tell(`+${child.pid as number}`)
}

function untrack (child: ChildProcess): void {
  if (live.delete(child)) tell(`-${child.pid as number}`)
}

function tell (line: string): void {
  if (watchdog === undefined) {
    const script = 'set -f; p=; while IFS= read -r l; do case $l in +*) p="$p ${l#+}";; -*) n=; for x in $p; do [ "$x" = "${l#-}" ] || n="$n $x"; done; p=$n;; esac; done; [ -z "$p" ] || kill -9 $p 2>/dev/null; exit 0'
    watchdog = spawn('/bin/sh', ['-c', script], { stdio: ['pipe', 'ignore', 'ignore'] })
    watchdog.on('error', () => {})
    watchdog.stdin?.on('error', () => {})
    watchdog.unref()
    ;(watchdog.stdin as unknown as net.Socket | null)?.unref()
  }
  if (watchdog.stdin?.writable === true) watchdog.stdin.write(line + '\n')
}
