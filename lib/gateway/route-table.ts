/**
 * The gateway's routes as a table of its own, not Fastify routes: a reload swaps the whole table at once, while
 * Fastify's router is fixed once the app is ready. The most specific route wins, as in the Kubernetes Gateway API.
 */

/** What a request must have to take a route; an empty match takes every request. */
export interface RouteMatch {
  /** Path prefix in whole segments: `/shop` takes `/shop` and `/shop/cart`, not `/shopping`. */
  readonly prefix?: string
  /** An exact path, or a pattern with `:param` segments and a trailing `*`, e.g. `/api/:tenant/*`. */
  readonly path?: string
  /** A host name (the Host header without its port), or `*.example.com` for any subdomain. */
  readonly host?: string
  /** Methods it takes; all when left out. */
  readonly methods?: readonly string[]
}

/** One compiled route: its matcher and whatever the owner attaches to it. */
interface CompiledRoute<T> {
  readonly rank: readonly number[]
  readonly order: number
  readonly matches: (method: string, host: string, path: string) => boolean
  readonly payload: T
}

const PATH_KIND = { none: 0, prefix: 1, pattern: 2, exact: 3 } as const
const HOST_NAME_RE = /^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/

function escapeRegExp (text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

/** @returns a test of the request path, and its rank (kind, then how much it fixes) */
function compilePath (match: RouteMatch): { test: (path: string) => boolean, kind: number, weight: number } {
  if (match.path !== undefined) {
    const pattern = match.path
    if (!/[:*]/.test(pattern)) return { test: (path) => path === pattern, kind: PATH_KIND.exact, weight: pattern.length }
    const source = pattern.split('/').map((segment, i, all) => {
      if (segment === '*' && i === all.length - 1) return '.*'
      if (segment.startsWith(':')) return '[^/]+'
      return escapeRegExp(segment)
    }).join('/')
    const re = new RegExp(`^${source}$`)
    return { test: (path) => re.test(path), kind: PATH_KIND.pattern, weight: pattern.replace(/:[^/]+|\*/g, '').length }
  }
  if (match.prefix !== undefined) {
    const prefix = match.prefix.endsWith('/') && match.prefix.length > 1 ? match.prefix.slice(0, -1) : match.prefix
    if (prefix === '/') return { test: () => true, kind: PATH_KIND.prefix, weight: 1 }
    const below = prefix + '/'
    return { test: (path) => path === prefix || path.startsWith(below), kind: PATH_KIND.prefix, weight: prefix.length }
  }
  return { test: () => true, kind: PATH_KIND.none, weight: 0 }
}

function compileHost (host: string | undefined): { test: (host: string) => boolean, rank: number } {
  if (host === undefined) return { test: () => true, rank: 0 }
  const wanted = host.toLowerCase()
  if (wanted.startsWith('*.')) {
    const suffix = wanted.slice(1)
    return { test: (h) => h.endsWith(suffix) && h.length > suffix.length, rank: 1 }
  }
  return { test: (h) => h === wanted, rank: 2 }
}

/**
 * @returns whether a route match is well formed, or the reason it is not (for the config's error message)
 */
export function checkRouteMatch (match: RouteMatch): string | undefined {
  if (match.prefix !== undefined && match.path !== undefined) return 'takes prefix or path, not both'
  const path = match.path
  if (path !== undefined && path.split('/').some((segment, i, all) => segment.includes('*') && (segment !== '*' || i !== all.length - 1))) {
    return 'path may use * only as its whole last segment'
  }
  if (match.host !== undefined && !HOST_NAME_RE.test(match.host.startsWith('*.') ? match.host.slice(2) : match.host)) {
    return 'host must be a host name or *.domain'
  }
  return undefined
}

/** Routes by specificity, each carrying the owner's payload; immutable (a reload builds a new table). */
export class RouteTable<T> {
  readonly #routes: ReadonlyArray<CompiledRoute<T>>

  /** @param routes - in file order (the tie breaker) */
  constructor (routes: ReadonlyArray<{ readonly match: RouteMatch, readonly payload: T }>) {
    const compiled = routes.map(({ match, payload }, order): CompiledRoute<T> => {
      const path = compilePath(match)
      const host = compileHost(match.host)
      // As Fastify's own GET routes do: a route that takes GET takes HEAD.
      const methods = match.methods === undefined ? undefined : new Set(match.methods.includes('GET') ? [...match.methods, 'HEAD'] : match.methods)
      return {
        // A host beats none, an exact path a pattern, a pattern a prefix, a longer prefix a shorter, a method list all methods.
        rank: [host.rank, path.kind, path.weight, methods === undefined ? 0 : 1],
        order,
        payload,
        matches: (method, requestHost, requestPath) =>
          (methods === undefined || methods.has(method)) && host.test(requestHost) && path.test(requestPath)
      }
    })
    compiled.sort((a, b) => {
      for (let i = 0; i < a.rank.length; i++) if (a.rank[i] !== b.rank[i]) return b.rank[i] - a.rank[i]
      return a.order - b.order
    })
    this.#routes = compiled
  }

  /**
   * @param method - the request method
   * @param host - the request's host name, without port
   * @param url - the request URL (its query is ignored)
   * @returns the payload of the most specific route that takes the request, or `undefined`
   */
  find (method: string, host: string, url: string): T | undefined {
    const query = url.indexOf('?')
    const path = query < 0 ? url : url.slice(0, query)
    // A Host that is no host name (`evil.com/.example.com`) must not pass for a subdomain: it takes host-less routes only.
    const lowerHost = HOST_NAME_RE.test(host) ? host.toLowerCase() : ''
    for (const route of this.#routes) if (route.matches(method, lowerHost, path)) return route.payload
    return undefined
  }
}
