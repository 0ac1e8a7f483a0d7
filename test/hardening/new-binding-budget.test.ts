import t from 'tap'
import { budgetClientKey, NewBindingBudget, TRACKED_CLIENTS } from '../../lib/affinity/new-binding-budget'
import { resolveNewBindings } from '../../lib/options/new-bindings'

// The budget's own state must not become the thing an attacker fills: its table of client buckets is bounded.

t.test('an attacker rotating addresses cannot grow the client table; the gateway budget still holds', async (t) => {
  const budget = new NewBindingBudget(resolveNewBindings({ perClient: { rate: 1, per: '1m' }, perGateway: { rate: 50_000, per: '1m' } }))
  const now = 1_000_000
  let allowed = 0
  for (let i = 0; i < 100_000; i++) {
    // 100,000 addresses: a /112 of IPv6 /64s, one binding each.
    if (budget.take(`2001:db8:${(i >> 16).toString(16)}:${(i & 0xffff).toString(16)}::1`, now) === undefined) allowed++
  }
  t.equal(budget.trackedClients, TRACKED_CLIENTS, `the table stays at ${TRACKED_CLIENTS} buckets`)
  t.equal(allowed, 50_000, 'fresh buckets for forgotten clients, but no more than the gateway budget')
  t.equal(budget.take('203.0.113.1', now), 'gateway', 'the gateway budget refuses once spent')
})

t.test('token buckets: burst, refill, and a refusal costs nothing', async (t) => {
  const budget = new NewBindingBudget(resolveNewBindings({ perClient: { rate: 2, per: '1s', burst: 3 }, perGateway: { rate: 4, per: '1s' } }))
  const at = 5_000_000
  t.same([1, 2, 3, 4].map(() => budget.take('198.51.100.1', at)), [undefined, undefined, undefined, 'client'], 'a burst of three')
  t.equal(budget.take('198.51.100.2', at), undefined)
  t.equal(budget.take('198.51.100.3', at), 'gateway', 'four for the gateway in all')
  t.equal(budget.take('198.51.100.3', at + 250), undefined, 'the gateway refills one every 250 ms; the refused client kept its own')
  t.equal(budget.take('198.51.100.1', at + 499), 'client')
  t.equal(budget.take('198.51.100.1', at + 500), undefined, 'the client refills one every 500 ms')
  t.equal(budget.take(undefined, at + 1000), undefined, 'no address: only the gateway budget applies')
  t.ok(budget.refusedWithin('198.51.100.9', 1000, at + 900), 'the gateway refused lately: every client counts as refused')
  t.notOk(budget.refusedWithin('198.51.100.2', 1000, at + 2000), 'not after the window')
})

t.test('clients as the budget counts them', async (t) => {
  t.equal(budgetClientKey('198.51.100.7'), budgetClientKey('::ffff:198.51.100.7'), 'IPv4-mapped IPv6 is IPv4')
  t.equal(budgetClientKey('2001:db8:1:2::1'), budgetClientKey('2001:db8:1:2:ffff::9'), 'one /64')
  t.not(budgetClientKey('2001:db8:1:2::1'), budgetClientKey('2001:db8:1:3::1'))
  t.equal(budgetClientKey('not an address'), budgetClientKey('also junk'), 'junk shares one bucket')
  t.equal(budgetClientKey(undefined), undefined)
})
