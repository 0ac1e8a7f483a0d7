/**
 * Where the admin routes are served: by the app itself under their prefix, or (`admin.listen`) only by a Fastify
 * instance of their own on another address, so that no proxied application shares their origin.
 */
import fastifyCookie from '@fastify/cookie'
import Fastify, { type FastifyInstance } from 'fastify'
import { setAdminListener, type StickyApi } from '../core/sticky-api'
import type { ResolvedAdminOptions } from './admin-options'
import { adminRoutes, type AdminRoutesOptions } from './routes'

/** What {@link serveAdmin} hands the admin routes besides the settings of `admin`. */
export type AdminServices = Omit<AdminRoutesOptions, 'prefix' | 'token' | 'authHook' | 'api'> & {
  /** `app.sticky`: the admin routes act on it, and `app.sticky.admin` tells where the admin listener listens. */
  readonly api: StickyApi
}

/**
 * Serves the admin API, the status page and the metrics. Without `admin.listen` they are routes of `fastify`.
 * With it they are not routes of `fastify` at all (there `/_sticky/...` is whatever the app makes of an unknown
 * path) but of a separate Fastify instance, with @fastify/cookie (a cookie-reading `authHook` works as on the app)
 * and the app's logger. It starts listening in `fastify`'s `onReady` hook, so before `listen()` resolves, and
 * closes in its `onClose`; meanwhile `app.sticky.admin` says where it listens, and the log says
 * `fastify-sticky: admin listening` with its `url`.
 * @param fastify - the app the plugin is registered on
 * @param admin - the resolved `admin` option
 * @param services - what the admin routes work with
 * @throws FST_STICKY_INVALID_OPTION as {@link adminRoutes} does
 * @throws Error from the app's `ready()` (and so `listen()`) when the admin listener cannot bind its address
 */
export async function serveAdmin (fastify: FastifyInstance, admin: ResolvedAdminOptions, services: AdminServices): Promise<void> {
  const routes: AdminRoutesOptions = {
    ...services,
    prefix: admin.prefix,
    ...(admin.reload === undefined ? {} : { reload: admin.reload }),
    ...(admin.authHook === undefined ? { token: admin.token } : { authHook: admin.authHook })
  }
  const listen = admin.listen
  if (listen === undefined) {
    await fastify.register(adminRoutes, routes)
    return
  }
  const server = Fastify({ loggerInstance: fastify.log.child({ listener: 'admin' }) })
  await server.register(fastifyCookie)
  await server.register(adminRoutes, routes)

  fastify.addHook('onReady', async function startAdminListener () {
    let address: string
    try {
      address = await server.listen({ host: listen.host, port: listen.port })
    } catch (error) {
      throw new Error(`fastify-sticky: admin.listen cannot listen on ${listen.host}:${listen.port} (${(error as Error).message})`, { cause: error })
    }
    const url = `${address}${admin.prefix}/`
    setAdminListener(services.api, { address, url })
    fastify.log.info({ url }, 'fastify-sticky: admin listening')
  })
  fastify.addHook('onClose', async function closeAdminListener () {
    setAdminListener(services.api, undefined)
    await server.close()
  })
}
