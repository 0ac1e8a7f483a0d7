/** The batching rules of ReadBatch, with a recording sender (the real MGET is tested against Redis in redis-store.test.ts). */
import t from 'tap'
import { MAX_BATCH_KEYS, ReadBatch } from '../../lib/store/redis-read-batch'

function recorder (fail?: Error): { batch: ReadBatch, sent: string[][] } {
  const sent: string[][] = []
  const batch = new ReadBatch(async (keys) => {
    sent.push(keys)
    if (fail !== undefined) throw fail
    return keys.map((key) => key.startsWith('none') ? null : `v:${key}`)
  }, async (key) => {
    sent.push([key])
    if (fail !== undefined) throw fail
    return `v:${key}`
  })
  return { batch, sent }
}

t.test('one turn, one batch, answers in order; the next turn is a new batch', async (t) => {
  const { batch, sent } = recorder()
  t.same(await Promise.all([batch.get('a'), batch.get('none-1'), batch.get('c')]), ['v:a', null, 'v:c'])
  t.same(sent, [['a', 'none-1', 'c']])
  t.same(await batch.get('d'), 'v:d', 'a lone read')
  t.same(sent.length, 2)
})

t.test('a full batch goes at once; the reads after it wait for the turn to end', async (t) => {
  const { batch, sent } = recorder()
  const keys = Array.from({ length: MAX_BATCH_KEYS + 3 }, (_, i) => `k${i}`)
  const values = await Promise.all(keys.map((key) => batch.get(key)))
  t.same(values, keys.map((key) => `v:${key}`))
  t.same(sent.map((keys) => keys.length), [MAX_BATCH_KEYS, 3])
})

t.test('a failed batch fails each of its reads, and only those', async (t) => {
  const failing = recorder(new Error('redis down'))
  const results = await Promise.allSettled([failing.batch.get('a'), failing.batch.get('b')])
  t.same(results.map((r) => r.status), ['rejected', 'rejected'])
  t.match((results[0] as PromiseRejectedResult).reason, { message: 'redis down' })
  await t.rejects(failing.batch.get('lone'), { message: 'redis down' }, 'a lone read fails alone')
})

t.test('a server that refuses a batch across hash slots (cluster mode behind a plain client): single reads from then on', async (t) => {
  const sent: string[][] = []
  const batch = new ReadBatch(async (keys) => {
    sent.push(keys)
    throw new Error('CROSSSLOT Keys in request don\'t hash to the same slot')
  }, async (key) => {
    sent.push([key])
    return `v:${key}`
  })
  t.same(await Promise.all([batch.get('{p:1}a'), batch.get('{p:2}b')]), ['v:{p:1}a', 'v:{p:2}b'], 'the refused batch is read again key by key')
  t.same(await Promise.all([batch.get('c'), batch.get('d')]), ['v:c', 'v:d'])
  t.same(sent, [['{p:1}a', '{p:2}b'], ['{p:1}a'], ['{p:2}b'], ['c'], ['d']], 'no batch after the refusal')
})

t.test('batching off (a Cluster client): every read goes alone', async (t) => {
  const sent: string[][] = []
  const batch = new ReadBatch(async (keys) => { sent.push(keys); return keys.map(() => null) }, async (key) => { sent.push([key]); return `v:${key}` }, false)
  t.same(await Promise.all([batch.get('a'), batch.get('b')]), ['v:a', 'v:b'])
  t.same(sent, [['a'], ['b']])
})
