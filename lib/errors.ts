/**
 * Every error fastify-sticky raises, with a stable `FST_STICKY_*` code.
 * Only this module calls `createError`, so codes and status codes stay in one place.
 */
import createError from '@fastify/error'

/** Thrown at `register` time when a plugin option is invalid; the message names the dotted option path. */
export const InvalidOptionError = createError<[string]>(
  'FST_STICKY_INVALID_OPTION',
  'fastify-sticky: invalid option: %s',
  500,
  TypeError
)

/** Thrown from `ready()` when a route's `config.sticky` is invalid; the message names the route and the option. */
export const InvalidRouteConfigError = createError<[string, string]>(
  'FST_STICKY_INVALID_ROUTE_CONFIG',
  'fastify-sticky: invalid config.sticky on route %s: %s',
  500,
  TypeError
)

/** Thrown (404 if it reaches a route's reply) by the `app.sticky` API for a pool name that is not configured. */
export const UnknownPoolError = createError<[string]>('FST_STICKY_UNKNOWN_POOL', 'fastify-sticky: no pool named "%s"', 404)

/** Thrown (404 if it reaches a route's reply) by the `app.sticky` API for an upstream id the pool does not have. */
export const UnknownUpstreamError = createError<[string, string]>('FST_STICKY_UNKNOWN_UPSTREAM', 'fastify-sticky: pool "%s" has no upstream "%s"', 404)

/** Thrown (409 if it reaches a route's reply) by `pool(name).add()` for an id the pool already has. */
export const UpstreamExistsError = createError<[string, string]>('FST_STICKY_UPSTREAM_EXISTS', 'fastify-sticky: pool "%s" already has an upstream "%s"', 409)

/** Thrown at `register` time when @fastify/reply-from was registered with `base`, which pins every request to one origin. */
export const ReplyFromBaseError = createError(
  'FST_STICKY_REPLY_FROM_BASE',
  'fastify-sticky: @fastify/reply-from is registered with a `base` option, which sends every request to that one origin ' +
    'and would defeat sticky routing; register @fastify/reply-from without `base` (or let fastify-sticky register it)'
)

/** Sent (502) when the upstream refused, reset or answered garbage. */
export const BadGatewayError = createError('FST_STICKY_BAD_GATEWAY', 'Bad Gateway: the upstream did not answer properly', 502)

/** Sent (503) when the pool has no upstream that can take the request. */
export const NoUpstreamError = createError<[string]>('FST_STICKY_NO_UPSTREAM', 'Service Unavailable: no upstream available in pool "%s"', 503)

/** Sent (504) when the upstream did not connect or answer within the configured timeouts. */
export const UpstreamTimeoutError = createError('FST_STICKY_UPSTREAM_TIMEOUT', 'Gateway Timeout: the upstream did not answer in time', 504)

/** Sent (400) when the request target cannot be forwarded (absolute-form, a `..` segment, a bad %-escape) or a header cannot be sent. */
export const BadRequestTargetError = createError('FST_STICKY_BAD_REQUEST_TARGET', 'Bad Request: the request target cannot be forwarded', 400)

/** Sent (503) to an upgrade refused because the gateway, or this client, has as many open tunnels as allowed. */
export const TunnelLimitError = createError<[string]>('FST_STICKY_TUNNEL_LIMIT', 'Service Unavailable: too many open WebSocket tunnels %s', 503)

/** Thrown (404) by `app.sticky.bindings.move()` when the key has no binding to move. */
export const UnknownBindingError = createError('FST_STICKY_UNKNOWN_BINDING', 'fastify-sticky: no binding for this key', 404)

const AmbiguousBinding = createError<[string]>(
  'FST_STICKY_AMBIGUOUS_BINDING',
  'fastify-sticky: the key is bound in several pools (%s): name the pool',
  409
)

/** Thrown (409) by `app.sticky.bindings` when the key is bound in several pools and no pool was named. */
export class AmbiguousBindingError extends AmbiguousBinding {
  /** The pools the key is bound in. */
  readonly pools: readonly string[]
  /** @param pools - the pools the key is bound in */
  constructor (pools: readonly string[]) {
    super(pools.join(', '))
    this.pools = pools
  }
}

/** Thrown (409) by `app.sticky.bindings.move()` towards an upstream that is down. */
export const UpstreamDownError = createError<[string, string]>('FST_STICKY_UPSTREAM_DOWN', 'fastify-sticky: pool "%s": upstream "%s" is down', 409)

const BindingChanged = createError('FST_STICKY_BINDING_CHANGED', 'fastify-sticky: the binding changed meanwhile; look it up again', 409)

/** Thrown (409) by `app.sticky.bindings.move()` when another gateway moved or evicted the binding meanwhile. */
export class BindingChangedError extends BindingChanged {
  /** The upstream the binding is on now; `null` when it was evicted. */
  readonly upstream: string | null
  /** @param upstream - the upstream the binding is on now; `null` when it was evicted */
  constructor (upstream: string | null) {
    super()
    this.upstream = upstream
  }
}

/** 503 for a request whose session moved to another upstream on its way, when it cannot be replayed there. */
export const SessionMovedError = createError('FST_STICKY_SESSION_MOVED', 'Service Unavailable: this session just moved to another upstream; send the request again', 503)

const HandoffFailed = createError<[string]>('FST_STICKY_HANDOFF_FAILED', 'fastify-sticky: the session was not moved (%s); it stays where it was', 409)

/** Thrown (409) by `app.sticky.bindings.move(..., { handoff: true })` when the session and its state stayed where they were. */
export class HandoffFailedError extends HandoffFailed {
  /** Why: `unsupported`, `busy`, `too-large`, `export-failed`, `import-failed`, `source-unreachable`, `store-failed`, … */
  readonly reason: string
  /** @param reason - why the session stayed */
  constructor (reason: string) {
    super(reason)
    this.reason = reason
  }
}

/** Thrown (503) by `app.sticky.bindings` when the binding store cannot be asked (down, or its salt not read yet). */
export const StoreUnavailableError = createError('FST_STICKY_STORE_UNAVAILABLE', 'fastify-sticky: the binding store did not answer; try again', 503)
