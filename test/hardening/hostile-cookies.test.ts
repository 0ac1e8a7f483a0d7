/**
 * Hostile input end to end, cookies: the routing cookie value, the Cookie header as a whole, and repeated routing
 * cookies, through a real gateway (app.inject) to real upstreams. 750 cases per input rather than the issue's
 * 10,000: one case is a full forward (~1.5 ms with 16 in flight on two cores), and the whole suite must stay within
 * 5 minutes on two cores; the pure functions behind these inputs get 10,000 each in pure-inputs.test.ts (and every
 * run draws a new seed, so the cases differ from run to run). A few hundred cases also go over a real socket, where Node's HTTP parser and
 * repeated Cookie header lines come into play.
 */
import fc from 'fast-check'
import t, { type Test } from 'tap'
import { request } from 'undici'
import { trimOws } from '../../lib/affinity/cookie-text'
import { createRoutingCookieCodec } from '../../lib/affinity/routing-cookie'
import { TEST_SECRET } from '../support/gateway'
import { aroundLimit, cookieHeader, headerValue, inBatches, mutationOf, sample } from './arbitraries'
import { routingCookieOf, startHostileGateway, upstreamOf } from './hostile-gateway'

const CASES = 750
const SOCKET_CASES = 300
const CONCURRENCY = 16
const MAX_CANDIDATES = 8
const codec = createRoutingCookieCodec([TEST_SECRET])

