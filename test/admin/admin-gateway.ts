import { Writable } from 'node:stream'
import Fastify, { type FastifyInstance, type onRequestHookHandler } from 'fastify'
import { Registry } from 'prom-client'
import type { Test } from 'tap'
import { instrumentStore } from '../../lib/admin/instrumented-store'
import { StickyMetrics } from '../../lib/admin/metrics'
import { adminRoutes } from '../../lib/admin/routes'
import sticky, { MemoryBindingStore, RedisBindingStore, type BindingStore, type StickyPluginOptions } from '../../lib/index'
import { TEST_SECRET } from '../support/gateway'
import type { TestUpstream } from '../support/upstreams'

/** A token long enough for the admin API. */
export const ADMIN_TOKEN = 'admin-token-0123456789-abcdef'

/** A gateway with the admin API and metrics registered the way the plugin wires them. */
export interface AdminGateway {
  readonly app: FastifyInstance
  readonly url: string
  /** `${url}/_sticky` (or the prefix given). */
  readonly admin: string
  readonly metrics: StickyMetrics
  readonly registry: Registry
  /** Every log line the gateway wrote (level `trace`). */
  readonly logs: string[]
  /** `{ authorization: 'Bearer <token>' }` */
  readonly auth: Record<string, string>
}

/** Options of {@link startAdminGateway}. */
export interface StartAdminGatewayOptions extends Partial<StickyPluginOptions> {
  upstreams?: TestUpstream[]
  /** Redis URL to share bindings through (with `prefix`); in-memory store otherwise. */
  redisUrl?: string
  /** Wraps the raw store before it is instrumented (to make it fail, or race). */
  wrapStore?: (store: BindingStore) => BindingStore
  token?: string
  authHook?: onRequestHookHandler
  adminPrefix?: string
  /** Adds routes; by default every path is forwarded with `config.sticky: true`. */
  routes?: (app: FastifyInstance, metrics: StickyMetrics) => void
  /** Registers the admin API before the routes (default) or after them. */
  adminFirst?: boolean
}

/**
 * Starts a gateway on a free loopback port with the plugin, metrics (private registry, instrumented store, the
 * response hook on its sticky routes) and the admin API; closed at `t` teardown.
 */
export async function startAdminGateway (t: Test, options: StartAdminGatewayOptions): Promise<AdminGateway> {
  const { upstreams, redisUrl, wrapStore, token, authHook, adminPrefix, routes, adminFirst, ...plugin } = options
  const logs: string[] = []
  const app = Fastify({
    logger: {
      level: 'trace',
      stream: new Writable({ write (chunk, _encoding, done) { logs.push(String(chunk)); done() } })
    }
  })
  const registry = new Registry()
  const metrics = new StickyMetrics({ registry })
  const raw: BindingStore = redisUrl === undefined
    ? new MemoryBindingStore({})
    : new RedisBindingStore({ redis: redisUrl, prefix: plugin.prefix })
  t.teardown(async () => {
    await app.close()
    await raw.close()
  })
  const { prefix: _prefix, ...rest } = plugin
  await app.register(sticky, {
    secret: TEST_SECRET,
    pools: { shop: { upstreams: (upstreams ?? []).map((u) => ({ id: u.id, url: u.url })) } },
    store: instrumentStore(wrapStore === undefined ? raw : wrapStore(raw), metrics),
    ...rest
  })
  metrics.attach(app.sticky)
  const registerAdmin = async (): Promise<void> => {
    await app.register(adminRoutes, {
      ...(authHook === undefined ? { token: token ?? ADMIN_TOKEN } : { authHook }),
      ...(adminPrefix === undefined ? {} : { prefix: adminPrefix }),
      api: app.sticky,
      registry
    })
  }
  const addRoutes = (): void => {
    if (routes !== undefined) routes(app, metrics)
    else app.all('/*', { config: { sticky: true }, onResponse: metrics.responseHook('/*', 'shop') }, (_request, reply) => reply.forward())
  }
  if (adminFirst === false) {
    addRoutes()
    await registerAdmin()
  } else {
    await registerAdmin()
    addRoutes()
  }
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  return { app, url, admin: url + (adminPrefix ?? '/_sticky'), metrics, registry, logs, auth: { authorization: `Bearer ${token ?? ADMIN_TOKEN}` } }
}

/** One sample of a Prometheus text exposition. */
export interface Sample {
  readonly name: string
  readonly labels: Record<string, string>
  readonly value: number
}

/**
 * Parses the Prometheus text format (what `/metrics` serves) into samples; checks every line is a comment or a
 * well-formed sample.
 * @throws Error naming the first malformed line
 */
export function parsePrometheus (text: string): Sample[] {
  const samples: Sample[] = []
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (match === null) throw new Error(`not a Prometheus sample line: ${line}`)
    const labels: Record<string, string> = {}
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/g
    let label: RegExpExecArray | null
    while ((label = re.exec(match[2] ?? '')) !== null) labels[label[1]] = label[2].replace(/\\(.)/g, (_, c: string) => c === 'n' ? '\n' : c)
    samples.push({ name: match[1], labels, value: Number(match[3]) })
  }
  return samples
}

/**
 * @param filter - labels that must match
 * @returns the sum of the matching samples' values (0 when none match)
 */
export function sum (samples: readonly Sample[], name: string, filter: Record<string, string> = {}): number {
  return samples
    .filter((s) => s.name === name && Object.entries(filter).every(([k, v]) => s.labels[k] === v))
    .reduce((total, s) => total + s.value, 0)
}
