/**
 * The opt-in admin API under a prefix (default `/_sticky`), in its own encapsulated context: upstreams and their
 * states, drain/undrain, Prometheus metrics, binding look-up/move/evict, and the status page. Every route but the
 * page (with token auth) needs the bearer token, or passes the user's own `onRequest` hook instead; without it
 * the answer is 401 and nothing else. Every route that changes something (drain, undrain, move, evict) also needs
 * proof that a script sent it, not a cross-site form or simple request riding on a browser's cookies: an
 * `x-sticky-admin` header or a JSON body; without either the answer is 403 `FST_STICKY_ADMIN_HEADER_REQUIRED`.
 * Admin routes carry no `config.sticky`: they are never sticky, never forwarded, and a catch-all under the prefix
 * keeps unknown admin paths from reaching a sticky `/*` route.
 */
import type {
  FastifyError, FastifyInstance, FastifyRequest, onRequestAsyncHookHandler, onRequestHookHandler
} from 'fastify'
import fp from 'fastify-plugin'
import type { Registry } from 'prom-client'
import type { StickyBindings, StickyBindingView } from '../core/bindings-api'
import type { UpstreamState } from '../pool/upstream-pool'
import type { StickyApi, StickyPool } from '../core/sticky-api'
import { AmbiguousBindingError, BindingChangedError } from '../errors'
import { resolveAdminOptions, type ResolvedAdminOptions, type StickyReloadResult } from './admin-options'
import { bearerAuthHook } from './bearer-auth'
import { renderStatusPage, sendStatusPage } from './status-page'

/** Largest request body the admin API reads (a move is `{"upstream":"<id>"}`). */
export const ADMIN_BODY_LIMIT = 1024

/**
 * The header (any value; the status page sends `1`) that, like a JSON body, lets a state-changing admin request
 * through. A browser sends neither cross-site without a CORS preflight, which the admin API never grants.
 */
export const ADMIN_REQUEST_HEADER = 'x-sticky-admin'

/** `code` of the 403 a state-changing admin request gets without {@link ADMIN_REQUEST_HEADER} or a JSON body. */
export const ADMIN_HEADER_REQUIRED_CODE = 'FST_STICKY_ADMIN_HEADER_REQUIRED'

/** What the admin API needs of `app.sticky`: it changes nothing the programmatic API could not. */
export interface AdminApi {
  readonly pools: ReadonlyMap<string, StickyPool>
  readonly bindings: StickyBindings
  readonly evacuate: StickyApi['evacuate']
  readonly rebalance: StickyApi['rebalance']
  readonly moveJobs: StickyApi['moveJobs']
  readonly moveJob: StickyApi['moveJob']
  readonly cancelMoveJob: StickyApi['cancelMoveJob']
}

/** Options of {@link adminRoutes}. */
export interface AdminRoutesOptions {
  /**
   * Path prefix of every admin route.
   * @defaultValue `'/_sticky'`
   */
  readonly prefix?: string
  /** Bearer token (at least 16 characters), compared in constant time. Give this or `authHook`. */
  readonly token?: string
  /** Your own `onRequest` hook, run before every admin route (the status page included) instead of the token check. */
  readonly authHook?: onRequestHookHandler | onRequestAsyncHookHandler
  /** The plugin's API (`app.sticky`). */
  readonly api: AdminApi
  /** The registry `/metrics` serves; without one, `/metrics` answers 404. */
  readonly registry?: Registry
  /** Called by `POST /reload`; without it, that route answers 404. */
  readonly reload?: () => Promise<StickyReloadResult>
}

/** One upstream, as `GET /upstreams` lists it. */
export interface AdminUpstreamView {
  readonly pool: string
  readonly id: string
  readonly url: string
  readonly state: UpstreamState
  /** Live sessions store-wide; `null` when the store could not be asked. */
  readonly sessions: number | null
  readonly weight: number
}

/** A binding, as `/bindings/:key` shows it: what `app.sticky.bindings.get()` returns. */
export type AdminBindingView = StickyBindingView

interface PoolQuery { pool?: string }
interface IdParams { id: string }
// A wildcard, not `:key`: routing cookie values hold `/` and `+`, and an operator pastes them as they are.
interface KeyParams { '*': string }
interface MoveBody { upstream: string }

/** An answer other than 2xx, carried to the error handler. */
class AdminAnswer extends Error {
  constructor (readonly statusCode: number, message: string, readonly extra: Record<string, unknown> = {}) {
    super(message)
  }
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request', 403: 'Forbidden', 404: 'Not Found', 409: 'Conflict', 413: 'Payload Too Large', 415: 'Unsupported Media Type', 422: 'Unprocessable Entity', 503: 'Service Unavailable'
}

