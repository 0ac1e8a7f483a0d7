/**
 * Hostile input end to end, header and query keys (`key: { header }`, `{ query }` and a list of sources), through a
 * real gateway (app.inject) to real upstreams. 500 cases per input (a new seed every run), each sent twice
 * (stickiness is the oracle: the same value must reach the same upstream again), so 1,000 forwards per input: what
 * fits the suite's 5-minute budget on two cores with coverage on; the extraction functions themselves get 10,000
 * cases each in pure-inputs.test.ts.
 */
import fc from 'fast-check'
import Fastify from 'fastify'
import t, { type Test } from 'tap'
import { MAX_KEY_LENGTH } from '../../lib/affinity/keys'
import type { MemoryBindingStore } from '../../lib/index'
import { aroundLimit, forwardedFor, headerValue, inBatches, nastyChar, sample } from './arbitraries'
import { startHostileGateway, upstreamOf, type HostileGateway } from './hostile-gateway'

const CASES = 500
const CONCURRENCY = 16

interface Case { readonly url: string, readonly headers: Record<string, string>, readonly key: string | undefined }

// Sends every case twice; a case with a usable key must land on the same upstream both times.
async function stickyRun (t: Test, g: HostileGateway, label: string, cases: readonly Case[]): Promise<void> {
  const first = new Map<number, string>()
  const problems: string[] = []
  let keyed = 0
  for (const pass of [0, 1]) {
    await inBatches(cases, CONCURRENCY, async (c, i) => {
      const response = await g.app.inject({ url: c.url, headers: c.headers })
      const problem = g.problem(response, [200, 431])
      if (problem !== undefined) {
        problems.push(`${problem} for ${JSON.stringify(c).slice(0, 300)}`)
        return
      }
      if (response.statusCode !== 200) return
      if (pass === 0) first.set(i, upstreamOf(response))
      else if (c.key !== undefined && first.has(i)) {
        keyed++
        if (first.get(i) !== upstreamOf(response)) problems.push(`key moved ${first.get(i)} → ${upstreamOf(response)}: ${JSON.stringify(c).slice(0, 300)}`)
      }
    })
  }
  t.same(problems.slice(0, 5), [], `${label}: ${cases.length} cases × 2, ${keyed} with a usable key stayed put`)
}

t.test('hostile header and query keys through a real gateway', async (t) => {
  // Thousands of keys from one address, and the oracle counts bindings: the new-binding budgets are off.
  const g = await startHostileGateway(t, {}, { newBindings: false })
  const seed = Date.now() % 1_000_000
  t.comment(`seed ${seed}`)
  const store = g.app.sticky.store as MemoryBindingStore

  await t.test('header key (x-tenant)', async (t) => {
    const value = fc.oneof(headerValue(120), aroundLimit(MAX_KEY_LENGTH), fc.integer({ min: 1025, max: 15_000 }).map((n) => 'T'.repeat(n)),
      fc.constantFrom('', ' ', '\t', 'null', '__proto__', 'constructor', '0', '-1', 'a,b', 'a, a', '%00', '\\'))
    const before = { invalid: g.app.sticky.stats.invalidKey, bindings: store.size }

    const cases = sample(value, CASES, seed).map((v): Case => ({
      url: '/h/x',
      headers: { 'x-tenant': v },
      // inject() passes values as given (a socket would trim ' ' to ''): the plugin sees exactly `v`.
      key: v !== '' && v.length <= MAX_KEY_LENGTH ? v : undefined
    }))
    await stickyRun(t, g, 'header', cases)
    const oversized = cases.filter((c) => c.headers['x-tenant'].length > MAX_KEY_LENGTH).length
    t.equal(g.app.sticky.stats.invalidKey - before.invalid, oversized * 2, `${oversized} oversized values refused (counted), never keys`)
    const keys = new Set(cases.filter((c) => c.key !== undefined).map((c) => c.key)).size
    t.equal(store.size - before.bindings, keys, `${keys} bindings for ${keys} distinct usable values: none for refused or missing ones`)
  })

  await t.test('query key (room): encoded, malformed, repeated, prototype names', async (t) => {
    const raw = fc.oneof(
      fc.webQueryParameters(),
      fc.string({ unit: fc.oneof(fc.constantFrom('a', 'Z', '0', '%', '2', 'F', '+', '&', '=', '[', ']', '.', ';', ',', '/', '?', '#'), nastyChar), maxLength: 60 }),
      fc.integer({ min: 1000, max: 1100 }).map((n) => 'r'.repeat(n))
    )
    const query = fc.tuple(fc.array(fc.tuple(fc.constantFrom('room', 'room', 'room[]', 'ROOM', '__proto__', 'constructor', 'room.x', ''), raw), { minLength: 1, maxLength: 4 }), fc.boolean())
      .map(([pairs, encode]) => pairs.map(([k, v]) => `${k}=${encode ? encodeURIComponent(v) : v.replace(/#/g, '')}`).join('&'))
    // The oracle: the `room` value Fastify's own query parser finds (the first of repeated ones).
    const oracle = Fastify()
    oracle.get('/q/x', async (request) => ({ room: [(request.query as Record<string, unknown>).room].flat()[0] ?? null }))
    t.teardown(() => oracle.close())
    const cases: Case[] = await Promise.all(sample(query, CASES, seed + 1).map(async (q): Promise<Case> => {
      const { room } = (await oracle.inject({ url: `/q/x?${q}` })).json<{ room: unknown }>()
      return { url: `/q/x?${q}`, headers: {}, key: typeof room === 'string' && room !== '' && room.length <= MAX_KEY_LENGTH ? room : undefined }
    }))
    await stickyRun(t, g, 'query', cases)
  })

  await t.test('a list of sources (header, query, ip, cookie) with any mix present', async (t) => {
    const mix = fc.record({
      tenant: fc.option(fc.oneof(headerValue(60), aroundLimit(MAX_KEY_LENGTH)), { nil: undefined }),
      room: fc.option(fc.webQueryParameters(), { nil: undefined }),
      xff: fc.option(forwardedFor, { nil: undefined })
    })
    const cases = sample(mix, CASES, seed + 2).map(({ tenant, room, xff }): Case => {
      const headers: Record<string, string> = {}
      if (tenant !== undefined) headers['x-tenant'] = tenant
      if (xff !== undefined) headers['x-forwarded-for'] = xff
      // Without trustProxy the address is the socket's (always the same here), so every case has a usable key.
      return { url: `/m/x${room === undefined ? '' : `?room=${encodeURIComponent(room)}`}`, headers, key: 'always' }
    })
    await stickyRun(t, g, 'list', cases)
  })
})
