'use strict'
// A JavaScript CommonJS consumer of the installed tarball: `require('fastify-sticky')` must be the plugin
// itself, as with other Fastify plugins, with `default`, `sticky` and the classes as properties. Prints one JSON
// line for consumers.test.ts.
const assert = require('node:assert/strict')
const { createServer } = require('node:http')
const Fastify = require('fastify')
const sticky = require('fastify-sticky')
const { sticky: named, MemoryBindingStore, RedisBindingStore, UpstreamPool } = require('fastify-sticky')

assert.equal(typeof sticky, 'function', 'require() returns the plugin')
assert.equal(sticky.default, sticky, 'require().default is the plugin')
assert.equal(named, sticky, 'require().sticky is the plugin')
for (const value of [MemoryBindingStore, RedisBindingStore, UpstreamPool]) assert.equal(typeof value, 'function')

async function startUpstream (id) {
  const server = createServer((request, response) => {
    response.setHeader('content-type', 'application/json')
    response.end(JSON.stringify({ upstream: id, url: request.url }))
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { id, url: `http://127.0.0.1:${server.address().port}`, server }
}

async function main () {
  const upstreams = await Promise.all(['a', 'b'].map(startUpstream))
  // The in-memory store, passed explicitly: the plugin does not close a store it was given.
  const store = new MemoryBindingStore({ maxBindings: 100 })
  const app = Fastify()
  app.register(sticky, {
    secret: 'consumer-test-secret-0123456789abcdef',
    store,
    pools: { shop: { upstreams: upstreams.map(({ id, url }) => ({ id, url })) } }
  })
  app.after(() => {
    app.get('/shop/*', { config: { sticky: true } }, (request, reply) => {
      reply.header('x-sticky-decision', request.sticky.decision)
      return reply.forward()
    })
  })

  const exchange = async (cookies) => {
    const response = await app.inject({ url: '/shop/cart', cookies })
    const cookie = response.cookies.find((c) => c.name === 'sticky')
    return { status: response.statusCode, upstream: response.json().upstream, decision: response.headers['x-sticky-decision'], cookie }
  }
  const first = await exchange({})
  const second = await exchange({ sticky: first.cookie.value })
  console.log(JSON.stringify({
    consumer: 'cjs',
    first: { status: first.status, upstream: first.upstream, decision: first.decision, setCookie: first.cookie !== undefined, httpOnly: first.cookie?.httpOnly === true },
    second: { status: second.status, upstream: second.upstream, decision: second.decision, setCookie: second.cookie !== undefined }
  }))
  await app.close()
  await store.close()
  for (const { server } of upstreams) server.close()
}

main().catch((error) => {
  console.error(error)
  process.exitCode = 1
})