// The media type without parameters: `application/json; charset=utf-8` is JSON, `text/plain` (what a form or a
// no-cors fetch may send) is not.
function isJsonContentType (contentType: string | undefined): boolean {
  if (contentType === undefined) return false
  const semicolon = contentType.indexOf(';')
  return (semicolon < 0 ? contentType : contentType.slice(0, semicolon)).trim().toLowerCase() === 'application/json'
}

/**
 * Runs after authentication on the routes that change state. An authHook that accepts a cookie (or any credential a
 * browser attaches by itself) would otherwise let any page the operator visits drain upstreams with a form post.
 */
function requireScriptedRequest (request: FastifyRequest, _reply: unknown, done: (error?: Error) => void): void {
  if (request.headers[ADMIN_REQUEST_HEADER] !== undefined || isJsonContentType(request.headers['content-type'])) {
    done()
    return
  }
  done(new AdminAnswer(403, `a request that changes state needs an ${ADMIN_REQUEST_HEADER} header or a JSON body (content-type: application/json)`, { code: ADMIN_HEADER_REQUIRED_CODE }))
}

async function adminRoutesPlugin (fastify: FastifyInstance, options: AdminRoutesOptions): Promise<void> {
  const { prefix } = resolveAdminOptions({ prefix: options.prefix, token: options.token, authHook: options.authHook }) as ResolvedAdminOptions
  const { api, registry } = options
  const auth = options.authHook ?? bearerAuthHook(options.token as string)
  const page = renderStatusPage(options.authHook === undefined ? 'token' : 'hook', registry !== undefined)

  await fastify.register(async function stickyAdmin (admin) {
    // Only JSON, and only small: this context does not inherit a gateway's pass-through body parsers.
    admin.removeAllContentTypeParsers()
    admin.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit: ADMIN_BODY_LIMIT }, (_request, body, done) => {
      try {
        done(null, body === '' ? undefined : JSON.parse(body as string))
      } catch {
        done(new AdminAnswer(400, 'the body is not valid JSON'), undefined)
      }
    })
    admin.addHook('onRequest', (_request, reply, done) => {
      reply.header('cache-control', 'no-store').header('x-content-type-options', 'nosniff')
      done()
    })
    admin.setErrorHandler((error: FastifyError | AdminAnswer, request, reply) => {
      const status = error.statusCode ?? 500
      if (status >= 500 && !(error instanceof AdminAnswer)) {
        request.log.error({ err: error }, 'fastify-sticky: admin request failed')
        return reply.code(500).send({ statusCode: 500, error: 'Internal Server Error', message: 'Internal Server Error' })
      }
      const extra = error instanceof AdminAnswer ? error.extra : {}
      return reply.code(status).send({ statusCode: status, error: STATUS_TEXT[status] ?? 'Error', message: error.message, ...extra })
    })

    const guarded = { onRequest: [auth as onRequestHookHandler] }
    // Authentication first: an unauthenticated request learns nothing but 401.
    const changing = { onRequest: [auth as onRequestHookHandler, requireScriptedRequest as onRequestHookHandler] }
    // Binding routes carry a cookie value in their path: keep Fastify's request logs (which print the URL) quiet.
    const quiet = { logLevel: 'warn' as const }
    // The app's logger, not the route's: these routes log at warn only, and a change must leave an audit line.
    const log = fastify.log

    admin.get('/', options.authHook === undefined ? {} : guarded, async (_request, reply) => sendStatusPage(reply, page))
    // The prefix itself answers only GET (and HEAD); other methods must not fall through to a sticky catch-all.
    admin.route({
      method: admin.supportedMethods.filter((method) => method !== 'GET' && method !== 'HEAD'),
      url: '/',
      ...guarded,
      handler: async () => { throw new AdminAnswer(404, 'no such admin route') }
    })

    admin.get('/upstreams', guarded, async () => listUpstreams(api))

    const setState = (action: 'drain' | 'undrain') => async (request: FastifyRequest<{ Params: IdParams, Querystring: PoolQuery }>): Promise<AdminUpstreamView> => {
      const pool = findUpstream(api, request.params.id, request.query.pool)
      try {
        await pool[action](request.params.id)
      } catch (error) {
        request.log.warn({ err: error }, `fastify-sticky: admin ${action} failed`)
        throw new AdminAnswer(503, 'the binding store did not take the change; try again')
      }
      return (await viewsOf(pool)).find((u) => u.id === request.params.id) as AdminUpstreamView
    }
    const poolQuery = { type: 'object', properties: { pool: { type: 'string', maxLength: 128 } } }
    admin.post<{ Params: IdParams, Querystring: PoolQuery }>('/upstreams/:id/drain', { ...changing, schema: { querystring: poolQuery } }, setState('drain'))
    admin.post<{ Params: IdParams, Querystring: PoolQuery }>('/upstreams/:id/undrain', { ...changing, schema: { querystring: poolQuery } }, setState('undrain'))

    admin.get('/metrics', guarded, async (_request, reply) => {
      if (registry === undefined) throw new AdminAnswer(404, 'metrics are not enabled')
      const text = await registry.metrics()
      return reply.header('content-type', registry.contentType).send(text)
    })

    // The path names a routing cookie value; the query, optionally, the pool to look in.
    const keyOf = (request: FastifyRequest<{ Params: KeyParams, Querystring: PoolQuery }>): [string, { pool?: string }] =>
      [request.params['*'], request.query.pool === undefined ? {} : { pool: request.query.pool }]
    admin.get<{ Params: KeyParams, Querystring: PoolQuery }>('/bindings/*', { ...guarded, ...quiet, schema: { querystring: poolQuery } }, async (request) => {
      const view = await bindingCall(request, async () => api.bindings.get(...keyOf(request)))
      if (view === null) throw new AdminAnswer(404, 'no binding for this key', { code: 'FST_STICKY_UNKNOWN_BINDING' })
      return view
    })
    admin.put<{ Params: KeyParams, Querystring: PoolQuery, Body: MoveBody }>('/bindings/*', {
      ...changing,
      ...quiet,
      schema: {
        querystring: poolQuery,
        body: { type: 'object', required: ['upstream'], properties: { upstream: { type: 'string', minLength: 1, maxLength: 64 } } }
      }
    }, async (request) => {
      const [key, lookup] = keyOf(request)
      const moved = await bindingCall(request, async () => api.bindings.move(key, request.body.upstream, lookup))
      log.info({ reqId: request.id, pool: moved.pool, keyId: moved.keyId, to: moved.upstream }, 'fastify-sticky: admin moved a binding')
      return moved
    })
    admin.delete<{ Params: KeyParams, Querystring: PoolQuery }>('/bindings/*', { ...changing, ...quiet, schema: { querystring: poolQuery } }, async (request, reply) => {
      const evicted = await bindingCall(request, async () => api.bindings.evict(...keyOf(request)))
      if (!evicted) throw new AdminAnswer(404, 'no binding for this key', { code: 'FST_STICKY_UNKNOWN_BINDING' })
      log.info({ reqId: request.id, pool: request.query.pool }, 'fastify-sticky: admin evicted a binding')
      return reply.code(204).send()
    })

    // Planned session moves: they answer 202 with the job, which runs on; GET /moves follows it, DELETE cancels it.
    const withoutState = (value: string | undefined): boolean => value === 'true' || value === '1'
    admin.post<{ Params: IdParams, Querystring: PoolQuery & { withoutState?: string } }>('/upstreams/:id/evacuate', {
      ...changing,
      schema: { querystring: { type: 'object', properties: { pool: { type: 'string', maxLength: 128 }, withoutState: { type: 'string', enum: ['true', 'false', '1', '0'] } } } }
    }, async (request, reply) => {
      const pool = findUpstream(api, request.params.id, request.query.pool)
      const job = api.evacuate(pool.name, request.params.id, { withoutState: withoutState(request.query.withoutState) })
      log.info({ reqId: request.id, job: job.id, pool: pool.name, upstream: request.params.id }, 'fastify-sticky: admin started an evacuation')
      return reply.code(202).send(job)
    })
    admin.post<{ Querystring: PoolQuery & { withoutState?: string, tolerance?: number } }>('/rebalance', {
      ...changing,
      schema: { querystring: { type: 'object', properties: { pool: { type: 'string', maxLength: 128 }, withoutState: { type: 'string', enum: ['true', 'false', '1', '0'] }, tolerance: { type: 'number', minimum: 0, maximum: 10 } } } }
    }, async (request, reply) => {
      const names = [...api.pools.keys()]
      const name = request.query.pool ?? (names.length === 1 ? names[0] : undefined)
      if (name === undefined || !api.pools.has(name)) throw new AdminAnswer(404, `name one pool with ?pool= (${names.join(', ')})`)
      const job = api.rebalance(name, { withoutState: withoutState(request.query.withoutState), ...(request.query.tolerance === undefined ? {} : { tolerance: request.query.tolerance }) })
      log.info({ reqId: request.id, job: job.id, pool: name }, 'fastify-sticky: admin started a rebalance')
      return reply.code(202).send(job)
    })
    admin.get('/moves', guarded, async () => api.moveJobs())
    admin.get<{ Params: { id: string } }>('/moves/:id', guarded, async (request) => {
      const job = api.moveJob(request.params.id)
      if (job === undefined) throw new AdminAnswer(404, 'no such evacuation or rebalance')
      return job
    })
    admin.delete<{ Params: { id: string } }>('/moves/:id', changing, async (request) => {
      if (!api.cancelMoveJob(request.params.id)) throw new AdminAnswer(404, 'no such running evacuation or rebalance')
      log.info({ reqId: request.id, job: request.params.id }, 'fastify-sticky: admin cancelled a move job')
      return api.moveJob(request.params.id)
    })

    const reload = options.reload
    admin.post('/reload', changing, async (request) => {
      if (reload === undefined) throw new AdminAnswer(404, 'this gateway has no configuration to reload')
      const result = await reload()
      log.info({ reqId: request.id, reloaded: result.reloaded, reason: result.reason }, 'fastify-sticky: admin reload')
      if (!result.reloaded) throw new AdminAnswer(422, result.reason ?? 'the new configuration was refused', { reloaded: false })
      return result
    })

    // Anything else under the prefix: 401 without auth, 404 with it; never a sticky catch-all's business.
    admin.all('/*', guarded, async () => { throw new AdminAnswer(404, 'no such admin route') })
  }, { prefix })
}

