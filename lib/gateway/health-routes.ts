/**
 * `/livez` and `/readyz` of the gateway command, for orchestrators' probes: live while the process serves; ready
 * once it listens with its config loaded and every pool has an upstream that is up, and no longer once it is
 * shutting down (so traffic moves away before the listener closes). A store outage does not make the gateway
 * unready: routing goes on without Redis by design (docs/failure-handling.md), and the detail says so.
 */
import type { FastifyInstance, onRequestHookHandler } from 'fastify'
import type { StickyApi } from '../core/sticky-api'

/** The readiness answer's body. */
export interface ReadinessReport {
  readonly ready: boolean
  readonly listening: boolean
  readonly shuttingDown: boolean
  /** Per pool: members, and those up (active or draining, not down). */
  readonly pools: Readonly<Record<string, { readonly upstreams: number, readonly up: number }>>
  /** `connected`, or `outage` when the store did not answer within a second (routing goes on without it). */
  readonly store: 'connected' | 'outage'
}

/** What readiness reads besides `app.sticky`. */
export interface ReadinessState {
  listening: boolean
  shuttingDown: boolean
}

const STORE_PROBE_TIMEOUT_MS = 1_000

// A public endpoint must not turn each request into store work (16 scripts on Redis): one probe a second at most.
const STORE_PROBE_CACHE_MS = 1_000
const lastProbe = new WeakMap<StickyApi, { at: number, answer: Promise<boolean> }>()

function storeAnswersCached (api: StickyApi): Promise<boolean> {
  const now = Date.now()
  const last = lastProbe.get(api)
  if (last !== undefined && now - last.at < STORE_PROBE_CACHE_MS) return last.answer
  const answer = storeAnswers(api)
  lastProbe.set(api, { at: now, answer })
  return answer
}

async function storeAnswers (api: StickyApi): Promise<boolean> {
  const first = api.pools.keys().next().value
  if (first === undefined) return true
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<false>((resolve) => { timer = setTimeout(() => resolve(false), STORE_PROBE_TIMEOUT_MS) })
  try {
    return await Promise.race([api.sessionCounts(first).then(() => true, () => false), timeout])
  } finally {
    clearTimeout(timer)
  }
}

/**
 * @returns the readiness of the gateway `api` belongs to
 */
export async function readiness (api: StickyApi, state: ReadinessState): Promise<ReadinessReport> {
  const pools: Record<string, { upstreams: number, up: number }> = {}
  let everyPoolUp = true
  for (const [name, pool] of api.pools) {
    const up = pool.upstreams.filter((u) => { const s = pool.state(u.id); return s === 'active' || s === 'draining' }).length
    pools[name] = { upstreams: pool.upstreams.length, up }
    if (up === 0) everyPoolUp = false
  }
  const store = await storeAnswersCached(api) ? 'connected' : 'outage'
  return { ready: state.listening && !state.shuttingDown && everyPoolUp, listening: state.listening, shuttingDown: state.shuttingDown, pools, store }
}

/**
 * Adds the two probe routes (GET and HEAD), which no sticky route then takes.
 * @param auth - an `onRequest` hook in front of both (the admin token), when asked for
 */
export function registerHealthRoutes (app: FastifyInstance, paths: { livePath: string, readyPath: string }, state: ReadinessState, auth: onRequestHookHandler | undefined): void {
  const guard = auth === undefined ? {} : { onRequest: auth }
  // Probes every few seconds from every kubelet would drown the request log.
  const quiet = { logLevel: 'warn' as const, config: { sticky: false } }
  app.get(paths.livePath, { ...guard, ...quiet }, async (_request, reply) => reply.header('cache-control', 'no-store').send({ live: true }))
  app.get(paths.readyPath, { ...guard, ...quiet }, async (_request, reply) => {
    const report = await readiness(app.sticky, state)
    return reply.code(report.ready ? 200 : 503).header('cache-control', 'no-store').send(report)
  })
}
