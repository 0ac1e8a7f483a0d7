// fastify-sticky/express for ES module importers: the same CommonJS module (one instance, however it is loaded),
// re-exported by name (the Express door has no default export). The values are named one by one: `export *` of
// a CommonJS module would also export its `__esModule` marker.
export type * from './index.js'
export { BodyAlreadyReadError, createStickyMiddleware, silentLogger } from './index.js'
