/**
 * A config file turned into what the gateway runs: the plugin's options (pools, store, cookie, admin …), the route
 * table, the DNS discovery of each `{ dns }` pool, health endpoints and shutdown bounds. Pools and routes are then
 * checked by the plugin's own validators, so a file and a `register` call are held to the same rules; their
 * messages are re-worded to name the file and the path in it.
 */
import { randomBytes } from 'node:crypto'
import { Resolver } from 'node:dns/promises'
import { InvalidOptionError, InvalidRouteConfigError } from '../errors'
import type { Duration, StickyPluginOptions, StickyPoolCookieOptions, StickyPoolOptions, StickyRouteConfig } from '../index'
import { resolveOptions, resolveRouteConfig, type ResolvedOptions } from '../options'
import { kMembersAtRunTime } from '../options/pool'
import { parseDuration } from '../duration'
import { GatewayConfigError, readConfigFile, scrub, type ConfigDocument } from './config-file'
import type { DiscoverySpec, GatewayFileSettings, GatewayRouteSpec, GatewaySettings } from './settings'
import { checkRouteMatch, type RouteMatch } from './route-table'

/** Default shutdown bound: in-flight requests get this long after SIGTERM. */
export const DEFAULT_SHUTDOWN_GRACE_MS = 10_000
/** Default time open WebSocket tunnels get to end by themselves after SIGTERM. */
export const DEFAULT_TUNNEL_GRACE_MS = 5_000
const DEFAULT_REFRESH_MIN_MS = 5_000
const DEFAULT_REFRESH_MAX_MS = 60_000
const PLUGIN_PASS_THROUGH = ['prefix', 'nearCache', 'newBindings', 'cookie', 'timeouts', 'websocket', 'xForwarded', 'reboundHeader', 'replayBodyLimit', 'maxBindings', 'handoff'] as const

type Doc = Record<string, any> // eslint-disable-line @typescript-eslint/no-explicit-any -- checked by the schema already

function ms (value: Duration | undefined, fallback: number): number {
  return value === undefined ? fallback : parseDuration(value) as number
}

// The cookie a route's sessionPersistence asks of its pool, and the route settings it stands for.
function persistence (file: string, at: string, input: Doc): { cookie?: StickyPoolCookieOptions, sticky: StickyRouteConfig } {
  const type = input.type ?? 'Cookie'
  const sticky: StickyRouteConfig = {
    ...(input.idleTimeout === undefined ? {} : { idleTimeout: input.idleTimeout }),
    ...(input.absoluteTimeout === undefined ? {} : { maxLifetime: input.absoluteTimeout })
  }
  if (type === 'Header') {
    const name = input.header?.name ?? input.sessionName
    if (name === undefined) throw new GatewayConfigError(`${file}: ${at}.header.name is required with type Header`)
    if (input.cookie !== undefined || input.cookieConfig !== undefined) throw new GatewayConfigError(`${file}: ${at}.cookie applies to type Cookie, not Header`)
    return { sticky: { ...sticky, key: { header: name } } }
  }
  if (input.header !== undefined) throw new GatewayConfigError(`${file}: ${at}.header applies to type Header, not Cookie`)
  const lifetime = input.cookie?.lifetimeType ?? input.cookieConfig?.lifetimeType ?? 'Session'
  if (lifetime === 'Permanent' && input.absoluteTimeout === undefined) {
    throw new GatewayConfigError(`${file}: ${at}.absoluteTimeout is required with lifetimeType Permanent (it is the cookie's Max-Age)`)
  }
  const name = input.cookie?.name ?? input.sessionName
  const cookie: StickyPoolCookieOptions = {
    ...(name === undefined ? {} : { name }),
    ...(input.cookie?.path === undefined ? {} : { path: input.cookie.path }),
    maxAge: lifetime === 'Permanent' ? input.absoluteTimeout : 0
  }
  return { cookie, sticky: { ...sticky, key: 'cookie' } }
}

function redisOf (data: Doc): StickyPluginOptions['redis'] {
  return data.redis
}

/**
 * Turns a checked config file into the gateway's settings, and runs the plugin's validators over them.
 * @throws GatewayConfigError naming the file and the dotted path
 */
