// fastify-sticky/http-proxy for ES module importers: the same CommonJS module, re-exported by name and as default.
// The values are named one by one: `export *` of a CommonJS module would also export its `__esModule` marker.
import { stickyHttpProxy } from './index.js'

export type * from './index.js'
export { stickyHttpProxy }
export default stickyHttpProxy