/**
 * Runs an `app.sticky.bindings` call, turning its coded errors into the admin API's answers (the status and the
 * message; the code, and what an operator needs to act, as extra fields).
 */
async function bindingCall<T> (request: FastifyRequest, call: () => Promise<T>): Promise<T> {
  try {
    return await call()
  } catch (error) {
    const { code, statusCode, message } = error as FastifyError
    if (typeof code !== 'string' || !code.startsWith('FST_STICKY_') || statusCode === undefined) throw error
    // The answer says only "try again"; why (the store's error) belongs in the log.
    if (statusCode >= 500) request.log.warn({ err: (error as Error).cause ?? error }, `fastify-sticky: admin binding request failed (${code})`)
    const extra: Record<string, unknown> = { code }
    if (error instanceof AmbiguousBindingError) extra.pools = error.pools
    if (error instanceof BindingChangedError) extra.upstream = error.upstream
    // The target of a move comes in the body: a member it is not is a bad request, not a missing resource.
    const status = code === 'FST_STICKY_UNKNOWN_UPSTREAM' ? 400 : statusCode
    throw new AdminAnswer(status, message.replace(/^fastify-sticky: /, ''), extra)
  }
}

/**
 * @param poolName - the `?pool=` the operator gave, if any
 * @returns the pool that has the upstream
 * @throws AdminAnswer 404 (unknown pool or upstream), 409 (the id is in several pools and no pool was given)
 */
