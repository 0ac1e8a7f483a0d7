// fastify-sticky/express for ES module importers: the same CommonJS module (one instance, however it is loaded),
// re-exported by name (the Express door has no default export).
export * from './index.js'
