/**
 * Hostile request targets, over real sockets (inject() would normalise them through the URL parser first):
 * %-encoding valid and not, dot segments in every disguise, doubled slashes, absolute-form aimed at any host
 * (an upstream's own address included), asterisk- and authority-form. 1,000 origin-form and 500 absolute-form
 * targets, one connection each: what fits the ~40 s per-file budget on two cores with coverage on. Never a 5xx,
 * never an upstream request outside the chosen upstream, never a `..` segment reaching it.
 */
import net from 'node:net'
import fc from 'fast-check'
import t from 'tap'
import { headerChar, inBatches, originFormTarget, pathSegment, sample } from './arbitraries'
import { startHostileGateway } from './hostile-gateway'

const CASES = 1_000
const ABSOLUTE_CASES = 500
const CONCURRENCY = 16

interface RawAnswer { readonly status: number, readonly body: string, readonly head: string }

// Writes one request as raw bytes (latin1) and reads the whole answer (the server closes: Connection: close).
function rawRequest (port: number, target: string, method = 'GET'): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(Buffer.from(`${method} ${target} HTTP/1.1\r\nHost: gw.example\r\nConnection: close\r\n\r\n`, 'latin1')))
    const chunks: Buffer[] = []
    socket.setTimeout(10_000, () => socket.destroy(new Error(`no answer to ${JSON.stringify(target)}`)))
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.on('error', reject)
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString('latin1')
      const split = text.indexOf('\r\n\r\n')
      const head = split < 0 ? text : text.slice(0, split)
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0), head, body: split < 0 ? '' : text.slice(split + 4) })
    })
  })
}

// A `..` segment as an upstream sees it: decoded once, '/' as the separator. Double encoding (`%252e%252e`) and
// backslashes (`%5c..`) pass through as sent, like any proxy's; SECURITY.md says what that means for upstreams.
function dotSegment (path: string): boolean {
  let decoded = path
  try { decoded = decodeURIComponent(path) } catch {}
  return decoded.split('/').some((segment) => segment === '..')
}

t.test('hostile request targets over real sockets', async (t) => {
  const g = await startHostileGateway(t)
  const port = Number(new URL(g.url).port)
  const seed = Date.now() % 1_000_000
  t.comment(`seed ${seed}`)
  const ids = new Set(g.upstreams.map((u) => u.id))
  const routed = fc.tuple(fc.constantFrom('/c', '/h', '/q', '/i', '/m', ''), originFormTarget, fc.constantFrom('GET', 'POST', 'DELETE', 'OPTIONS', 'HEAD'))

  await t.test('origin-form', async (t) => {
    const problems: string[] = []
    const statuses = new Map<number, number>()
    let traversals = 0
    await inBatches(sample(routed, CASES, seed), CONCURRENCY, async ([prefix, target, method]) => {
      const full = prefix + target
      const answer = await rawRequest(port, full, method)
      statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1)
      if (answer.status >= 500 || answer.status === 0) {
        problems.push(`${method} ${full}: ${answer.status} ${answer.body.slice(0, 200)}`)
        return
      }
      if (dotSegment(full.split('?')[0])) traversals++
      if (answer.status !== 200 || method === 'HEAD') return
      const echo = JSON.parse(answer.body) as { upstream: string, url: string }
      if (!ids.has(echo.upstream)) problems.push(`${full}: answered by ${echo.upstream}`)
      if (dotSegment(echo.url.split('?')[0])) problems.push(`${full}: the upstream received a dot segment: ${echo.url}`)
    })
    t.same(problems.slice(0, 5), [], `${CASES} targets (${traversals} with a dot segment in some encoding); statuses ${JSON.stringify(Object.fromEntries(statuses))}`)
  })

  await t.test('absolute-form, asterisk-form, authority-form: refused, never forwarded elsewhere', async (t) => {
    const hosts = fc.oneof(fc.constantFrom(...g.upstreams.map((u) => `127.0.0.1:${u.port}`), 'evil.example', 'localhost', '[::1]', '169.254.169.254', 'gw.example'), fc.domain())
    const absolute = fc.tuple(fc.constantFrom('http', 'https', 'HTTP', 'ws', 'file', 'gopher'), hosts, fc.array(pathSegment, { maxLength: 4 }))
      .map(([scheme, host, segments]) => `${scheme}://${host}/${segments.join('/')}`)
    const odd = fc.oneof(absolute, fc.constantFrom('*', 'gw.example:443', '127.0.0.1:80', '//evil.example/x', '/\\evil.example', '\\\\evil.example\\x'), fc.string({ unit: headerChar, minLength: 1, maxLength: 30 }).map((s) => s.replace(/[\s]/g, '')).filter((s) => s !== ''))
    const problems: string[] = []
    const before = g.upstreams.map((u) => u.hits)
    let refused = 0
    await inBatches(sample(odd, ABSOLUTE_CASES, seed + 1), CONCURRENCY, async (target) => {
      const answer = await rawRequest(port, target)
      if (answer.status >= 500 || answer.status === 0) {
        problems.push(`${target}: ${answer.status} ${answer.body.slice(0, 200)}`)
        return
      }
      if (answer.status !== 200) {
        refused++
        return
      }
      // Accepted only as a path of the chosen upstream (e.g. `//evil.example/x`, which is a path).
      const echo = JSON.parse(answer.body) as { upstream: string, url: string }
      if (!ids.has(echo.upstream) || !echo.url.startsWith('/')) problems.push(`${target} forwarded as ${echo.url} to ${echo.upstream}`)
      if (/^[a-z]+:\/\//i.test(target)) problems.push(`absolute-form ${target} was forwarded`)
    })
    t.same(problems.slice(0, 5), [], `${ABSOLUTE_CASES} targets, ${refused} refused with a 4xx`)
    t.ok(g.upstreams.every((u, i) => u.hits - before[i] <= ABSOLUTE_CASES - refused), 'refused targets never reached an upstream')
  })
})
