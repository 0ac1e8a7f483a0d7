/**
 * Where the Fastify front door keeps the core's per-request state: one symbol property on the request, set by the
 * affinity hook (or by `reply.forward()` outside sticky routes), and `request.sticky`, the public view of it.
 */
import type { FastifyRequest } from 'fastify'
import type { StickyRequestState } from '../core/request-state'

const kState = Symbol('fastify-sticky.state')

interface WithState { [kState]?: StickyRequestState }

/** @returns the request's routing state, if it has one */
export function stateOf (request: FastifyRequest): StickyRequestState | undefined {
  return (request as WithState)[kState]
}

/** Attaches routing state to a request and publishes its decision as `request.sticky`. */
export function attachState (request: FastifyRequest, state: StickyRequestState): void {
  (request as WithState)[kState] = state
  request.sticky = state.decision
}
