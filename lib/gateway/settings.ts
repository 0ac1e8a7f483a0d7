/**
 * What the gateway runs with, from the environment (env-settings.ts) or a config file (gateway-config.ts): a leaf
 * both build, and the rest of lib/gateway reads.
 */
import type { StickyPluginOptions, StickyRouteConfig } from '../index'
import type { DnsDiscovery, DnsDiscoveryOptions } from './dns-discovery'
import type { RouteMatch } from './route-table'

/** What the gateway runs with, parsed from the environment. */
export interface GatewaySettings {
  readonly host: string
  readonly port: number
  readonly trustProxy: boolean | number | string
  readonly logLevel: string
  readonly adminToken: string | undefined
  /**
   * `ADMIN_HOST`/`ADMIN_PORT`: the admin API's own listener; `undefined` (no `ADMIN_PORT`) serves the admin API on
   * the public port, the proxied applications' origin.
   */
  readonly adminListen: { readonly host: string, readonly port: number } | undefined
  /** `true` when no STICKY_SECRET was given and a random one was made (fine for one gateway only). */
  readonly generatedSecret: boolean
  readonly plugin: StickyPluginOptions
  /** What a config file adds (`--config`); `undefined` for the environment gateway. */
  readonly file?: GatewayFileSettings
}

/** A bad environment variable; its message is the one line the gateway prints. */
export class GatewayEnvError extends Error {}

/** One route of the file, ready for the route table. */
export interface GatewayRouteSpec {
  /** `name`, or `routes[i]`: in logs, metrics and messages. */
  readonly name: string
  /** Its place in the file, `routes[i]`, for messages. */
  readonly path: string
  readonly match: RouteMatch
  /** As a Fastify route's `config.sticky` (pool named; `key: false` for a stateless route). */
  readonly sticky: StickyRouteConfig
}

/** One pool whose upstreams come from DNS: what its {@link DnsDiscovery} resolves, and how its members are added. */
export interface DiscoverySpec extends Omit<DnsDiscoveryOptions, 'resolver'> {
  readonly pool: string
  /** The weight every discovered upstream gets. */
  readonly weight: number
  /** Name servers to ask instead of the system's. */
  readonly servers: readonly string[] | undefined
}

/** What a config file adds to the environment gateway's settings. */
export interface GatewayFileSettings {
  /** The file, as named on the command line (re-read on reload). */
  readonly path: string
  readonly routes: readonly GatewayRouteSpec[]
  readonly discovery: readonly DiscoverySpec[]
  /** Static upstream lists by pool (what a reload reconciles each pool's members with). */
  readonly staticUpstreams: Readonly<Record<string, ReadonlyArray<{ id: string, url: string, weight?: number, maxSessions?: number }>>>
  readonly health: false | { readonly livePath: string, readonly readyPath: string, readonly requireToken: boolean }
  readonly shutdown: { readonly graceMs: number, readonly tunnelGraceMs: number }
  /**
   * Everything a reload cannot change in place (store, secret, cookie, listeners, pool settings), as one string:
   * a reload whose file differs here is refused with the first difference named.
   */
  readonly restartOnly: Readonly<Record<string, string>>
}

