import type Redis from 'ioredis'

/** Commands a Redis server executed since the last reset, as `INFO commandstats` reports them. */
export interface CommandStats {
  /**
   * Every command call, those run inside Lua scripts included (an `EVALSHA` of the touch script counts 5: itself,
   * `TIME`, `GET`, `PEXPIRE`, `ZADD`): the strict figure.
   */
  readonly total: number
  /** Calls per command name (`get`, `pttl`, `evalsha`, `hgetall`…). */
  readonly byCommand: Readonly<Record<string, number>>
}

// The measuring client's own commands, and connection set-up chatter that is no part of routing.
const IGNORED = /^(info|config\|.*|client\|.*|hello|ping|select|command.*|cluster\|.*)$/

/**
 * Resets the server's command statistics (`CONFIG RESETSTAT`).
 * @param admin - a client of its own, not the store's
 */
export async function resetCommandStats (admin: Redis): Promise<void> {
  await admin.config('RESETSTAT')
}

/**
 * Reads `INFO commandstats` and sums the calls, leaving out the measuring client's own commands.
 * @param admin - a client of its own, not the store's
 */
export async function readCommandStats (admin: Redis): Promise<CommandStats> {
  const text = await admin.info('commandstats')
  const byCommand: Record<string, number> = {}
  let total = 0
  for (const match of text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    const name = match[1]
    if (IGNORED.test(name)) continue
    byCommand[name] = Number(match[2])
    total += Number(match[2])
  }
  return { total, byCommand }
}