t.test('hostile cookies through a real gateway', async (t) => {
  const g = await startHostileGateway(t)
  // One valid routing cookie per upstream, as a browser would send it back (still URL-encoded).
  const valid = new Map<string, string>()
  for (let i = 0; i < 30 && valid.size < 3; i++) {
    const response = await g.app.inject({ url: '/c/login' })
    const raw = [response.headers['set-cookie']].flat()[0] as string
    valid.set(upstreamOf(response), raw.split(';')[0].slice('sticky='.length))
  }
  t.equal(valid.size, 3, 'a valid cookie for each upstream')
  const validList = [...valid.entries()]
  const seed = Date.now() % 1_000_000
  t.comment(`seed ${seed}`)

  // The upstream a request must reach: that of the first routing cookie in the header that verifies, if any. One
  // behind more than MAX_CANDIDATES routing cookies may also be ignored (the cap on the HMACs per request).
  const expected = (header: string): { upstream: string, optional: boolean } | undefined => {
    let candidates = 0
    for (const pair of header.split(';')) {
      const eq = pair.indexOf('=')
      // Trimmed as the Cookie parser trims: spaces and tabs only (a value ending in U+00A0 is another value).
      if (eq < 0 || trimOws(pair.slice(0, eq)) !== 'sticky') continue
      let value = trimOws(pair.slice(eq + 1))
      try { value = decodeURIComponent(value) } catch {}
      const check = codec.verify(value)
      if (check.ok) return { upstream: check.token.upstreamId, optional: candidates >= MAX_CANDIDATES }
      candidates++
    }
    return undefined
  }

  const timed = async (t: Test, label: string, headers: () => string[]): Promise<void> => {
    const t0 = Date.now()
    const list = headers()
    const t1 = Date.now()
    await run(t, label, list)
    t.comment(`${label}: generated in ${t1 - t0} ms, ran in ${Date.now() - t1} ms`)
  }
  const run = async (t: Test, label: string, headers: string[]): Promise<void> => {
    const problems: string[] = []
    let fresh = 0
    let kept = 0
    await inBatches(headers, CONCURRENCY, async (cookie) => {
      const response = await g.app.inject({ url: '/c/x', headers: { cookie } })
      const problem = g.problem(response, [200, 431])
      if (problem !== undefined) {
        problems.push(`${problem} for ${JSON.stringify(cookie).slice(0, 300)}`)
        return
      }
      // 431: the upstream's own answer to an app cookie over its 16 KiB header limit (the routing cookie is stripped).
      if (response.statusCode === 431) return
      const want = expected(cookie)
      const issued = routingCookieOf(response)
      if (want !== undefined && !(want.optional && issued !== undefined)) {
        kept++
        if (upstreamOf(response) !== want.upstream || issued !== undefined) problems.push(`valid cookie for ${want.upstream} not honoured (${upstreamOf(response)}, new cookie: ${String(issued)}) in ${JSON.stringify(cookie).slice(0, 300)}`)
      } else {
        fresh++
        if (issued === undefined || !codec.verify(issued).ok) problems.push(`no fresh routing cookie for ${JSON.stringify(cookie).slice(0, 300)}`)
      }
    })
    t.same(problems.slice(0, 5), [], `${label}: ${headers.length} cases, ${kept} honoured a valid cookie, ${fresh} got a fresh binding`)
  }

  const junkValue = fc.oneof(
    headerValue(300),
    aroundLimit(256),
    fc.constantFrom(...validList.map(([, v]) => v)).chain((v) => mutationOf(v)),
    fc.constantFrom(...validList.map(([, v]) => v)).chain((v) => mutationOf(decodeURIComponent(v))),
    fc.integer({ min: 257, max: 20_000 }).map((n) => 'A'.repeat(n)),
    fc.constantFrom('%', '%%', '%ZZ', '%E0%A4%A', '"', '""', '\\', '.', '..', '1.', '.1', '1.AAAAAAAAAAAAAAAAAAAAAA.a.0.', 'null', 'undefined', '[object Object]')
  )

  await t.test('the routing cookie value', async (t) => {
    await timed(t, 'value', () => sample(junkValue, CASES, seed).map((value) => `sticky=${value}`))
    t.ok(g.app.sticky.stats.invalidCookie.oversized > 0 && g.app.sticky.stats.invalidCookie['bad-signature'] > 0, 'refusals counted')
  })

  await t.test('the Cookie header as a whole, a valid routing cookie somewhere in it', async (t) => {
    const withValid = fc.tuple(cookieHeader('sticky', junkValue), cookieHeader('sticky', junkValue), fc.constantFrom(...validList), fc.boolean())
      .map(([before, after, [, value], junkOnly]) => junkOnly ? before : [before, `sticky=${value}`, after].filter((p) => p !== '').join('; '))
    await timed(t, 'header', () => sample(withValid, CASES, seed + 1))
  })

  await t.test('repeated routing cookies: junk copies and several valid ones (the first that verifies wins)', async (t) => {
    const repeated = fc.tuple(fc.array(junkValue.map((v) => v.slice(0, 300)), { minLength: 1, maxLength: 40 }), fc.array(fc.constantFrom(...validList), { maxLength: 3 }), fc.nat())
      .map(([junk, good, at]) => {
        const pairs = junk.map((v) => `sticky=${v.replace(/;/g, '')}`)
        for (const [, value] of good) pairs.splice(at % (pairs.length + 1), 0, `sticky=${value}`)
        return pairs.join('; ')
      })
    await timed(t, 'repeated', () => sample(repeated, CASES, seed + 2))
  })

  await t.test('over a real socket: Node\'s parser, several Cookie header lines', async (t) => {
    const cases = sample(fc.tuple(fc.array(cookieHeader('sticky', headerValue(60)), { minLength: 1, maxLength: 4 }), fc.option(fc.constantFrom(...validList), { nil: undefined })), SOCKET_CASES, seed + 3)
    const problems: string[] = []
    await inBatches(cases, 8, async ([lines, good]) => {
      const all = good === undefined ? lines : [...lines, `sticky=${good[1]}`]
      const headers = all.filter((line) => line !== '').flatMap((line) => ['cookie', line])
      const response = await request(`${g.url}/c/x`, { headers, headersTimeout: 10_000, bodyTimeout: 10_000 })
      const body = await response.body.text()
      if (response.statusCode >= 500) {
        problems.push(`status ${response.statusCode} for ${JSON.stringify(all)}`)
        return
      }
      // Node joins Cookie lines with '; ', so the first verifying cookie across all lines wins.
      const want = expected(all.join('; '))
      if (response.statusCode === 200 && want !== undefined && !want.optional && (JSON.parse(body) as { upstream: string }).upstream !== want.upstream) problems.push(`valid cookie ignored in ${JSON.stringify(all)}`)
    })
    t.same(problems.slice(0, 5), [], `${SOCKET_CASES} requests with 1–5 Cookie lines over a socket`)
  })
})
