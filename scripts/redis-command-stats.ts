/**
 * What a redis-server executed, from `INFO commandstats`: shared by the tests that count commands per request and
 * by the benchmark, so both count the same way. Counts are server-side, so the commands a Lua script runs are
 * counted too (an `EVALSHA` of the touch script counts 5: itself, `TIME`, `GET`, `PEXPIRE`, `ZADD`).
 */
import type Redis from 'ioredis'

/** Commands a Redis server executed since the last reset. */
export interface CommandStats {
  /** Every command call, those run inside Lua scripts included: the strict figure. */
  readonly total: number
  /** Calls per command name (`get`, `pttl`, `evalsha`, `hgetall`…). */
  readonly byCommand: Readonly<Record<string, number>>
  /** Server CPU time per command name, in µs (a script's includes its inner commands'). */
  readonly usecByCommand: Readonly<Record<string, number>>
  /** Key lookups (`keyspace_hits` + `keyspace_misses`): an `MGET` of ten keys counts ten. */
  readonly keyReads: number
}

// The measuring client's own commands, and connection set-up chatter that is no part of routing.
const IGNORED = /^(info|config|config\|.*|client\|.*|hello|ping|select|command.*|cluster\|.*)$/

/**
 * Zeroes the server's command statistics (`CONFIG RESETSTAT`).
 * @param admin - a client of its own, not the store's
 */
export async function resetCommandStats (admin: Redis): Promise<void> {
  await admin.config('RESETSTAT')
}

/**
 * Reads `INFO commandstats` (leaving out the measuring client's own commands) and the key lookups of `INFO stats`.
 * @param admin - a client of its own, not the store's
 */
export async function readCommandStats (admin: Redis): Promise<CommandStats> {
  const text = await admin.info('commandstats')
  const byCommand: Record<string, number> = {}
  const usecByCommand: Record<string, number> = {}
  let total = 0
  for (const match of text.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) {
    const name = match[1]
    if (IGNORED.test(name)) continue
    byCommand[name] = Number(match[2])
    usecByCommand[name] = Number(match[3])
    total += Number(match[2])
  }
  const stats = await admin.info('stats')
  const keyReads = Number(/^keyspace_hits:(\d+)/m.exec(stats)?.[1] ?? 0) + Number(/^keyspace_misses:(\d+)/m.exec(stats)?.[1] ?? 0)
  return { total, byCommand, usecByCommand, keyReads }
}
