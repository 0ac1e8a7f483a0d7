// LruMap against a reference model (an array in recency order), over random operation sequences: same answers,
// same size, same eviction order, the list and the index never disagree. Its speed under churn is measured by
// `npm run bench:churn`, not here.
import fc from 'fast-check'
import t from 'tap'
import { LruMap } from '../lib/lru-map'

type Op = ['get' | 'peek' | 'delete', number] | ['set', number, number] | ['clear']

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.tuple(fc.constantFrom('get' as const, 'peek' as const, 'delete' as const), fc.integer({ min: 0, max: 7 })),
  fc.tuple(fc.constant('set' as const), fc.integer({ min: 0, max: 7 }), fc.integer()),
  fc.constant(['clear'] as Op)
)

t.test('behaves as a model LRU for any sequence of operations', async (t) => {
  fc.assert(fc.property(fc.integer({ min: 0, max: 4 }), fc.array(op, { maxLength: 60 }), (capacity, ops) => {
    const lru = new LruMap<number, number>(capacity)
    let model: Array<[number, number]> = [] // oldest first
    for (const [name, key, value] of ops) {
      const at = model.findIndex(([k]) => k === key)
      if (name === 'get') {
        const expected = at < 0 ? undefined : model[at][1]
        if (at >= 0) model.push(...model.splice(at, 1))
        if (lru.get(key) !== expected) return false
      } else if (name === 'peek') {
        if (lru.peek(key) !== (at < 0 ? undefined : model[at][1])) return false
      } else if (name === 'delete') {
        if (lru.delete(key) !== at >= 0) return false
        if (at >= 0) model.splice(at, 1)
      } else if (name === 'set') {
        if (capacity === 0) continue
        if (at >= 0) model.splice(at, 1)
        else if (model.length >= capacity) model.shift()
        model.push([key, value as number])
        lru.set(key, value as number)
      } else {
        lru.clear()
        model = []
      }
      if (lru.size !== model.length) return false
    }
    // Every key the model holds is there, and the order of eviction is the model's.
    for (const [k, v] of model) if (lru.peek(k) !== v) return false
    if (capacity === 0) return lru.size === 0
    let fresh = 100
    while (lru.size < capacity) lru.set(fresh++, 0)
    for (const [k] of model) {
      lru.set(fresh++, 0)
      if (lru.peek(k) !== undefined) return false
    }
    return true
  }), { numRuns: 2000 })
  t.pass('2,000 random sequences')
})

t.test('a hit moves no entry out of the index: one key hit a million times stays one entry', async (t) => {
  const lru = new LruMap<string, number>(3)
  lru.set('hot', 1)
  lru.set('b', 2)
  for (let i = 0; i < 1_000_000; i++) lru.get('hot')
  lru.set('c', 3)
  lru.set('d', 4)
  t.equal(lru.peek('b'), undefined, 'b, the least recently used, went first')
  t.equal(lru.get('hot'), 1)
  t.equal(lru.size, 3)
})

t.test('a capacity that is not a whole number >= 0 is refused (NaN would never evict)', async (t) => {
  for (const bad of [Number.NaN, -1, 1.5, Infinity]) t.throws(() => new LruMap(bad), TypeError, String(bad))
})
