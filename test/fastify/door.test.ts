/**
 * The behaviour suite (test/doors/behaviours.ts) through the Fastify plugin's own door: routes with `config.sticky`
 * whose handler is `reply.forward()`; then what only this door does.
 */
import t from 'tap'
import { startGateway } from '../support/gateway'
import { openSocket, refusedUpgrade, startWsUpstreams } from '../support/ws-upstream'
import { DOOR_ROUTES, doorBehaviours, fastifyDoor } from '../doors/behaviours'

const fastifyRoutes = fastifyDoor('Fastify reply.forward()', (app) => {
  for (const route of DOOR_ROUTES) app.all(`${route.prefix}/*`, { config: { sticky: route.sticky } }, (_request, reply) => reply.forward())
  app.all('/*', { config: { sticky: true } }, (_request, reply) => reply.forward())
})

// The suite and the door's own cases share nothing: side by side.
t.jobs = 2

doorBehaviours(t, fastifyRoutes)

t.test('Fastify routes only: upgrades are routed by the app\'s routes', async (t) => {
  const upstreams = await startWsUpstreams(t, ['a'])
  const gateway = await startGateway(t, {
    pools: { shop: { upstreams: upstreams.map(({ id, url }) => ({ id, url })) } },
    routes (app) { app.all('/live/*', { config: { sticky: true } }, (_request, reply) => reply.forward()) }
  })
  const base = gateway.url.replace('http:', 'ws:')
  const routed = await openSocket(`${base}/live/x`)
  t.equal(routed.hello.upstream, 'a', 'a sticky route takes upgrades')
  routed.ws.terminate()
  t.equal((await refusedUpgrade(`${base}/not-ours`)).status, 404, 'an upgrade for a path no route serves is refused cleanly')
})