function findUpstream (api: AdminApi, id: string, poolName: string | undefined): StickyPool {
  if (poolName !== undefined) {
    const pool = api.pools.get(poolName)
    if (pool === undefined) throw new AdminAnswer(404, `no pool "${poolName}"`)
    if (!hasMember(pool, id)) throw new AdminAnswer(404, `pool "${poolName}" has no upstream "${id}"`)
    return pool
  }
  const pools = [...api.pools.values()].filter((pool) => hasMember(pool, id))
  if (pools.length === 0) throw new AdminAnswer(404, `no upstream "${id}"`)
  if (pools.length > 1) {
    throw new AdminAnswer(409, `upstream "${id}" is in several pools (${pools.map((p) => p.name).join(', ')}): add ?pool=`, { pools: pools.map((p) => p.name) })
  }
  return pools[0]
}

function hasMember (pool: StickyPool, id: string): boolean {
  return pool.upstreams.some((u) => u.id === id)
}

async function viewsOf (pool: StickyPool): Promise<AdminUpstreamView[]> {
  let counts: Record<string, number> | undefined
  try {
    counts = await pool.sessionCounts()
  } catch {
    counts = undefined // shown as unknown; the state and the rest still help an operator during a store outage
  }
  return pool.upstreams.map((u) => ({
    pool: pool.name,
    id: u.id,
    url: u.url,
    state: pool.state(u.id),
    sessions: counts === undefined ? null : counts[u.id] ?? 0,
    weight: u.weight
  }))
}

/** @returns every upstream of every pool, with its state and live session count */
export async function listUpstreams (api: AdminApi): Promise<AdminUpstreamView[]> {
  return (await Promise.all([...api.pools.values()].map(viewsOf))).flat()
}

/**
 * The admin API as a Fastify plugin. It opens its own encapsulated context under `prefix` (Fastify's own
 * `prefix` register option is not used: the plugin is not encapsulated itself).
 * @throws FST_STICKY_INVALID_OPTION when the prefix is malformed, or neither (or both) of token and authHook is given
 * @example
 * await app.register(sticky, options)
 * await app.register(adminRoutes, {
 *   token: process.env.ADMIN_TOKEN,
 *   api: app.sticky
 * })
 */
export const adminRoutes = fp(adminRoutesPlugin, { fastify: '5.x', name: 'fastify-sticky-admin' })

export { DEFAULT_ADMIN_LISTEN_HOST, DEFAULT_ADMIN_PREFIX } from './admin-options'
