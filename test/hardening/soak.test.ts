/**
 * The chaos soak (scripts/soak.ts) for 20 s: two gateways on one Redis, three upstream processes killed and
 * restarted at random, Redis restarted, 50 clients; every target must be met.
 */
import t from 'tap'
import { formatSummary, runSoak } from '../../scripts/soak'

t.test('20-second chaos soak: targets met', async (t) => {
  const summary = await runSoak({ seconds: 20, clients: 50 })
  t.comment(formatSummary(summary))
  t.ok(summary.requests > 3_000, `${summary.requests} requests`)
  t.ok(summary.kills >= 3 && summary.redisRestarts >= 1, `chaos happened: ${summary.kills} kills, ${summary.redisRestarts} Redis restarts`)
  t.equal(summary.unexplained5xx, 0, '5xx while at least one upstream was healthy')
  t.equal(summary.noHealthyUpstream5xx, 0, 'the chaos never left no healthy upstream')
  t.equal(summary.otherFailures, 0, 'no other failure (4xx, transport)')
  t.equal(summary.corruptedBodies, 0, 'POST bodies intact')
  t.equal(summary.unjustifiedMoves, 0, 'no client moved unless its upstream died')
  t.equal(summary.disagreements, 0, 'both gateways agree on every binding')
  t.equal(summary.leakingCookies, 0, 'no routing cookie names an upstream')
  t.ok(summary.heapGrowthMb < 64, `heap growth ${summary.heapGrowthMb.toFixed(1)} MB`)
  t.ok(summary.passed, 'every target met')
})
