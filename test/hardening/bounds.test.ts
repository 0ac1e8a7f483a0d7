/**
 * Size caps hold and nothing grows without bound under a burst of huge inputs: routing cookies over 256 characters
 * are refused before any HMAC, key values over 1024 characters are no key (nothing bound), a Cookie header stuffed
 * with routing cookies costs at most one HMAC per cookie and secret, the in-memory store stays within
 * `maxBindings`, and the heap after the burst (garbage collected) is within a few MB of the heap before it.
 * Sent with inject(), which has no 16 KiB header limit: the plugin's own caps are what is tested.
 */
import v8 from 'node:v8'
import vm from 'node:vm'
import t from 'tap'
import type { MemoryBindingStore } from '../../lib/index'
import { inBatches } from './arbitraries'
import { startHostileGateway } from './hostile-gateway'
import { countHmacs } from '../support/hmac-counter'

const BURST = 200
const HUGE = 256 * 1024
const HEAP_GROWTH_LIMIT = 16 * 1024 * 1024

v8.setFlagsFromString('--expose-gc')
const gc = vm.runInNewContext('gc') as () => void

function heapAfterGc (): number {
  for (let i = 0; i < 3; i++) gc()
  return process.memoryUsage().heapUsed
}

t.test('a burst of huge inputs: capped, refused early, and no lasting allocation', async (t) => {
  // Every request comes from one address: with the new-binding budgets on, all but its first 30 new keys would be served
  // unbound, so "nothing bound" and "within maxBindings" would hold whatever the caps did. Off, the store fills.
  const g = await startHostileGateway(t, { trustProxy: true }, { maxBindings: 500, newBindings: false })
  const store = g.app.sticky.store as MemoryBindingStore
  const huge = (ch: string, i: number): string => ch.repeat(HUGE - (i % 7))
  // Warm up every route so lazily built state (compiled hooks, connections) is not counted as growth.
  await inBatches(Array.from({ length: 200 }, (_, i) => i), 16, async (i) => {
    await g.app.inject({ url: ['/c/w', '/h/w', '/q/w?room=w' + i, '/i/w'][i % 4], headers: { 'x-tenant': 'w' + i } })
  })
  const heapBefore = heapAfterGc()
  const statsBefore = structuredClone(g.app.sticky.stats)

  await t.test('oversized routing cookies: refused before any HMAC', async (t) => {
    const hmacs = countHmacs()
    const statuses: number[] = []
    try {
      await inBatches(Array.from({ length: BURST }, (_, i) => i), 16, async (i) => {
        statuses.push((await g.app.inject({ url: '/c/x', headers: { cookie: `sticky=${huge('A', i)}` } })).statusCode)
      })
    } finally {
      hmacs.restore()
    }
    t.same([...new Set(statuses)], [200], 'every one answered 200 with a fresh binding')
    t.equal(g.app.sticky.stats.invalidCookie.oversized - statsBefore.invalidCookie.oversized, BURST, 'each counted as oversized')
    // One HMAC per request: the signature of the fresh cookie each refused client gets. None for verifying.
    t.equal(hmacs.count, BURST, `${hmacs.count} HMACs for ${BURST} requests with ${HUGE / 1024} KiB cookies`)
  })

  await t.test('oversized key values (header, query, X-Forwarded-For): no key, nothing bound', async (t) => {
    const bindings = store.size
    const statuses = new Set<number>()
    await inBatches(Array.from({ length: BURST }, (_, i) => i), 16, async (i) => {
      const kind = i % 3
      const response = kind === 0
        ? await g.app.inject({ url: '/h/x', headers: { 'x-tenant': huge('t', i) } })
        : kind === 1
          ? await g.app.inject({ url: `/q/x?room=${huge('r', i)}` })
          : await g.app.inject({ url: '/i/x', headers: { 'x-forwarded-for': huge('9', i) } })
      statuses.add(response.statusCode)
    })
    // 431/414: the upstream's own limit, as the oversized header or target is forwarded; never a 5xx.
    t.ok([...statuses].every((status) => status < 500), `statuses ${[...statuses].join(', ')}`)
    t.equal(g.app.sticky.stats.invalidKey - statsBefore.invalidKey, BURST, 'each counted as an invalid key')
    t.equal(store.size, bindings, 'no binding made')
  })

  await t.test('a Cookie header stuffed with routing cookies: at most one HMAC per cookie (one secret)', async (t) => {
    const copies = 2_000
    const hmacs = countHmacs()
    const started = process.hrtime.bigint()
    try {
      const cookie = Array.from({ length: copies }, (_, i) => `sticky=1.${i}.a.0.sig`).join('; ')
      const response = await g.app.inject({ url: '/c/x', headers: { cookie } })
      t.equal(response.statusCode, 200)
    } finally {
      hmacs.restore()
    }
    const ms = Number(process.hrtime.bigint() - started) / 1e6
    // The first 8 candidates at most (the gateway's cap), the first value again, and the fresh cookie's signature.
    t.ok(hmacs.count <= 8 + 2, `${hmacs.count} HMACs (${ms.toFixed(1)} ms) for ${copies} routing cookies in one header`)
  })

  await t.test('the in-memory store stays within maxBindings', async (t) => {
    await inBatches(Array.from({ length: 1_000 }, (_, i) => i), 16, async () => { await g.app.inject({ url: '/c/new' }) })
    t.ok(store.size <= 500, `${store.size} bindings after 1,000 new clients with maxBindings 500`)
  })

  const growth = heapAfterGc() - heapBefore
  t.ok(growth < HEAP_GROWTH_LIMIT, `heap grew ${(growth / 1024 / 1024).toFixed(1)} MB after ${BURST * 2} requests carrying ${(BURST * 2 * HUGE / 1024 / 1024).toFixed(0)} MB of oversized input (limit ${HEAP_GROWTH_LIMIT / 1024 / 1024} MB)`)
})
