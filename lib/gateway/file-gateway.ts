/**
 * The gateway a config file describes: several pools and routes on one app, `/livez` and `/readyz`, DNS discovery
 * of `{ dns }` pools, and reload. A reload re-reads the file and changes routes and static upstream lists in place;
 * bindings, session counts, client connections and WebSocket tunnels are untouched, because the app, its store
 * and its listener stay the same. What cannot change in place (store, secret, listeners, pool settings) makes a
 * reload refuse the new file and keep the running one.
 */
import { Resolver } from 'node:dns/promises'
import type { FastifyInstance } from 'fastify'
import sticky from '../index'
import type { StickyReloadResult } from '../admin/admin-options'
import { bearerAuthHook } from '../admin/bearer-auth'
import { registrationOf } from '../fastify/plugin'
import { DnsDiscovery } from './dns-discovery'
import { createGatewayApp } from './gateway-app'
import { DISCOVERED_ID_RE, DiscoveredPool, discoveredUpstreamId } from './discovered-pool'
import { readGatewayConfig, type FileSettings } from './gateway-config'
import { GatewayRouter } from './gateway-router'
import { registerHealthRoutes, type ReadinessState } from './health-routes'
import { GatewayEnvError, type GatewayFileSettings } from './settings'

function resolverOf (servers: readonly string[]): Resolver {
  // As DnsDiscovery's default: a lookup must not hold a refresh for the system resolver's minute.
  const resolver = new Resolver({ timeout: 2_000, tries: 2 })
  resolver.setServers([...servers])
  return resolver
}

/** A built config-file gateway (not listening yet). */
export interface FileGateway {
  readonly app: FastifyInstance
  /** What `/readyz` reads; the server sets `listening` and `shuttingDown`. */
  readonly state: ReadinessState
  /** Re-reads the config file and applies it, or refuses it (the running config stays). Never throws. */
  reload (): Promise<StickyReloadResult>
  /** @returns WebSocket tunnels open now */
  openTunnels (): number
  /** Starts DNS discovery (after `listen`); resolves once every pool had its first answer (or failure). */
  startDiscovery (): Promise<void>
}



// A static pool's membership is the file's: missing upstreams are added (a removed one comes back), members the
// file no longer lists are removed (their sessions move on their next request, and the app is told). Discovered
// members are discovery's business.
async function reconcileStatic (app: FastifyInstance, file: GatewayFileSettings, changes: string[]): Promise<void> {
  for (const [name, wanted] of Object.entries(file.staticUpstreams)) {
    const pool = app.sticky.pool(name)
    const members = new Map(pool.upstreams.map((u) => [u.id, u]))
    for (const upstream of wanted) {
      if (members.has(upstream.id)) continue
      await pool.add(upstream)
      changes.push(`pools.${name}: added ${upstream.id}`)
    }
    const listed = new Set(wanted.map((u) => u.id))
    for (const id of members.keys()) {
      if (listed.has(id) || DISCOVERED_ID_RE.test(id)) continue
      await pool.remove(id)
      changes.push(`pools.${name}: removed ${id}`)
    }
  }
}

// What reconcileStatic cannot do in place: an upstream that keeps its id but changes its address or weight would
// silently send its bound sessions elsewhere (give it a new id instead).
function changedMembers (app: FastifyInstance, file: GatewayFileSettings): string | undefined {
  for (const [name, wanted] of Object.entries(file.staticUpstreams)) {
    const pool = app.sticky.pool(name)
    for (const upstream of wanted) {
      const member = pool.upstreams.find((u) => u.id === upstream.id)
      if (member === undefined) {
        // A member added at run time is shared through the store by its address and weight only.
        if (upstream.maxSessions !== undefined) return `pools.${name}: upstream ${upstream.id} is new and sets maxSessions, which only a restart applies`
        continue
      }
      if (member.url !== new URL(upstream.url).origin || member.weight !== (upstream.weight ?? 1) || member.maxSessions !== (upstream.maxSessions ?? Infinity)) {
        return `pools.${name}: upstream ${upstream.id} changed its url, weight or maxSessions; give it a new id (its sessions are bound to the old address) or restart`
      }
    }
  }
  return undefined
}

function restartNeeded (running: GatewayFileSettings, next: GatewayFileSettings): string | undefined {
  for (const key of new Set([...Object.keys(running.restartOnly), ...Object.keys(next.restartOnly)])) {
    if (running.restartOnly[key] !== next.restartOnly[key]) return `${key} changed, which needs a restart (bindings live in the store: a rolling restart keeps them)`
  }
  return undefined
}

/**
 * Builds the gateway of a config file (routes, health endpoints, the admin API's reload).
 * @param settings - from {@link readGatewayConfig}
 * @param env - where a reload reads `${ENV}` references
 */
