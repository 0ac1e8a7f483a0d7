/**
 * Drains one upstream and waits until its sessions are gone, for a Kubernetes `preStop` hook of an upstream whose id
 * is known in advance (a static pool: `UPSTREAMS`, or an `upstreams:` list in the config file). Pools discovered
 * by DNS do not need it: a pod leaving DNS is drained by the gateways (README.md here).
 *
 *   REDIS_URL=redis://redis:6379 node --import tsx examples/kubernetes/drain-upstream.ts --pool shop --id shop-a --deadline 300
 *
 * Every gateway on the same Redis and prefix stops sending new sessions to the upstream within about a second;
 * its bound sessions keep reaching it until they end (idle timeout) or the deadline passes. Exit 0 when the count
 * reached 0, 3 when the deadline passed first, 2 on bad arguments.
 */
import { RedisBindingStore } from '../../lib/index'

/** What the drain waits for. */
export interface DrainOptions {
  readonly redis: string
  readonly prefix: string
  readonly pool: string
  readonly id: string
  readonly deadlineMs: number
  readonly pollMs: number
  /** Told the live count on every poll. */
  readonly onCount?: (count: number) => void
}

/**
 * Marks the upstream draining and polls its live session count.
 * @returns `true` when the count reached 0 before the deadline
 */
export async function drainUpstream (options: DrainOptions): Promise<boolean> {
  const store = new RedisBindingStore({ redis: options.redis, prefix: options.prefix, commandTimeoutMs: 2000 })
  try {
    await store.init()
    await store.setUpstreamState(options.pool, options.id, { admin: 'draining' })
    const deadline = Date.now() + options.deadlineMs
    for (;;) {
      const count = (await store.sessionCounts(options.pool, [options.id]))[options.id]
      options.onCount?.(count)
      if (count === 0) return true
      if (Date.now() >= deadline) return false
      await new Promise((resolve) => setTimeout(resolve, Math.min(options.pollMs, Math.max(0, deadline - Date.now()))))
    }
  } finally {
    await store.close()
  }
}

function argument (args: string[], name: string, fallback?: string): string {
  const at = args.indexOf(`--${name}`)
  const value = at >= 0 ? args[at + 1] : fallback
  if (value === undefined || value.startsWith('--')) {
    process.stderr.write(`drain-upstream: --${name} is required\n`)
    process.exit(2)
  }
  return value
}

if (require.main === module) {
  const args = process.argv.slice(2)
  const deadlineSeconds = Number(argument(args, 'deadline', '300'))
  const redis = process.env.REDIS_URL
  if (redis === undefined || !Number.isFinite(deadlineSeconds) || deadlineSeconds < 0) {
    process.stderr.write('drain-upstream: needs REDIS_URL and a --deadline in seconds\n')
    process.exit(2)
  }
  drainUpstream({
    redis,
    prefix: process.env.STICKY_PREFIX ?? 'sticky:',
    pool: argument(args, 'pool', 'default'),
    id: argument(args, 'id'),
    deadlineMs: deadlineSeconds * 1000,
    pollMs: 2000,
    onCount: (count) => { process.stdout.write(`drain-upstream: ${count} live sessions\n`) }
  }).then((drained) => process.exit(drained ? 0 : 3), (error: unknown) => {
    process.stderr.write(`drain-upstream: ${(error as Error).message}\n`)
    process.exit(1)
  })
}
