// A TypeScript CommonJS consumer of the installed tarball, type-checked with moduleResolution node16 (the
// package's `require` types) and run by consumers.test.ts. Prints one JSON line.
import Fastify from 'fastify'
import sticky, { MemoryBindingStore, type StickyPluginOptions } from 'fastify-sticky'

async function main (): Promise<void> {
  const options: StickyPluginOptions = {
    secret: 'consumer-test-secret-0123456789abcdef',
    store: new MemoryBindingStore(),
    pools: { shop: { upstreams: [{ id: 'a', url: 'http://127.0.0.1:9' }] } }
  }
  const app = Fastify()
  await app.register(sticky, options)
  await app.ready()
  console.log(JSON.stringify({ consumer: 'ts-cjs', registered: app.hasPlugin('fastify-sticky'), pools: [...app.sticky.pools.keys()] }))
  await app.close()
  await options.store?.close()
}

main().catch((error: unknown) => {
  console.error(error)
  process.exitCode = 1
})
