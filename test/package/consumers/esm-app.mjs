// A JavaScript ES module consumer of the installed tarball: `import sticky from 'fastify-sticky'` must be the
// plugin, and the named exports must exist at run time. Prints one JSON line for consumers.test.ts.
import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import Fastify from 'fastify'
import sticky, { sticky as named, MemoryBindingStore, RedisBindingStore, UpstreamPool } from 'fastify-sticky'

assert.equal(typeof sticky, 'function', 'the default import is the plugin')
assert.equal(named, sticky, 'the named export `sticky` is the plugin')
for (const value of [MemoryBindingStore, RedisBindingStore, UpstreamPool]) assert.equal(typeof value, 'function')

async function startUpstream (id) {
  const server = createServer((request, response) => {
    response.setHeader('content-type', 'application/json')
    response.end(JSON.stringify({ upstream: id, url: request.url }))
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { id, url: `http://127.0.0.1:${server.address().port}`, server }
}

const upstreams = await Promise.all(['a', 'b'].map(startUpstream))
const app = Fastify()
await app.register(sticky, {
  secret: 'consumer-test-secret-0123456789abcdef',
  pools: { shop: { upstreams: upstreams.map(({ id, url }) => ({ id, url })) } }
})
app.get('/shop/*', { config: { sticky: true } }, (request, reply) => {
  reply.header('x-sticky-decision', request.sticky.decision)
  return reply.forward()
})

const exchange = async (cookies) => {
  const response = await app.inject({ url: '/shop/cart', cookies })
  const cookie = response.cookies.find((c) => c.name === 'sticky')
  return { status: response.statusCode, upstream: response.json().upstream, decision: response.headers['x-sticky-decision'], cookie }
}
const first = await exchange({})
const second = await exchange({ sticky: first.cookie.value })
console.log(JSON.stringify({
  consumer: 'esm',
  first: { status: first.status, upstream: first.upstream, decision: first.decision, setCookie: first.cookie !== undefined, httpOnly: first.cookie?.httpOnly === true },
  second: { status: second.status, upstream: second.upstream, decision: second.decision, setCookie: second.cookie !== undefined }
}))
await app.close()
for (const { server } of upstreams) server.close()
