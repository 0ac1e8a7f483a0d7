/**
 * The config file's routes on one Fastify catch-all route: each request is matched against the current
 * {@link RouteTable} and then runs that route's sticky hooks (resolved by the plugin, as `onRoute` would). A reload
 * swaps the table in one assignment, so a request sees the old table or the new one, never a mix.
 */
import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import type { StickyRegistration, StickyRouteHooks } from '../fastify/plugin'
import { RouteTable } from './route-table'
import type { GatewayRouteSpec } from './settings'

interface RouteEntry {
  readonly spec: GatewayRouteSpec
  readonly hooks: StickyRouteHooks
}

const kRoute = Symbol('fastify-sticky.gatewayRoute')

interface RoutedRequest extends FastifyRequest {
  [kRoute]?: RouteEntry
}

/** The 404 of a request no route takes (a short JSON body, like the gateway's other answers). */
const NO_ROUTE = Object.freeze({ statusCode: 404, code: 'FST_STICKY_NO_ROUTE', error: 'Not Found', message: 'no route of this gateway takes this request' })

/** Holds the route table and runs the matched route's hooks. */
export class GatewayRouter {
  readonly #registration: StickyRegistration
  #table: RouteTable<RouteEntry> = new RouteTable([])

  /** @param registration - the plugin's, from `registrationOf(app)` */
  constructor (registration: StickyRegistration) {
    this.#registration = registration
  }

  /**
   * Resolves every route and then makes them the current table (nothing changes when one fails).
   * @throws FST_STICKY_INVALID_ROUTE_CONFIG naming the route
   */
  load (routes: readonly GatewayRouteSpec[]): void {
    const entries = routes.map((spec) => {
      const hooks = this.#registration.routeHooks(spec.name, spec.sticky)
      // gateway-config.ts always names a pool, so a route never opts out.
      if (hooks === null) throw new TypeError(`route ${spec.name} resolved to no sticky route`)
      return { match: spec.match, payload: { spec, hooks } }
    })
    this.#table = new RouteTable(entries)
  }

  /** `onRequest` of the catch-all route: finds the route, then decides the upstream (the route's callback hook). */
  readonly onRequest = (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void => {
    const entry = this.#table.find(request.method, request.hostname, request.url)
    if (entry === undefined) {
      reply.code(404).send(NO_ROUTE)
      return
    }
    ;(request as RoutedRequest)[kRoute] = entry
    entry.hooks.onRequest.call(reply.server, request, reply, done)
  }

  /** `preHandler`: the matched route's (buffers a replayable body). */
  readonly preHandler = (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void => {
    const hook = (request as RoutedRequest)[kRoute]?.hooks.preHandler
    if (hook === undefined) {
      done()
      return
    }
    hook.call(reply.server, request, reply, done)
  }

  /** `onResponse`: the matched route's (metrics). */
  readonly onResponse = (request: FastifyRequest, reply: FastifyReply, done: () => void): void => {
    const hook = (request as RoutedRequest)[kRoute]?.hooks.onResponse
    if (hook === undefined) {
      done()
      return
    }
    hook.call(reply.server, request, reply, done)
  }
}
