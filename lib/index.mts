// fastify-sticky for ES module importers: the same CommonJS module (one instance, however it is loaded), with
// the plugin as the default export. Without this entry TypeScript types `import sticky from 'fastify-sticky'`
// as CommonJS `module.exports` seen through the exports object's declarations, not as the plugin. The values
// are named one by one: `export *` of a CommonJS module would also export its `__esModule` marker.
import { sticky } from './index.js'

export type * from './index.js'
export { MemoryBindingStore, NearCacheStore, RedisBindingStore, sticky, stickyProxy } from './index.js'
export default sticky
