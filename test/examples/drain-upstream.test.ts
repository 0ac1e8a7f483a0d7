import t from 'tap'
import { drainUpstream } from '../../examples/kubernetes/drain-upstream'
import { startGateway } from '../support/gateway'
import { CookieJar, get } from '../support/http'
import { startRedis, uniquePrefix } from '../support/redis'
import { startUpstreams } from '../support/upstreams'
import { eventually } from '../support/eventually'

t.test('drain-upstream: drains on every gateway and waits for the sessions to end', async (t) => {
  const redis = await startRedis(t)
  const upstreams = await startUpstreams(t, ['a', 'b'])
  const prefix = uniquePrefix()
  const gateway = await startGateway(t, { upstreams, redis: redis.url, prefix, defaults: { idleTimeout: 800 } })
  // least-sessions alternates a, b: the first new client is on a
  t.equal((await get(`${gateway.url}/`, { jar: new CookieJar() })).json().upstream, 'a')
  const counts: number[] = []
  const expired = await drainUpstream({ redis: redis.url, prefix, pool: 'shop', id: 'a', deadlineMs: 100, pollMs: 20, onCount: (n) => counts.push(n) })
  t.equal(expired, false, 'deadline first: the session is still alive')
  t.ok(counts[0] >= 1)
  t.ok(await eventually(() => gateway.app.sticky.state('shop', 'a') === 'draining', 2000), 'the gateway sees the drain')
  t.equal((await get(`${gateway.url}/`)).json().upstream, 'b', 'no new session on the draining upstream')
  const drained = await drainUpstream({ redis: redis.url, prefix, pool: 'shop', id: 'a', deadlineMs: 5000, pollMs: 50 })
  t.equal(drained, true, 'returns once the idle timeout ended the session')
})
