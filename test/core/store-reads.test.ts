/**
 * How a returning client's binding is read: once, and at once (no promise) when the store has it at hand
 * (`peek`); `get` only when `peek` cannot say. A second read would count a near-cache hit or a store-metrics `get`
 * twice for one request.
 */
import t, { type Test } from 'tap'
import { resolveOptions } from '../../lib/options'
import { createStickyCore, isStickyProblem, type StickyCore } from '../../lib/core/sticky-core'
import type { RequestView, StickyRequestState } from '../../lib/core/request-state'
import type { Binding } from '../../lib/store/binding-store'
import { MemoryBindingStore } from '../../lib/store/memory-store'

// A real memory store that counts its reads (and can be told to leave every read to `get`, as Redis does).
class CountingStore extends MemoryBindingStore {
  peeks = 0
  gets = 0
  atHand = true
  peek (pool: string, keyId: string): Binding | null | undefined {
    this.peeks++
    return this.atHand ? super.peek(pool, keyId) : undefined
  }

  async get (pool: string, keyId: string): Promise<Binding | null> {
    this.gets++
    return await super.get(pool, keyId)
  }

  /** @returns the reads counted since the last call (peeks, gets), and starts counting again */
  takeCounts (): [number, number] {
    const counted: [number, number] = [this.peeks, this.gets]
    this.peeks = 0
    this.gets = 0
    return counted
  }
}

const silent = { warn () {}, info () {}, debug () {} }

// A core over a counting memory store, with a pool of two upstreams, closed after the test.
async function countingCore (t: Test): Promise<{ store: CountingStore, core: StickyCore }> {
  const store = new CountingStore()
  const options = resolveOptions({
    secret: 's'.repeat(32),
    store,
    newBindings: false,
    pools: { shop: { upstreams: [{ id: 'a', url: 'http://127.0.0.1:9' }, { id: 'b', url: 'http://127.0.0.1:10' }] } }
  })
  const core = await createStickyCore(options, { log: silent })
  t.teardown(() => core.close())
  return { store, core }
}

t.test('a returning client: one read, at once when the store has it at hand, else one get', async (t) => {
  const { store, core } = await countingCore(t)
  const route = core.route('GET /', true)
  if (route === null) throw new Error('the route is sticky')
  const view = (cookie?: string): RequestView => ({ ip: '127.0.0.1', headers: cookie === undefined ? {} : { cookie }, query: {}, cookies: undefined, request: undefined })
  const reads = (): [number, number] => store.takeCounts()

  const first = await core.decide(route, view())
  if (isStickyProblem(first) || first.cookie === undefined) throw new Error('a new session gets a cookie')
  const cookie = 'sticky=' + first.cookie
  reads()

  const hit = core.decide(route, view(cookie))
  t.notOk(hit instanceof Promise, 'a hit is decided at once')
  t.equal((hit as StickyRequestState).decision.decision, 'hit')
  t.same(reads(), [1, 0], 'peeked once, no get')

  store.atHand = false
  const asked = core.decide(route, view(cookie))
  t.ok(asked instanceof Promise, 'a store that cannot say is asked')
  t.equal(((await asked) as StickyRequestState).decision.decision, 'hit')
  t.same(reads(), [1, 1], 'peeked once, then one get')
  store.atHand = true

  // The binding is gone (evicted, say): the cookie binds it again. The peek's "none" is not asked again.
  await store.delete('shop', (hit as StickyRequestState).binding?.keyId as string)
  reads()
  const revived = await core.decide(route, view(cookie))
  t.equal((revived as StickyRequestState).decision.upstream.id, first.decision.upstream.id, 'bound again where the cookie says')
  t.same(reads(), [1, 0], 'peeked once, no get')
})

t.test('a returning key (address, header): one read, at once when the store has it at hand, else one get', async (t) => {
  const { store, core } = await countingCore(t)
  const byHeader = core.route('GET /h', { key: { header: 'x-user' } })
  const byAddress = core.route('GET /ip', { key: 'ip' })
  if (byHeader === null || byAddress === null) throw new Error('the routes are sticky')
  const reads = (): [number, number] => store.takeCounts()

  for (const [route, view] of [
    [byHeader, { ip: '127.0.0.1', headers: { 'x-user': 'alice', cookie: 'sticky=junk; a=b' }, query: {}, cookies: undefined, request: undefined }],
    [byAddress, { ip: '10.1.2.3', headers: {}, query: {}, cookies: undefined, request: undefined }]
  ] as const) {
    const first = await core.decide(route, view)
    if (isStickyProblem(first)) throw new Error('a new key is bound')
    t.equal(first.decision.decision, 'new')
    reads()

    const hit = core.decide(route, view)
    t.notOk(hit instanceof Promise, 'a hit is decided at once')
    t.equal((hit as StickyRequestState).decision.decision, 'hit')
    t.equal((hit as StickyRequestState).decision.upstream.id, first.decision.upstream.id)
    t.same(reads(), [1, 0], 'peeked once, no get')

    store.atHand = false
    const asked = core.decide(route, view)
    t.ok(asked instanceof Promise, 'a store that cannot say is asked')
    t.equal(((await asked) as StickyRequestState).decision.decision, 'hit')
    t.same(reads(), [1, 1], 'peeked once, then one get')
    store.atHand = true
  }
})