export async function buildFileGateway (settings: FileSettings, env: NodeJS.ProcessEnv): Promise<FileGateway> {
  const app = createGatewayApp(settings)

  let running = settings.file
  const state: ReadinessState = { listening: false, shuttingDown: false }
  // Before the plugin's own preClose (which ends every tunnel): open WebSocket sessions get a grace period to end
  // by themselves, while new requests are already refused (503) and in-flight ones go on.
  app.addHook('preClose', async () => {
    const until = Date.now() + running.shutdown.tunnelGraceMs
    while (registration !== undefined && registration.openTunnels() > 0 && Date.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  })
  let reloading: Promise<StickyReloadResult> | undefined

  const applyReload = async (): Promise<StickyReloadResult> => {
    let next: FileSettings
    try {
      next = readGatewayConfig(running.path, env)
    } catch (error) {
      if (error instanceof GatewayEnvError) return { reloaded: false, reason: error.message }
      throw error
    }
    const refused = restartNeeded(running, next.file) ?? changedMembers(app, next.file)
    if (refused !== undefined) return { reloaded: false, reason: `${running.path}: ${refused}` }
    try {
      router.load(next.file.routes)
    } catch (error) {
      return { reloaded: false, reason: `${running.path}: ${(error as Error).message}` }
    }
    const changes: string[] = []
    if (JSON.stringify(next.file.routes) !== JSON.stringify(running.routes)) changes.push(`routes: ${next.file.routes.length}`)
    running = next.file
    try {
      await reconcileStatic(app, running, changes)
    } catch (error) {
      // The routes are in; a membership change the store did not take is retried by the next reload.
      app.log.warn({ err: error }, 'fastify-sticky: reload could not change every pool member')
      return { reloaded: true, changes: [...changes, 'some pool members could not be changed (store unavailable): reload again'] }
    }
    return { reloaded: true, changes }
  }
  const reload = async (): Promise<StickyReloadResult> => {
    // One at a time: two SIGHUPs in a row must not interleave their pool changes.
    const previous = reloading ?? Promise.resolve(undefined)
    const current = previous.then(applyReload, applyReload).then((result) => {
      if (result.reloaded) app.log.info({ changes: result.changes }, `fastify-sticky: reloaded ${running.path}`)
      else app.log.error({ reason: result.reason }, 'fastify-sticky: reload refused; the running configuration stays')
      return result
    }, (error: unknown) => {
      app.log.error({ err: error }, 'fastify-sticky: reload failed; the running configuration stays')
      return { reloaded: false, reason: 'reload failed (see the log)' }
    })
    reloading = current
    return current
  }

  const admin = settings.plugin.admin
  await app.register(sticky, admin === undefined ? settings.plugin : { ...settings.plugin, admin: { ...admin, reload } })
  const registration = registrationOf(app)
  if (registration === undefined) throw new TypeError('fastify-sticky did not register')
  const router = new GatewayRouter(registration)
  router.load(running.routes)

  const health = running.health
  if (health !== false) {
    registerHealthRoutes(app, health, state, health.requireToken && settings.adminToken !== undefined ? bearerAuthHook(settings.adminToken) : undefined)
  }
  app.route({
    method: app.supportedMethods,
    url: '/*',
    config: { sticky: false },
    onRequest: router.onRequest,
    preHandler: router.preHandler,
    onResponse: router.onResponse,
    handler: (_request, reply) => reply.forward()
  })
  app.addHook('onReady', async () => {
    // A gateway started during a store outage still starts (routing goes on degraded); the next reload retries.
    await reconcileStatic(app, running, []).catch((error: unknown) => {
      app.log.warn({ err: error }, 'fastify-sticky: could not bring every pool member in line with the config file')
    })
  })

  const discoveries: DnsDiscovery[] = []
  const sweeps: NodeJS.Timeout[] = []
  // Registered now: hooks cannot be added once the app listens, which is when discovery starts.
  app.addHook('onClose', async () => {
    for (const discovery of discoveries) discovery.stop()
    for (const sweep of sweeps) clearInterval(sweep)
  })
  const startDiscovery = async (): Promise<void> => {
    if (running.discovery.length === 0) return
    let salt = await app.sticky.store.sharedSalt()
    // A Redis that lost its data makes a new salt (and so new ids); the bindings went with the data anyway.
    app.sticky.store.onSaltChange((next) => { salt = next })
    await Promise.all(running.discovery.map(async (spec) => {
      const members = new DiscoveredPool(app.sticky.pool(spec.pool), (a) => discoveredUpstreamId(salt, spec.pool, a.address, a.port), app.log, {
        weight: spec.weight,
        // Another gateway's DNS may be a refresh or two ahead of ours: a member we never saw is given that long.
        unseenGraceMs: 2 * spec.maxRefreshMs + 15_000
      })
      const discovery = new DnsDiscovery({ ...spec, ...(spec.servers === undefined ? {} : { resolver: resolverOf(spec.servers) }) }, (addresses) => members.apply(addresses), app.log)
      discoveries.push(discovery)
      // A drained member whose last session ended is removed even when DNS has nothing new to say.
      const sweep = setInterval(() => { void members.sweep() }, Math.max(1000, spec.minRefreshMs))
      sweep.unref()
      sweeps.push(sweep)
      await discovery.start()
    }))
  }

  return { app, state, reload, openTunnels: () => registration.openTunnels(), startDiscovery }
}
