import t from 'tap'
import { MemoryBindingStore } from '../../lib/store/memory-store'
import { TouchScheduler } from '../../lib/store/touch-scheduler'
import type { TouchRequest } from '../../lib/store/binding-store'

// A real memory store whose touch batches are recorded on their way in.
function recordingStore (): { store: MemoryBindingStore, batches: TouchRequest[][] } {
  const store = new MemoryBindingStore()
  const batches: TouchRequest[][] = []
  const touch = store.touch.bind(store)
  store.touch = async (requests) => {
    batches.push([...requests])
    await touch(requests)
  }
  return { store, batches }
}

const IDLE = 60_000

t.test('one touch per key per tenth of the idle timeout, keys of two pools apart, sent in one batch', async (t) => {
  const { store, batches } = recordingStore()
  const touches = new TouchScheduler(store, (error) => { t.fail(String(error)) })
  t.teardown(() => touches.flush())
  touches.schedule('a', 'k1', 'u1', IDLE, 1000)
  touches.schedule('a', 'k1', 'u1', IDLE, 2000)
  touches.schedule('b', 'k1', 'u2', IDLE, 3000)
  touches.schedule('a', 'k2', 'u1', IDLE, 4000)
  touches.noteFresh('b', 'k3')
  touches.schedule('b', 'k3', 'u2', IDLE, 5000)
  await touches.flush()
  t.same(batches, [[
    { pool: 'a', keyId: 'k1', upstreamId: 'u1', ttlMs: 1000 },
    { pool: 'a', keyId: 'k2', upstreamId: 'u1', ttlMs: 4000 },
    { pool: 'b', keyId: 'k1', upstreamId: 'u2', ttlMs: 3000 }
  ]])
  await touches.flush()
  t.equal(batches.length, 1, 'nothing pending: no empty batch')
})

t.test('a key is touched again once a tenth of its idle timeout has passed; the timer flushes after that tenth', async (t) => {
  const { store, batches } = recordingStore()
  const touches = new TouchScheduler(store, () => {})
  touches.schedule('a', 'k1', 'u1', 50, 50)
  touches.schedule('a', 'k1', 'u1', 50, 50)
  await new Promise((resolve) => setTimeout(resolve, 20))
  t.equal(batches.length, 1, 'the timer flushed within a tenth of the idle timeout')
  touches.schedule('a', 'k1', 'u1', 50, 40)
  await touches.flush()
  t.same(batches.map((batch) => batch.map((request) => request.ttlMs)), [[50], [40]])
})

t.test('1000 pending touches are sent at once, without waiting for the timer', async (t) => {
  const { store, batches } = recordingStore()
  const touches = new TouchScheduler(store, () => {})
  t.teardown(() => touches.flush())
  for (let i = 0; i < 999; i++) touches.schedule(i % 2 === 0 ? 'a' : 'b', 'k' + i, 'u1', IDLE, 1000)
  t.equal(batches.length, 0)
  touches.schedule('a', 'k999', 'u1', IDLE, 1000)
  t.equal(batches.length, 1)
  t.equal(batches[0].length, 1000)
})

t.test('what was touched is forgotten two generations of 50,000 keys later: at most an early touch again', async (t) => {
  const { store, batches } = recordingStore()
  const touches = new TouchScheduler(store, () => {})
  touches.noteFresh('a', 'early')
  for (let i = 0; i < 50_000; i++) touches.noteFresh('b', 'k' + i)
  touches.schedule('a', 'early', 'u1', IDLE, 1000)
  await touches.flush()
  t.equal(batches.length, 0, 'still remembered in the previous generation')
  for (let i = 50_000; i < 100_000; i++) touches.noteFresh('b', 'k' + i)
  touches.schedule('a', 'early', 'u1', IDLE, 1000)
  await touches.flush()
  t.same(batches, [[{ pool: 'a', keyId: 'early', upstreamId: 'u1', ttlMs: 1000 }]])
})

t.test('a failed batch is reported and dropped', async (t) => {
  const { store } = recordingStore()
  store.touch = async () => { throw new Error('store down') }
  const errors: unknown[] = []
  const touches = new TouchScheduler(store, (error) => { errors.push(error) })
  touches.schedule('a', 'k1', 'u1', IDLE, 1000)
  await touches.flush()
  t.equal((errors[0] as Error).message, 'store down')
  await touches.flush()
  t.equal(errors.length, 1, 'nothing left to send')
})
