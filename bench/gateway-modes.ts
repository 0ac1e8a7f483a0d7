/**
 * The store setups and request paths a build comparison (`npm run bench:ab`, `npm run bench:ir`) runs a gateway
 * in, and the environment each gets.
 */
import { stickyGatewayEnv } from './processes'
import type { BenchRedis } from './redis'

/** The sticky gateway's store setups. */
export type Mode = 'memory' | 'redis' | 'near-cache'
/** Which request path the load takes. */
export type RequestPath = 'hit' | 'new'

/** Gateway environment per mode, on top of the common one (the near cache is on by default with Redis). */
const MODE_ENV: Readonly<Record<Mode, Readonly<Record<string, string>>>> = {
  memory: {},
  redis: { STICKY_NEAR_CACHE: 'off' },
  'near-cache': { STICKY_NEAR_CACHE: '10s' }
}

/**
 * The environment every gateway gets; variables of the caller's shell that would configure it are dropped.
 * @param secret - the routing cookie's secret for this comparison
 * @param redis - the comparison's Redis (redis and near-cache modes), else null
 */
export function gatewayEnv (mode: Mode, secret: string, redis: BenchRedis | null): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = {}
  for (const key of Object.keys(process.env)) {
    if (/^(STICKY_|REDIS_|ADMIN_)/.test(key) || ['TRUST_PROXY', 'WORKERS', 'NODE_OPTIONS'].includes(key)) env[key] = undefined
  }
  return {
    ...env,
    ...stickyGatewayEnv(secret),
    ...MODE_ENV[mode],
    ...(redis === null ? {} : { REDIS_URL: redis.url })
  }
}
