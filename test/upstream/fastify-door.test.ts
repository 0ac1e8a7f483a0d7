/**
 * fastify-sticky/upstream's Fastify plugin: the shared handoff behaviours, then what only this door does
 * (register-time option errors, route-level body handling, request.stickySession).
 */
import Fastify from 'fastify'
import t from 'tap'
import stickyUpstream from '../../lib/upstream/index'
import { HANDOFF_SECRET, send, startCartApp } from './cart-app'
import { handoffBehaviours } from './handoff-behaviours'

handoffBehaviours(t, 'fastify')

t.test('bad options fail register with a message naming the option', async (t) => {
  const base = { secret: HANDOFF_SECRET, exportSession: () => null, importSession: () => {} }
  const cases: Array<[string, object, RegExp]> = [
    ['short secret', { ...base, secret: 'short' }, /upstream\.secret must be a string of at least 32 characters, got 5 characters/],
    ['missing importSession', { ...base, importSession: undefined }, /upstream\.importSession must be a function/],
    ['bad timeout', { ...base, timeout: '5 parsecs' }, /upstream\.timeout must be a positive duration/],
    ['bad maxStateBytes', { ...base, maxStateBytes: 0 }, /upstream\.maxStateBytes must be a positive integer/],
    ['bad path', { ...base, path: '/handoff/' }, /upstream\.path must be/],
    ['unknown key', { ...base, holdMs: 5 }, /upstream\.holdMs is not an option/]
  ]
  for (const [label, options, message] of cases) {
    const app = Fastify()
    await t.rejects(async () => { await app.register(stickyUpstream, options as never).ready() }, { code: 'FST_STICKY_INVALID_OPTION', message }, label)
    await app.close()
  }
})

t.test('a custom path; other methods and steps are not served; the app keeps its own error handling', async (t) => {
  const app = await startCartApp(t, 'fastify', { path: '/internal/handoff' })
  app.carts.set('path-session', ['a'])
  const exported = await send(`${app.url}/internal/handoff/export`, {
    method: 'POST',
    headers: { authorization: `Bearer ${HANDOFF_SECRET}`, 'content-type': 'application/json' },
    body: JSON.stringify({ v: 1, session: 'path-session', holdMs: 1000 })
  })
  t.equal(exported.status, 200)
  t.equal((await send(`${app.url}/internal/handoff/abort`, { method: 'POST', headers: { authorization: `Bearer ${HANDOFF_SECRET}`, 'content-type': 'application/json' }, body: '{"v":1,"session":"path-session"}' })).status, 204)
  t.equal((await send(`${app.url}/.well-known/sticky-handoff/export`, { method: 'POST' })).status, 404, 'the default path is not served')
  t.equal((await send(`${app.url}/internal/handoff/export`, { headers: { authorization: `Bearer ${HANDOFF_SECRET}` } })).status, 404, 'GET is not a step')
  const wrongType = await send(`${app.url}/internal/handoff/export`, { method: 'POST', headers: { authorization: `Bearer ${HANDOFF_SECRET}`, 'content-type': 'text/plain' }, body: 'x' })
  t.equal(wrongType.status, 400)
  t.same(wrongType.json(), { v: 1, error: 'bad-request' })
  const appError = await send(`${app.url}/cart/x`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{' })
  t.equal(appError.json().code, 'FST_ERR_CTP_INVALID_JSON_BODY', 'outside the handoff routes, Fastify\'s own errors')
})
