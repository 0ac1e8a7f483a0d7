import t from 'tap'
import { runClients } from '../../examples/socketio/chat-client'
import { startSocketIoDemo } from '../../examples/socketio/index'
import { startRedis } from '../support/redis'

t.test('Socket.IO with default transports through two sticky gateways', async (t) => {
  const redis = await startRedis(t)
  const demo = await startSocketIoDemo(redis.url)
  t.teardown(() => demo.close())
  const runs = await runClients(demo.gateways, 10, 20, 15_000)
  for (const [i, run] of runs.entries()) {
    t.equal(run.acked, 20, `client ${i} got every ack (errors: ${run.errors.join('; ') || 'none'})`)
    t.equal(run.upstreams.size, 1, `client ${i} stayed on one server`)
  }
  t.ok(runs.filter((run) => run.transport === 'websocket').length >= 8, 'clients upgraded to WebSocket through the gateway')
})

t.test('the same clients through a plain round-robin route lose their sessions (the test can catch the bug)', async (t) => {
  const redis = await startRedis(t)
  const demo = await startSocketIoDemo(redis.url, [0], false)
  t.teardown(() => demo.close())
  const runs = await runClients(demo.gateways, 10, 20, 3_000)
  const intact = runs.filter((run) => run.acked === 20 && run.errors.length === 0).length
  t.ok(intact < 10, `without affinity only ${intact}/10 clients kept their session`)
  t.ok(runs.some((run) => run.errors.length > 0), 'errors such as "Session ID unknown" or transport failures appear')
})
