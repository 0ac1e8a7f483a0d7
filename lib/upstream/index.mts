// fastify-sticky/upstream for ES module importers: the same CommonJS module (one instance, however it is loaded),
// with the plugin as the default export. The values are named one by one: `export *` of a CommonJS module would
// also export its `__esModule` marker.
import { stickyUpstream } from './index.js'

export type * from './index.js'
export {
  createHandoffEndpoint, resolveUpstreamOptions, writeMoved, SessionTracker, stickyUpstream, MOVED_BODY, MOVED_ANSWER_MS,
  DEFAULT_MAX_STATE_BYTES, DEFAULT_HANDOFF_TIMEOUT_MS, HANDOFF_MOVED_HEADER, HANDOFF_VERSION, SESSION_HEADER,
  DEFAULT_HANDOFF_PATH, SESSION_HANDLE_RE, MIN_HANDOFF_SECRET_LENGTH
} from './index.js'
export default stickyUpstream
