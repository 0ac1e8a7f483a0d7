// A TypeScript consumer of the installed tarball (an ES module), type-checked and run twice by
// consumers.test.ts: compiled with moduleResolution node16 and with bundler. It uses the types a gateway author
// meets: options, `config.sticky`, `request.sticky`, `reply.forward()`, `app.sticky`. Prints one JSON line.
import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import Fastify, { type FastifyInstance } from 'fastify'
import sticky, {
  sticky as named, MemoryBindingStore, type StickyApi, type StickyDecision, type StickyPluginOptions
} from 'fastify-sticky'

assert.equal(named, sticky, 'the named export `sticky` is the default export')

interface Upstream { id: string, url: string, server: Server }

async function startUpstream (id: string): Promise<Upstream> {
  const server = createServer((request, response) => {
    response.setHeader('content-type', 'application/json')
    response.end(JSON.stringify({ upstream: id, url: request.url }))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { id, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server }
}

// Never called: each line below must fail to type-check, which proves the types are not `any`.
export function typeErrorsAreCaught (app: FastifyInstance): void {
  // @ts-expect-error a secret is a string or an array of strings
  const badOptions: StickyPluginOptions = { secret: 42, pools: {} }
  // @ts-expect-error config.sticky is a boolean or a route config object
  app.get('/x', { config: { sticky: 'yes' } }, async () => 'x')
  // @ts-expect-error reply.forward() takes a path
  app.get('/y', async (request, reply) => reply.forward(42))
  // @ts-expect-error the store is a BindingStore
  const store: MemoryBindingStore = 'memory'
  void badOptions
  void store
}

const upstreams = await Promise.all(['a', 'b'].map(startUpstream))
const options: StickyPluginOptions = {
  secret: ['consumer-test-secret-0123456789abcdef'],
  pools: { shop: { upstreams: upstreams.map(({ id, url }) => ({ id, url })) } },
  defaults: { pool: 'shop', idleTimeout: '5m' }
}
const app = Fastify()
await app.register(sticky, options)
const api: StickyApi = app.sticky
app.get('/shop/*', { config: { sticky: { pool: 'shop' } } }, (request, reply) => {
  const decision: StickyDecision | null = request.sticky
  reply.header('x-sticky-decision', decision?.decision ?? 'none')
  return reply.forward()
})

const exchange = async (cookies: Record<string, string>) => {
  const response = await app.inject({ url: '/shop/cart', cookies })
  const cookie = response.cookies.find((c) => c.name === 'sticky')
  const body = response.json<{ upstream: string }>()
  return { status: response.statusCode, upstream: body.upstream, decision: response.headers['x-sticky-decision'], cookie }
}
const first = await exchange({})
assert.ok(first.cookie, 'the first response sets the routing cookie')
const second = await exchange({ sticky: first.cookie.value })
console.log(JSON.stringify({
  consumer: 'ts-esm',
  first: { status: first.status, upstream: first.upstream, decision: first.decision, setCookie: true, httpOnly: first.cookie.httpOnly === true },
  second: { status: second.status, upstream: second.upstream, decision: second.decision, setCookie: second.cookie !== undefined },
  sessions: await api.sessionCounts('shop')
}))
await app.close()
for (const { server } of upstreams) server.close()
