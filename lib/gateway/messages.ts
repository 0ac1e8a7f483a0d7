/**
 * The lines the `fastify-sticky` command prints itself (not the request log): each goes through
 * {@link redactCredentials}, so a value echoed from the environment or from an error never shows a password.
 */
import { redactCredentials } from '../redact-credentials'
import type { GatewaySettings } from './env-settings'

/** Prints one `gateway: …` line on stderr. */
export function printStderr (message: string): void {
  process.stderr.write(`gateway: ${redactCredentials(message)}\n`)
}

/** The `gateway listening on …` line, printed once every worker listens: tests and scripts wait for it. */
export function printListening (address: string, settings: GatewaySettings, workers: number, admin: string | undefined): void {
  const store = settings.plugin.redis === undefined ? 'in-memory store' : 'Redis store'
  const adminApi = settings.adminToken === undefined
    ? ''
    : admin === undefined ? '; admin API and status page at /_sticky/ on this port' : `; admin API and status page at ${admin}`
  const detail = `${store}${workers > 1 ? `, ${workers} workers` : ''}${adminApi}${settings.generatedSecret ? `; random ${settings.file === undefined ? 'STICKY_SECRET' : 'secret'}: set one shared by all gateways` : ''}`
  process.stdout.write(`gateway listening on ${address} (${detail})\n`)
}

/**
 * Said at start (whatever LOG_LEVEL is) when the admin API shares the proxied applications' origin: kept for
 * existing deployments, but a script of any proxied page can then call it with a token it reads or phishes.
 */
export function warnSameOrigin (settings: GatewaySettings): void {
  if (settings.adminToken === undefined || settings.adminListen !== undefined) return
  printStderr('warning: the admin API and status page share the public port, the origin of every proxied application, ' +
    'whose pages\' scripts can then call it with a token they steal; set ADMIN_PORT to serve them on a listener of their own (loopback by default)')
}
