/**
 * One session move on its own (lib/core/session-mover.ts), on a memory store and real cart upstreams: a mover
 * whose idea of the session's upstream is stale (another move handed it over a moment ago) moves nothing, rather
 * than rebinding the session without its state.
 */
import t from 'tap'
import type { CoreLogger } from '../../lib/core/logger'
import { SessionMover } from '../../lib/core/session-mover'
import { resolveOptions } from '../../lib/options'
import { UpstreamPool } from '../../lib/pool/upstream-pool'
import { MemoryBindingStore } from '../../lib/store/memory-store'
import { CART_HANDOFF_SECRET, startCartUpstreams } from '../support/cart-upstream'
import { TEST_SECRET } from '../support/gateway'
import { openStore } from '../support/stores'

const quiet: CoreLogger = { warn: () => {}, info: () => {}, debug: () => {} }

t.test('a stale move of a session another move just handed over moves nothing', async (t) => {
  const [a, b, c] = await startCartUpstreams(t, ['a', 'b', 'c'])
  const options = resolveOptions({
    secret: TEST_SECRET,
    pools: { shop: { upstreams: [a, b, c].map(({ id, url }) => ({ id, url })) } },
    handoff: { secret: CART_HANDOFF_SECRET }
  })
  const store = await openStore(t, new MemoryBindingStore())
  const pool = new UpstreamPool('shop', options.pools.shop, store)
  const mover = new SessionMover({ store, handoff: options.handoff, log: quiet })
  const [upA, upB, upC] = pool.upstreams
  const session = 'session-00000001'
  await store.bindIfAbsent('shop', session, 'a', 60_000)
  a.carts.set(session, ['tea'])

  const first = await mover.move(pool, session, upA, upB)
  t.same(first, { moved: true, to: 'b', withState: true, holdMs: (first as { holdMs: number }).holdMs })
  t.same(b.carts.get(session), ['tea'])
  // A second mover still believing the session is on a (it listed a's sessions before the first move).
  const stale = await mover.move(pool, session, upA, upC)
  t.same(stale, { moved: false, reason: 'changed' }, 'a answers "moved" for a minute: not "nothing to carry"')
  t.equal((await store.get('shop', session))?.upstreamId, 'b', 'the binding stays where its state went')
  t.notOk(c.carts.has(session), 'nothing was imported at c')
  t.same(b.carts.get(session), ['tea'])

  const withoutHandoff = await mover.move(pool, session, upB, upC, { handoff: false })
  t.same(withoutHandoff, { moved: true, to: 'c', withState: false, holdMs: 0 }, 'without handoff a move rebinds only')
  t.notOk(c.carts.has(session))
})
