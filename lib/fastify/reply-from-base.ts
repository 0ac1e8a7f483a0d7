/**
 * Finds out whether an already registered @fastify/reply-from was given a `base`. reply-from keeps its options
 * private, but it hands `base` to the `getUpstream` callback before doing anything else, so one dry call that
 * stops inside that callback reveals it without sending anything.
 */
import type { FastifyInstance } from 'fastify'

// fastify exports no types for its symbols module; kReply is the key of the instance's Reply class.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { kReply } = require('fastify/lib/symbols') as { kReply: symbol }

const STOP = Symbol('stop')

type FromFunction = (this: unknown, source: string, options: { getUpstream: (request: unknown, base: unknown) => string }) => unknown

/**
 * @param fastify - an instance on which `reply.from` is decorated
 * @returns the `base` reply-from was registered with, or `undefined` when it has none (or cannot be probed)
 */
export function findReplyFromBase (fastify: FastifyInstance): unknown {
  const ReplyClass = (fastify as unknown as Record<symbol, { prototype: { from?: FromFunction } } | undefined>)[kReply]
  const from = ReplyClass?.prototype.from
  if (typeof from !== 'function') return undefined
  let base: unknown
  const fakeReply = { request: { raw: { method: 'GET', url: '/', headers: {} } } }
  try {
    from.call(fakeReply, '/', { getUpstream: (_request, givenBase) => { base = givenBase; throw STOP } })
  } catch (error) {
    if (error !== STOP) return undefined
  }
  return base
}