export function gatewaySettingsFromConfig (doc: ConfigDocument): GatewaySettings {
  const file = doc.file
  const data = doc.data as Doc
  const fail = (message: string): never => { throw new GatewayConfigError(scrub(`${file}: ${message}`, doc.secrets)) }
  const poolNames = Object.keys(data.pools as Doc)

  const redis = redisOf(data)
  const secrets = data.secret === undefined ? [] : typeof data.secret === 'string' ? [data.secret] : data.secret as string[]
  const generatedSecret = secrets.length === 0
  if (generatedSecret && redis !== undefined) {
    fail('secret is required with redis: every gateway sharing the Redis needs the same secret (at least 32 characters; use ${STICKY_SECRET})')
  }
  if (generatedSecret) secrets.push(randomBytes(32).toString('base64url'))

  // Routes first: their sessionPersistence may set their pool's cookie.
  const poolCookies = new Map<string, { cookie: StickyPoolCookieOptions, by: string }>()
  const defaults = (data.defaults ?? {}) as StickyRouteConfig
  const routes: GatewayRouteSpec[] = (data.routes as Doc[]).map((route, i) => {
    const at = `routes[${i}]`
    const match = (route.match ?? {}) as RouteMatch
    const problem = checkRouteMatch(match)
    if (problem !== undefined) fail(`${at}.match ${problem}`)
    const pool = route.pool ?? (poolNames.length === 1 ? poolNames[0] : undefined)
    if (pool === undefined) fail(`${at}.pool is required when there is more than one pool (${poolNames.join(', ')})`)
    if (!poolNames.includes(pool)) fail(`${at}.pool must name one of the pools (${poolNames.join(', ')}), got ${JSON.stringify(pool)}`)
    let sticky: StickyRouteConfig
    if (route.sticky === false) {
      if (route.sessionPersistence !== undefined) fail(`${at}.sessionPersistence needs a sticky route (sticky is false)`)
      sticky = { ...defaults, pool, key: false }
    } else {
      sticky = { ...defaults, ...(typeof route.sticky === 'object' ? route.sticky as StickyRouteConfig : {}), pool }
      if (route.sessionPersistence !== undefined) {
        const carried = persistence(file, `${at}.sessionPersistence`, route.sessionPersistence as Doc)
        sticky = { ...sticky, ...carried.sticky }
        if (carried.cookie !== undefined) {
          const earlier = poolCookies.get(pool)
          if (earlier !== undefined && JSON.stringify(earlier.cookie) !== JSON.stringify(carried.cookie)) {
            fail(`${at}.sessionPersistence sets pool "${pool}"'s cookie otherwise than ${earlier.by} does: the routes of one pool share its routing cookie`)
          }
          poolCookies.set(pool, { cookie: carried.cookie, by: at })
        }
      }
    }
    return { name: typeof route.name === 'string' ? route.name : at, path: at, match, sticky }
  })

  const pools: Record<string, StickyPoolOptions> = {}
  const discovery: DiscoverySpec[] = []
  const staticUpstreams: Record<string, GatewayFileSettings['staticUpstreams'][string]> = {}
  for (const [name, input] of Object.entries(data.pools as Record<string, Doc>)) {
    const { upstreams, ...settings } = input
    const cookie = poolCookies.get(name)?.cookie
    const common = { ...settings, ...(cookie === undefined ? {} : { cookie }) } as Omit<StickyPoolOptions, 'upstreams'>
    if (Array.isArray(upstreams)) {
      pools[name] = { ...common, upstreams }
      staticUpstreams[name] = upstreams
      continue
    }
    const at = `pools.${name}.upstreams`
    const type = upstreams.type ?? 'A'
    if (type === 'A' && upstreams.port === undefined) fail(`${at}.port is required with type A (SRV records carry their own ports)`)
    const minRefreshMs = ms(upstreams.refresh?.min, DEFAULT_REFRESH_MIN_MS)
    const maxRefreshMs = ms(upstreams.refresh?.max, Math.max(DEFAULT_REFRESH_MAX_MS, minRefreshMs))
    if (maxRefreshMs < minRefreshMs) fail(`${at}.refresh.max must be at least refresh.min`)
    ;(upstreams.servers as string[] | undefined)?.forEach((server, i) => {
      // node:dns's own parser: what it takes here, it takes at start.
      try { new Resolver().setServers([server]) } catch { fail(`${at}.servers[${i}] must be an IP address or address:port ([v6]:port), got ${JSON.stringify(server)}`) }
    })
    discovery.push({ pool: name, name: upstreams.dns, type, port: upstreams.port, scheme: upstreams.scheme ?? 'http', minRefreshMs, maxRefreshMs, weight: upstreams.weight ?? 1, servers: upstreams.servers })
    pools[name] = { ...common, upstreams: [], [kMembersAtRunTime]: true } as StickyPoolOptions
  }

  const listen = (data.listen ?? {}) as Doc
  const admin = data.admin as Doc | undefined
  const health = data.health === false ? false : { livePath: '/livez', readyPath: '/readyz', requireToken: false, ...(data.health as Doc | undefined) }
  if (health !== false && health.requireToken && admin === undefined) fail('health.requireToken needs admin.token')
  if (health !== false && health.livePath === health.readyPath) fail('health.readyPath must differ from health.livePath')
  const shutdown = {
    graceMs: ms(data.shutdown?.grace, DEFAULT_SHUTDOWN_GRACE_MS),
    tunnelGraceMs: ms(data.shutdown?.tunnelGrace, Math.min(DEFAULT_TUNNEL_GRACE_MS, ms(data.shutdown?.grace, DEFAULT_SHUTDOWN_GRACE_MS)))
  }
  if (shutdown.tunnelGraceMs > shutdown.graceMs) fail('shutdown.tunnelGrace must be at most shutdown.grace')

  const plugin: StickyPluginOptions = {
    secret: secrets,
    pools,
    // No route of the command reads cookies: @fastify/cookie's hooks would be paid by every request for nothing.
    cookiePlugin: false,
    ...(redis === undefined ? {} : { redis }),
    ...(admin === undefined ? {} : { admin: { token: admin.token, ...(admin.prefix === undefined ? {} : { prefix: admin.prefix }), ...(admin.listen === undefined ? {} : { listen: admin.listen }) } }),
    ...(data.metrics === undefined ? {} : { metrics: data.metrics })
  }
  for (const key of PLUGIN_PASS_THROUGH) if (data[key] !== undefined) (plugin as unknown as Doc)[key] = data[key]

  // Defaults are checked as the plugin checks them (messages name `defaults.…`) but applied by each route, which
  // merged them above: the plugin's own defaults are fixed at register, and a reload must be able to change them.
  // A pool's cookie comes from a route's sessionPersistence (the file has no pools.<name>.cookie): say so.
  const failFromFile = (message: string): never => {
    const cookie = /^pools\.([^.]+)\.cookie\.(\w+) (.*)$/.exec(message)
    const by = cookie === null ? undefined : poolCookies.get(cookie[1])?.by
    return fail(by === undefined || cookie === null ? message : `${by}.sessionPersistence (pool "${cookie[1]}"'s cookie ${cookie[2]}) ${cookie[3]}`)
  }
  const resolved = checkPluginOptions(data.defaults === undefined ? plugin : { ...plugin, defaults: data.defaults }, failFromFile)
  for (const route of routes) {
    try {
      resolveRouteConfig(route.name, route.sticky, resolved)
    } catch (error) {
      if (!(error instanceof InvalidRouteConfigError)) throw error
      // "… on route <name>: config.sticky.key must …" → "routes[i].sticky.key must …"
      const detail = error.message.slice(error.message.indexOf(': config.sticky') + ': config.'.length)
      fail(`${route.path}.${detail}`)
    }
  }

  const host = typeof listen.host === 'string' ? listen.host : '127.0.0.1'
  const port = typeof listen.port === 'number' ? listen.port : 3000
  const adminListen = admin?.listen === undefined ? undefined : { host: admin.listen.host ?? '127.0.0.1', port: admin.listen.port as number }
  if (adminListen !== undefined && adminListen.port !== 0 && adminListen.port === port && adminListen.host === host) {
    fail('admin.listen.port must differ from listen.port (the admin API must not share the public listener)')
  }
  const restartOnly: Record<string, string> = {}
  // Everything but the routes, `defaults` and the pools' static upstream lists (compared below without them).
  for (const key of ['listen', 'trustProxy', 'logging', 'secret', 'redis', ...PLUGIN_PASS_THROUGH, 'admin', 'metrics', 'health', 'shutdown']) {
    restartOnly[key] = JSON.stringify(data[key] ?? null)
  }
  for (const [name, pool] of Object.entries(pools)) {
    const { upstreams, ...settings } = pool
    const dns = discovery.find((d) => d.pool === name)
    restartOnly[`pools.${name}`] = JSON.stringify({ settings, dns: dns ?? null, dynamic: upstreams.length === 0 && dns !== undefined })
  }
  restartOnly.pools = JSON.stringify(poolNames)

  return {
    host,
    port,
    trustProxy: data.trustProxy ?? false,
    logLevel: data.logging?.level ?? 'info',
    adminToken: admin?.token,
    adminListen,
    generatedSecret,
    plugin,
    file: {
      path: file,
      routes,
      discovery,
      staticUpstreams,
      health,
      shutdown,
      restartOnly
    }
  }
}

function checkPluginOptions (plugin: StickyPluginOptions, fail: (message: string) => never): ResolvedOptions {
  try {
    return resolveOptions(plugin)
  } catch (error) {
    if (!(error instanceof InvalidOptionError)) throw error
    // "fastify-sticky: invalid option: pools.shop.upstreams[1].url must …": the same path in the file.
    return fail(error.message.replace(/^fastify-sticky: invalid option: /, ''))
  }
}

/** Settings read from a config file. */
export type FileSettings = GatewaySettings & { readonly file: GatewayFileSettings }

/**
 * Reads and checks a config file into the gateway's settings.
 * @param path - the file (YAML, or JSON when it ends in `.json`)
 * @param env - where `${NAME}` references are read
 * @throws GatewayConfigError naming the file and the dotted path
 */
export function readGatewayConfig (path: string, env: NodeJS.ProcessEnv): FileSettings {
  return gatewaySettingsFromConfig(readConfigFile(path, env)) as FileSettings
}
