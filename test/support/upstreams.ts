import http from 'node:http'
import type { AddressInfo } from 'node:net'
import type { TeardownOwner } from './teardown-owner'

/** A real HTTP upstream owned by one test (see {@link startUpstreams}). */
export interface TestUpstream {
  /** The id to configure in a pool (`{ id, url }`); echoed as `upstream` and `x-upstream-id`. */
  id: string
  /** `http://127.0.0.1:<port>` */
  url: string
  port: number
  /** Requests received so far (every method and path); tests may reset it to 0. */
  hits: number
  /** Closes all connections and the server; safe to call twice (teardown calls it too). */
  close(): Promise<void>
  server: http.Server
}

/** What every upstream answers, as JSON. */
export interface UpstreamEcho {
  upstream: string
  method: string
  url: string
  headers: http.IncomingHttpHeaders
  /** The request body as utf8, truncated at {@link MAX_ECHO_BODY_BYTES}. */
  body: string
}

/** Request bodies beyond this are read and dropped, not echoed. */
export const MAX_ECHO_BODY_BYTES = 1024 * 1024

// Matched at the end of the path, so they also work behind a gateway prefix (`/shop/status/503`).
const SET_COOKIE_PATH = /\/set-cookie\/([^/]+)\/([^/]+)$/
const STATUS_PATH = /\/status\/([2-5]\d\d)$/
const DELETE_COOKIE_PATH = /\/delete-cookie\/([^/]+)$/

/**
 * Starts one echo server per id on 127.0.0.1 (free ports), closed at `t` teardown.
 * Every request gets 200 JSON {@link UpstreamEcho} and `x-upstream-id: <id>`, except:
 * `.../set-cookie/<name>/<value>` also sends `Set-Cookie: <name>=<value>; Path=/`,
 * `.../status/<code>` (200-599) answers with that status (no body for 204/304).
 *
 * @param t - the test that owns the servers
 * @param ids - upstream ids, one server each
 * @defaultValue ids `['a', 'b', 'c']`
 * @returns the running upstreams, in `ids` order
 * @example
 * const [a, b] = await startUpstreams(t, ['a', 'b'])
 * const pools = { shop: { upstreams: [a, b].map(({ id, url }) => ({ id, url })) } }
 */
export async function startUpstreams (t: TeardownOwner, ids: string[] = ['a', 'b', 'c']): Promise<TestUpstream[]> {
  const upstreams: TestUpstream[] = []
  // Register teardown before listening, so servers started before a failure are closed too.
  t.teardown(() => Promise.all(upstreams.map((u) => u.close())))
  for (const id of ids) upstreams.push(await startUpstream(id))
  return upstreams
}

async function startUpstream (id: string): Promise<TestUpstream> {
  const server = http.createServer((req, res) => {
    upstream.hits++
    const chunks: Buffer[] = []
    let kept = 0
    req.on('data', (chunk: Buffer) => {
      if (kept >= MAX_ECHO_BODY_BYTES) return
      const part = chunk.subarray(0, MAX_ECHO_BODY_BYTES - kept)
      chunks.push(part)
      kept += part.length
    })
    req.on('error', () => res.destroy())
    req.on('end', () => {
      const path = (req.url ?? '/').split('?')[0]
      let status = 200
      const statusMatch = STATUS_PATH.exec(path)
      if (statusMatch !== null) status = Number(statusMatch[1])
      const cookieMatch = SET_COOKIE_PATH.exec(path)
      if (cookieMatch !== null) res.setHeader('set-cookie', `${cookieMatch[1]}=${cookieMatch[2]}; Path=/`)
      const deleteMatch = DELETE_COOKIE_PATH.exec(path)
      if (deleteMatch !== null) res.setHeader('set-cookie', `${deleteMatch[1]}=gone; Max-Age=0; Path=/`)

      res.setHeader('x-upstream-id', id)
      if (status === 204 || status === 304) {
        res.writeHead(status).end()
        return
      }
      const echo: UpstreamEcho = {
        upstream: id,
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8')
      }
      const payload = JSON.stringify(echo)
      res.writeHead(status, {
        'content-type': 'application/json; charset=utf-8',
        'content-length': Buffer.byteLength(payload)
      })
      res.end(payload)
    })
  })

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject)
      resolve()
    })
  })
  const { port } = server.address() as AddressInfo

  let closing: Promise<void> | undefined
  const upstream: TestUpstream = {
    id,
    url: `http://127.0.0.1:${port}`,
    port,
    hits: 0,
    server,
    close () {
      closing ??= new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      })
      return closing
    }
  }
  return upstream
}
