/**
 * Hostile input end to end, the client address key (`key: 'ip'`) under X-Forwarded-For, with trustProxy off, on,
 * and set to exactly the load balancer's address. 500 cases per mode (a new seed every run); with trustProxy on each
 * is sent twice (stickiness is the oracle), with it off once (the socket address decides, and is bound before the
 * first case: a second pass would repeat the first exactly). The address prefixer gets 10,000 cases in
 * pure-inputs.test.ts.
 */
import Fastify from 'fastify'
import t from 'tap'
import { ipPrefixKey } from '../../lib/affinity/keys'
import { startUpstreams } from '../support/upstreams'
import { forwardedFor, inBatches, sample } from './arbitraries'
import { startHostileGateway, upstreamOf } from './hostile-gateway'

const CASES = 500
const CONCURRENCY = 16

t.test('X-Forwarded-For and the ip key', async (t) => {
  const upstreams = await startUpstreams(t, ['a', 'b', 'c'])
  const seed = Date.now() % 1_000_000
  t.comment(`seed ${seed}`)
  const cases = sample(forwardedFor, CASES, seed)

  // inject() connects from 127.0.0.1: the "load balancer" of these tests.
  for (const trustProxy of [false, true, '127.0.0.1'] as const) {
    await t.test(`trustProxy: ${JSON.stringify(trustProxy)}`, async (t) => {
      const g = await startHostileGateway(t, { trustProxy }, {}, upstreams)
      // The oracle: the address Fastify itself computes for the request, through the same trustProxy.
      const oracle = Fastify({ trustProxy })
      oracle.get('/', async (request) => request.ip)
      t.teardown(() => oracle.close())
      const own = upstreamOf(await g.app.inject({ url: '/i/x' }))
      const problems: string[] = []
      const first = new Map<number, string>()
      const byKey = new Map<string, string>()
      let keyed = 0
      let junk = 0
      // The client address Fastify finds for each case, asked once (it depends on the header only).
      const clients = new Map<number, Promise<string>>()
      const clientOf = (i: number, xff: string): Promise<string> => {
        let client = clients.get(i)
        if (client === undefined) {
          client = oracle.inject({ url: '/', headers: { 'x-forwarded-for': xff } }).then((response) => response.body)
          clients.set(i, client)
        }
        return client
      }
      const passes = trustProxy === false ? [0] : [0, 1]
      for (const pass of passes) {
        await inBatches(cases, CONCURRENCY, async (xff, i) => {
          const response = await g.app.inject({ url: '/i/x', headers: { 'x-forwarded-for': xff } })
          const problem = g.problem(response)
          if (problem !== undefined) {
            problems.push(`${problem} for ${JSON.stringify(xff)}`)
            return
          }
          const upstream = upstreamOf(response)
          const echo = JSON.parse(response.body) as { headers: Record<string, string> }
          if (!echo.headers['x-forwarded-for'].endsWith('127.0.0.1')) problems.push(`the gateway's hop is missing from X-Forwarded-For: ${echo.headers['x-forwarded-for']}`)
          if (trustProxy === false) {
            // Untrusted: the header never picks the upstream; the socket address does.
            if (upstream !== own) problems.push(`X-Forwarded-For ${JSON.stringify(xff)} moved an untrusted client to ${upstream}`)
            return
          }
          // Trusted: the client is what proxy-addr finds, masked to its prefix; junk addresses are no key at all.
          const client = await clientOf(i, xff)
          const key = ipPrefixKey(client, 32, 64)
          if (key === undefined) {
            if (pass === 0) junk++
            return
          }
          if (pass === 0) {
            first.set(i, upstream)
            return
          }
          keyed++
          if (first.get(i) !== upstream) problems.push(`${JSON.stringify(xff)} moved ${first.get(i)} → ${upstream}`)
          // Every address of one prefix is one client, whatever header it came in.
          const seen = byKey.get(key)
          if (seen === undefined) byKey.set(key, upstream)
          else if (seen !== upstream) problems.push(`prefix ${key} on two upstreams`)
        })
      }
      t.same(problems.slice(0, 5), [], `${CASES} cases × ${passes.length}: ${trustProxy === false ? 'all on the socket address\'s upstream' : `${keyed} usable addresses stayed put, ${junk} junk ones were balanced`}`)
      if (trustProxy !== false) t.ok(g.app.sticky.stats.invalidKey > 0, `junk addresses counted (${g.app.sticky.stats.invalidKey})`)
    })
  }
})
