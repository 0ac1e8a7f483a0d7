// fastify-sticky/http-proxy for ES module importers: the same CommonJS module, re-exported by name and as default.
import { stickyHttpProxy } from './index.js'

export * from './index.js'
export default stickyHttpProxy
