/**
 * The benchmark's own Redis servers (never a shared one): started on a free loopback port without
 * persistence, read through INFO, stopped by PID.
 */
import Redis from 'ioredis'
import { readCommandStats, resetCommandStats as resetServerStats } from '../scripts/redis-command-stats'
import { freePort, startProcess, type Started } from './processes'

/** A running redis-server and a client for reading its statistics. */
export interface BenchRedis {
  readonly name: string
  readonly url: string
  readonly proc: Started
  readonly client: Redis
}

// Commands the benchmark itself sends while measuring; never counted against the gateway.
/**
 * Starts `redis-server --save '' --appendonly no` on 127.0.0.1, pinned to `core`, and waits for PING.
 * @throws when it does not answer within a few seconds
 */
export async function startRedis (name: string, core: number | null): Promise<BenchRedis> {
  const port = await freePort()
  const { proc } = await startProcess({
    name,
    command: 'redis-server',
    args: ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--loglevel', 'warning'],
    core,
    readyLine: undefined
  })
  const url = `redis://127.0.0.1:${port}`
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: (n) => n > 50 ? null : 100 })
  client.on('error', () => {})
  const deadline = Date.now() + 5000
  for (;;) {
    try {
      if (client.status === 'wait') await client.connect()
      if (await client.ping() === 'PONG') break
    } catch (error) {
      if (Date.now() > deadline) throw new Error(`bench: ${name} (redis-server on port ${port}) did not answer PING: ${String(error)}\n  ${proc.tail.join('\n  ')}`)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }
  return { name, url, proc, client }
}

/** Zeroes the command counters (`CONFIG RESETSTAT`). */
export async function resetCommandStats (redis: BenchRedis): Promise<void> {
  await resetServerStats(redis.client)
}

/**
 * Calls per command since the last reset, from `INFO commandstats`, without the benchmark's own commands
 * (counted as the tests count them: commands run inside Lua scripts are counted too).
 */
export async function commandCounts (redis: BenchRedis): Promise<Record<string, CommandStat>> {
  const stats = await readCommandStats(redis.client)
  const counts: Record<string, CommandStat> = {}
  for (const [name, calls] of Object.entries(stats.byCommand)) counts[name] = { calls, usec: stats.usecByCommand[name] }
  return counts
}

/** Calls of one command and the Redis CPU time they took (µs; a script's time includes its inner commands'). */
export interface CommandStat {
  readonly calls: number
  readonly usec: number
}
