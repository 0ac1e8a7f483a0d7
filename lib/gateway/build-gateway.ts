/**
 * The gateway the `fastify-sticky` command serves: every path and method of the public port proxied, bodies
 * streamed unparsed, to the pool the settings name. Built here, listened on and stopped by {@link serveGateway}.
 */
import cluster from 'node:cluster'
import type { FastifyInstance } from 'fastify'
import sticky from '../index'
import { buildFileGateway } from './file-gateway'
import { createGatewayApp } from './gateway-app'
import { printStderr } from './messages'
import type { GatewaySettings } from './settings'

/** How long in-flight requests get to finish after SIGINT/SIGTERM, ms. */
export const SHUTDOWN_GRACE_MS = 10_000

/**
 * Builds the gateway (not listening yet).
 * @param settings - from {@link readGatewayEnv}
 */
export async function buildGateway (settings: GatewaySettings): Promise<FastifyInstance> {
  const app = createGatewayApp(settings)
  await app.register(sticky, settings.plugin)
  app.all('/*', { config: { sticky: true } }, (_request, reply) => reply.forward())
  return app
}

/** Where a started gateway listens. */
export interface Listening {
  readonly address: string
  /** The status page on the admin listener (`ADMIN_PORT`); `undefined` without one. */
  readonly admin: string | undefined
}

/**
 * Builds and starts the gateway in this process; stops it on SIGINT/SIGTERM (and, in a worker, when the primary
 * goes), exiting once in-flight requests are answered or the grace period ends. With a config file, SIGHUP
 * reloads it, `/readyz` turns 503 as shutdown starts, and DNS discovery starts once it listens.
 * @throws Error naming HOST/PORT or ADMIN_HOST/ADMIN_PORT when a listener cannot start
 */
export async function serveGateway (settings: GatewaySettings): Promise<Listening> {
  // SIGHUP's default is to end the process: a reload asked for while the gateway starts must not.
  let reload: (() => void) | undefined
  const onHangUp = (): void => { reload?.() }
  if (settings.file !== undefined) process.on('SIGHUP', onHangUp)
  const fileGateway = settings.file === undefined ? undefined : await buildFileGateway({ ...settings, file: settings.file }, process.env)
  const app = fileGateway?.app ?? await buildGateway(settings)
  const { listenError, adminError } = settings.file === undefined
    ? { listenError: 'HOST/PORT', adminError: 'ADMIN_HOST/ADMIN_PORT' }
    : { listenError: `${settings.file.path}: listen`, adminError: `${settings.file.path}: admin.listen` }
  const adminListen = settings.adminListen
  if (adminListen !== undefined) {
    // The admin listener starts as the app gets ready: its failure is ADMIN_HOST/ADMIN_PORT's, not HOST/PORT's.
    try {
      await app.ready()
    } catch (error) {
      await app.close().catch(() => {})
      const { message, cause } = error as Error
      if (!message.startsWith('fastify-sticky: admin.listen') || !(cause instanceof Error)) throw error
      throw new Error(`${adminError}: cannot listen on ${adminListen.host}:${adminListen.port} (${cause.message})`)
    }
  }
  let address: string
  try {
    address = await app.listen({ host: settings.host, port: settings.port })
  } catch (error) {
    await app.close().catch(() => {})
    throw new Error(`${listenError}: cannot listen on ${settings.host}:${settings.port} (${(error as Error).message})`)
  }
  let stopping = false
  const graceMs = settings.file?.shutdown.graceMs ?? SHUTDOWN_GRACE_MS
  const stop = (): void => {
    if (stopping) return
    stopping = true
    if (fileGateway !== undefined) fileGateway.state.shuttingDown = true
    // In-flight requests get a grace period, not the upstream timeouts (which may be a minute).
    setTimeout(() => {
      printStderr(`stopped after ${graceMs} ms with requests or tunnels still open (shutdown grace)`)
      process.exit(1)
    }, graceMs).unref()
    // A keep-alive connection whose request ends after close() began would hold the listener open until the
    // client's idle timeout: closed as soon as it is idle.
    setInterval(() => { app.server.closeIdleConnections() }, 100).unref()
    app.close().then(() => process.exit(0), () => process.exit(1))
  }
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
  if (fileGateway !== undefined) {
    fileGateway.state.listening = true
    reload = () => { void fileGateway.reload() }
    await fileGateway.startDiscovery()
  }
  // A worker whose primary is gone (even SIGKILLed) must not linger.
  if (cluster.isWorker) process.on('disconnect', stop)
  return { address, admin: app.sticky.admin?.url }
}
