/**
 * The benchmark's upstreams: one process, three tiny node:http servers on 127.0.0.1, each answering every
 * request with a 100-byte body and an `x-upstream-id` header (as in shared/PERF-ANCHORS.md).
 *
 * `GET /__bench/served` answers how many other requests that server has served, so the benchmark can count
 * proxied requests exactly (a load generator does not count the requests still in flight when it stops).
 *
 * Run: `node -r tsx/cjs bench/upstreams.ts`; prints one line `upstreams u1=http://...,u2=...,u3=...`.
 */
import { createServer, type Server } from 'node:http'

const IDS = ['u1', 'u2', 'u3']
const BODY_LENGTH = 100
/** Path of the served-requests counter (never forwarded by the benchmark's gateways). */
export const SERVED_PATH = '/__bench/served'

function startUpstream (id: string): Promise<{ server: Server, url: string }> {
  const body = Buffer.alloc(BODY_LENGTH, 'x')
  body.write(id + ' ', 0)
  let served = 0
  const server = createServer((req, res) => {
    if (req.url === SERVED_PATH) {
      res.end(String(served))
      return
    }
    served++
    // Drain any request body so keep-alive connections stay usable.
    req.resume()
    req.once('end', () => {
      res.writeHead(200, {
        'content-type': 'text/plain',
        'content-length': BODY_LENGTH,
        'x-upstream-id': id
      })
      res.end(body)
    })
  })
  server.keepAliveTimeout = 60_000
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      if (address === null || typeof address === 'string') {
        reject(new Error('upstream has no TCP address'))
        return
      }
      resolve({ server, url: `http://127.0.0.1:${address.port}` })
    })
  })
}

async function main (): Promise<void> {
  const started = await Promise.all(IDS.map(startUpstream))
  const stop = (): void => {
    for (const { server } of started) server.close()
    process.exit(0)
  }
  process.once('SIGTERM', stop)
  process.once('SIGINT', stop)
  console.log('upstreams ' + started.map(({ url }, i) => `${IDS[i]}=${url}`).join(','))
}

if (require.main === module) {
  main().catch((error: unknown) => {
    console.error(error)
    process.exit(1)
  })
}
