/**
 * Hostile input end to end, learn mode (`key: { learn: 'JSESSIONID' }`): real upstreams answer with arbitrary
 * Set-Cookie lines (any attributes, several lines, other cookies, deletions, oversized values, the characters Node
 * lets a server send), and the client then comes back with the app cookie as a browser would. 750 cases, each two
 * forwards (learn, then return), through a real gateway (app.inject): what fits the ~40 s per-file budget on two cores
 * with coverage on; `parseSetCookie` itself gets 10,000 cases per property in pure-inputs.test.ts.
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import fc from 'fast-check'
import t, { type Test } from 'tap'
import { trimOws } from '../../lib/affinity/cookie-text'
import { MAX_KEY_LENGTH } from '../../lib/affinity/keys'
import { parseSetCookie } from '../../lib/affinity/set-cookie'
import type { TestUpstream } from '../support/upstreams'
import { aroundLimit, headerValue, inBatches, sample, setCookieAttribute } from './arbitraries'
import { startHostileGateway, upstreamOf } from './hostile-gateway'

const CASES = 750
const CONCURRENCY = 16

// Upstreams that send back, as Set-Cookie, the lines listed (base64 JSON) in the request's x-set-cookie header.
async function cookieSettingUpstreams (t: Test, ids: string[]): Promise<TestUpstream[]> {
  const upstreams: TestUpstream[] = []
  for (const id of ids) {
    const server = http.createServer((req, res) => {
      req.resume()
      req.on('end', () => {
        const lines = req.headers['x-set-cookie']
        if (typeof lines === 'string') res.setHeader('set-cookie', JSON.parse(Buffer.from(lines, 'base64').toString('latin1')) as string[])
        res.setHeader('content-type', 'application/json')
        res.end(JSON.stringify({ upstream: id }))
      })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const { port } = server.address() as AddressInfo
    const upstream: TestUpstream = {
      id, port, url: `http://127.0.0.1:${port}`, hits: 0, server,
      close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) })
    }
    upstreams.push(upstream)
    t.teardown(() => upstream.close())
  }
  return upstreams
}

// What a browser sends back for a Set-Cookie value: the value as it was set (quotes and %-escapes included).
const appValue = fc.oneof(
  fc.stringMatching(/^[A-Za-z0-9_-]{8,40}$/),
  headerValue(60).map((v) => v.replace(/[;,\s"\\]/g, '')),
  aroundLimit(MAX_KEY_LENGTH),
  fc.constantFrom('', 'deleted', '""', '%', '%ZZ', '%41%42', 's%3Aabc.def', 'a=b', '__proto__')
)

const line = fc.oneof(
  fc.tuple(appValue, fc.array(setCookieAttribute, { maxLength: 5 })).map(([value, attributes]) => ['JSESSIONID=' + value, ...attributes].join('; ')),
  fc.tuple(fc.constantFrom('other', 'jsessionid', 'JSESSIONID2', ' JSESSIONID'), appValue).map(([name, value]) => `${name}=${value}`),
  headerValue(80).map((v) => v.replace(/^\s+/, 'x'))
)

t.test('learn mode against upstreams sending arbitrary Set-Cookie lines', async (t) => {
  const upstreams = await cookieSettingUpstreams(t, ['a', 'b', 'c'])
  const g = await startHostileGateway(t, {}, {}, upstreams)
  const seed = Date.now() % 1_000_000
  t.comment(`seed ${seed}`)
  const cases = sample(fc.array(line, { minLength: 1, maxLength: 4 }), CASES, seed)

  // The value each case teaches (the last JSESSIONID line that is not a deletion), and the key it is read as
  // (%-decoded); keys taught by more than one line are left out of the oracle, as concurrent cases would rebind them.
  const raw = (l: string): string => trimOws(l.split(';')[0].replace(/^[^=]*=/, ''))
  const counts = new Map<string, number>()
  const taught = cases.map((lines) => {
    let value: { raw: string, key: string } | undefined
    for (const l of lines) {
      const parsed = parseSetCookie(l, 'JSESSIONID')
      if (parsed === undefined) continue
      counts.set(parsed.value, (counts.get(parsed.value) ?? 0) + 1)
      value = parsed.deleted || Buffer.byteLength(parsed.value) > MAX_KEY_LENGTH ? undefined : { raw: raw(l), key: parsed.value }
    }
    return value
  })

  const problems: string[] = []
  let checked = 0
  await inBatches(cases, CONCURRENCY, async (lines, i) => {
    const learnt = await g.app.inject({ url: '/l/login', headers: { 'x-set-cookie': Buffer.from(JSON.stringify(lines), 'latin1').toString('base64') } })
    const problem = g.problem(learnt)
    if (problem !== undefined) {
      problems.push(`${problem} for ${JSON.stringify(lines).slice(0, 300)}`)
      return
    }
    const value = taught[i]?.raw
    if (value === undefined || counts.get(taught[i]?.key ?? '') !== 1) return
    // A browser sends back the bytes it got: Node writes header strings as UTF-8, and the gateway reads request
    // headers as latin1 (as undici reads the upstream's), so that is the string the gateway sees.
    const back = await g.app.inject({ url: '/l/cart', headers: { cookie: `JSESSIONID=${Buffer.from(value, 'utf8').toString('latin1')}` } })
    const backProblem = g.problem(back)
    if (backProblem !== undefined) {
      problems.push(`${backProblem} coming back with ${JSON.stringify(value)}`)
      return
    }
    checked++
    if (upstreamOf(back) !== upstreamOf(learnt)) problems.push(`JSESSIONID=${JSON.stringify(value).slice(0, 80)} learnt on ${upstreamOf(learnt)}, came back to ${upstreamOf(back)}`)
  })
  t.same(problems.slice(0, 5), [], `${CASES} responses with 1–4 Set-Cookie lines; ${checked} taught a unique value and its client came back to the same upstream`)
  t.ok(g.app.sticky.stats.learned > 0 && g.app.sticky.stats.invalidKey > 0, `learned ${g.app.sticky.stats.learned}, refused ${g.app.sticky.stats.invalidKey} oversized`)
})
