/**
 * A gateway over real (in-process) HTTP upstreams for the end-to-end hostile input tests, driven with
 * `app.inject()`: the whole plugin runs (cookie parsing, affinity hook, store, reply-from to a real upstream over
 * loopback), minus the socket between client and gateway, so thousands of cases fit a test file's time budget.
 * Every answer is checked the same way: never a 5xx (the upstreams are healthy), a 200 comes from a configured
 * upstream, and no header carries an upstream address or an oversized routing cookie.
 */
import type { FastifyInstance, FastifyServerOptions, LightMyRequestResponse } from 'fastify'
import type { Test } from 'tap'
import type { StickyPluginOptions, StickyRouteConfig } from '../../lib/index'
import { MAX_ROUTING_COOKIE_LENGTH } from '../../lib/affinity/routing-cookie'
import { startGateway } from '../support/gateway'
import { startUpstreams, type TestUpstream } from '../support/upstreams'

/** Routes of the hostile gateway: one per key kind. */
export const ROUTES = {
  cookie: '/c/*',
  header: '/h/*',
  query: '/q/*',
  ip: '/i/*',
  learn: '/l/*',
  list: '/m/*'
} as const

const ROUTE_CONFIG: Record<keyof typeof ROUTES, StickyRouteConfig> = {
  cookie: { key: 'cookie' },
  header: { key: { header: 'x-tenant' } },
  query: { key: { query: 'room' } },
  ip: { key: 'ip' },
  learn: { key: { learn: 'JSESSIONID' } },
  list: { key: [{ header: 'x-tenant' }, { query: 'room' }, 'ip', 'cookie'] }
}

/** A gateway and its upstreams. */
export interface HostileGateway {
  readonly app: FastifyInstance
  readonly url: string
  readonly upstreams: readonly TestUpstream[]
  /** Checks one answer; returns why it is wrong, or `undefined` when it is fine. */
  problem (response: LightMyRequestResponse, allowed?: readonly number[]): string | undefined
}

/** Starts the gateway (memory store unless `plugin.redis` is given). */
export async function startHostileGateway (t: Test, fastify: FastifyServerOptions = {}, plugin: Partial<StickyPluginOptions> = {}, upstreams?: TestUpstream[]): Promise<HostileGateway> {
  const ups = upstreams ?? await startUpstreams(t, ['a', 'b', 'c'])
  const { app, url } = await startGateway(t, {
    upstreams: ups,
    fastify: { logger: false, ...fastify },
    ...plugin,
    routes (app) {
      for (const [kind, path] of Object.entries(ROUTES)) {
        app.all(path, { config: { sticky: ROUTE_CONFIG[kind as keyof typeof ROUTES] } }, (_request, reply) => reply.forward())
      }
    }
  })
  const ids = new Set(ups.map((u) => u.id))
  const addresses = ups.flatMap((u) => [u.url, `127.0.0.1:${u.port}`, `:${u.port}`])
  return {
    app,
    url,
    upstreams: ups,
    problem (response, allowed = [200]) {
      if (response.statusCode >= 500) return `status ${response.statusCode}: ${response.body.slice(0, 200)}`
      if (!allowed.includes(response.statusCode)) return `status ${response.statusCode}: ${response.body.slice(0, 200)}`
      if (response.statusCode === 200) {
        const upstream = (JSON.parse(response.body) as { upstream?: string }).upstream
        if (upstream === undefined || !ids.has(upstream)) return `200 from an unknown upstream ${String(upstream)}`
      }
      for (const [name, value] of Object.entries(response.headers)) {
        for (const text of [value].flat()) {
          if (addresses.some((address) => String(text).includes(address))) return `header ${name} names an upstream: ${String(text)}`
        }
      }
      for (const [name, value] of setCookies(response)) {
        if (name.startsWith('sticky') && value.length > MAX_ROUTING_COOKIE_LENGTH) return `routing cookie of ${value.length} characters`
      }
      return undefined
    }
  }
}

// Name and (decoded) value of each Set-Cookie line; read by hand, as light-my-request's parser logs on odd lines.
function setCookies (response: LightMyRequestResponse): Array<[string, string]> {
  return [response.headers['set-cookie'] ?? []].flat().map((line) => {
    const pair = String(line).split(';')[0]
    const eq = pair.indexOf('=')
    let value = pair.slice(eq + 1)
    try { value = decodeURIComponent(value) } catch {}
    return [pair.slice(0, eq).trim(), value]
  })
}

/** @returns the routing cookie a response set, if any */
export function routingCookieOf (response: LightMyRequestResponse, name = 'sticky'): string | undefined {
  return setCookies(response).find(([n]) => n === name)?.[1]
}

/** @returns the upstream id a 200 answer came from */
export function upstreamOf (response: LightMyRequestResponse): string {
  return (JSON.parse(response.body) as { upstream: string }).upstream
}
