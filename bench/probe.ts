/**
 * Sanity probes run before anything is measured (a gateway that does not route as expected stops the
 * benchmark with a clear message), and the HTTP requests that create bindings through a gateway.
 */
import { Agent, request } from 'node:http'
import { SERVED_PATH } from './upstreams'

/** One answer of a gateway, as far as the probes care. */
export interface ProbeAnswer {
  readonly status: number
  readonly upstreamId: string | undefined
  /** The value of the routing cookie set by this answer (`name=value`), if any. */
  readonly setCookie: string | undefined
}

/**
 * Sends one GET and reads the routing cookie `cookieName` from `Set-Cookie`.
 * @param cookie - a `name=value` pair to send, or undefined for none
 */
export async function probe (url: string, cookieName: string, cookie?: string, agent?: Agent): Promise<ProbeAnswer> {
  return await new Promise((resolve, reject) => {
    const req = request(url, { method: 'GET', agent: agent ?? false, headers: cookie === undefined ? {} : { cookie } }, (res) => {
      res.resume()
      res.once('end', () => {
        const setCookies = res.headers['set-cookie'] ?? []
        const ours = setCookies.map((each) => each.split(';')[0]).find((pair) => pair.startsWith(cookieName + '='))
        const upstream = res.headers['x-upstream-id']
        resolve({ status: res.statusCode ?? 0, upstreamId: Array.isArray(upstream) ? upstream[0] : upstream, setCookie: ours })
      })
    })
    req.setTimeout(5000, () => req.destroy(new Error(`probe of ${url} timed out`)))
    req.once('error', reject)
    req.end()
  })
}

/** Raised when a gateway does not behave as the benchmark requires. */
export class SanityError extends Error {}

/**
 * Plain gateway: three requests reach one upstream, 200, and no routing cookie is set.
 * @returns the upstream ids seen
 */
export async function checkPlain (url: string, cookieName: string): Promise<string[]> {
  const seen: string[] = []
  for (let i = 0; i < 3; i++) {
    const answer = await probe(url, cookieName)
    if (answer.status !== 200) throw new SanityError(`plain gateway ${url} answered ${answer.status}`)
    if (answer.setCookie !== undefined) throw new SanityError(`plain gateway ${url} set a routing cookie`)
    seen.push(answer.upstreamId ?? '?')
  }
  if (new Set(seen).size !== 1) throw new SanityError(`plain gateway ${url} reached several upstreams: ${seen.join(',')}`)
  return seen
}

/**
 * Hit path: a first request without a cookie gets a routing cookie; three requests with it reach the
 * upstream of the first answer.
 * @returns the cookie (`name=value`) and the upstream ids of the three requests
 */
export async function checkHitPath (url: string, cookieName: string): Promise<{ cookie: string, upstreams: string[], first: string }> {
  const first = await probe(url, cookieName)
  if (first.status !== 200) throw new SanityError(`sticky gateway ${url} answered ${first.status} to a first request`)
  if (first.setCookie === undefined) throw new SanityError(`sticky gateway ${url} set no "${cookieName}" cookie on a first request (is STICKY_COOKIE honoured?)`)
  const upstreams: string[] = []
  for (let i = 0; i < 3; i++) {
    const answer = await probe(url, cookieName, first.setCookie)
    if (answer.status !== 200) throw new SanityError(`sticky gateway ${url} answered ${answer.status} with its own cookie`)
    upstreams.push(answer.upstreamId ?? '?')
  }
  if (upstreams.some((id) => id !== first.upstreamId)) {
    throw new SanityError(`sticky gateway ${url} is not sticky: first answer from ${first.upstreamId}, then ${upstreams.join(',')}`)
  }
  return { cookie: first.setCookie, upstreams, first: first.upstreamId ?? '?' }
}

/**
 * New-session path: three requests without a cookie each get a new routing cookie.
 * @returns the upstream ids of the three answers
 */
export async function checkNewPath (url: string, cookieName: string): Promise<string[]> {
  const upstreams: string[] = []
  const cookies = new Set<string>()
  for (let i = 0; i < 3; i++) {
    const answer = await probe(url, cookieName)
    if (answer.status !== 200) throw new SanityError(`sticky gateway ${url} answered ${answer.status} to a request without cookie`)
    if (answer.setCookie === undefined) throw new SanityError(`sticky gateway ${url} set no "${cookieName}" cookie on request ${i + 1} without cookie`)
    cookies.add(answer.setCookie)
    upstreams.push(answer.upstreamId ?? '?')
  }
  if (cookies.size !== 3) throw new SanityError(`sticky gateway ${url} returned the same cookie twice to cookie-less requests`)
  return upstreams
}

/**
 * Creates `count` bindings through a gateway: requests without a cookie, `concurrency` at a time.
 * @throws when any answer is not a 200 with a routing cookie
 */
export async function bindThroughGateway (url: string, cookieName: string, count: number, concurrency = 16): Promise<void> {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency })
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < count) {
      next++
      const answer = await probe(url, cookieName, undefined, agent)
      if (answer.status !== 200 || answer.setCookie === undefined) {
        throw new SanityError(`creating bindings through ${url}: got ${answer.status}${answer.setCookie === undefined ? ' without cookie' : ''}`)
      }
    }
  }
  try {
    await Promise.all(Array.from({ length: concurrency }, worker))
  } finally {
    agent.destroy()
  }
}

/**
 * @param upstreamUrls - the upstream servers (not a gateway)
 * @returns how many requests they have served in all, from their `/__bench/served` counters
 */
export async function servedByUpstreams (upstreamUrls: readonly string[]): Promise<number> {
  const counts = await Promise.all(upstreamUrls.map((url) => new Promise<number>((resolve, reject) => {
    const req = request(url + SERVED_PATH, { agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { body += chunk })
      res.once('end', () => resolve(Number(body)))
    })
    req.setTimeout(5000, () => req.destroy(new Error(`served counter of ${url} timed out`)))
    req.once('error', reject)
    req.end()
  })))
  return counts.reduce((a, b) => a + b, 0)
}
