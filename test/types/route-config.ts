// Type-level checks, verified by `tsc --noEmit` (never executed): route config and decorators are typed
// through declaration merging.
import Fastify from 'fastify'
import sticky, { type StickyDecision } from '../../lib/index'

async function typeChecks (): Promise<void> {
  const app = Fastify()
  await app.register(sticky, { secret: 'x'.repeat(32), pools: { shop: { upstreams: [{ id: 'a', url: 'http://127.0.0.1:1' }] } } })
  app.get('/a', { config: { sticky: true } }, (_request, reply) => reply.forward())
  app.get('/b', { config: { sticky: false } }, (_request, reply) => reply.forward('/other'))
  app.get('/c', { config: { sticky: { pool: 'shop', key: false, idleTimeout: '5m', maxLifetime: 60_000 } } }, (request) => {
    const decision: StickyDecision | null = request.sticky
    return decision?.upstream.id
  })
  // @ts-expect-error: key kinds are 'cookie' or false
  app.get('/d', { config: { sticky: { key: 'magic' } } }, () => 'x')
  // @ts-expect-error: durations are ms or '<n><unit>'
  app.get('/e', { config: { sticky: { idleTimeout: '5 minutes' } } }, () => 'x')
  // @ts-expect-error: secret is required
  await app.register(sticky, { pools: {} })
  const counts: Record<string, number> = await app.sticky.sessionCounts('shop')
  void counts
}
void typeChecks
