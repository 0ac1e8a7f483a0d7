/**
 * fastify-sticky/upstream's node:http / Express middleware (createHandoffEndpoint): the shared handoff behaviours,
 * then what only this door does (its own body reading, other methods, sessionOf, close).
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import express from 'express'
import t from 'tap'
import { createHandoffEndpoint } from '../../lib/upstream/index'
import { HANDOFF_SECRET, send, startCartApp } from './cart-app'
import { handoffBehaviours } from './handoff-behaviours'

handoffBehaviours(t, 'express')

t.test('bad options throw at creation', async (t) => {
  t.throws(() => createHandoffEndpoint({ secret: HANDOFF_SECRET, exportSession: () => null, importSession: 'no' as never }), {
    code: 'FST_STICKY_INVALID_OPTION', message: /upstream\.importSession must be a function, got "no"/
  })
})

t.test('methods and unknown steps under the path, after auth', async (t) => {
  const app = await startCartApp(t, 'express')
  const auth = { authorization: `Bearer ${HANDOFF_SECRET}` }
  t.equal((await send(`${app.url}/.well-known/sticky-handoff/export`)).status, 401, 'auth first, whatever the method')
  const get = await send(`${app.url}/.well-known/sticky-handoff/export`, { headers: auth })
  t.equal(get.status, 405)
  t.equal(get.headers.allow, 'POST')
  t.equal((await send(`${app.url}/.well-known/sticky-handoff/steal`, { method: 'POST', headers: auth, body: '{}' })).status, 404)
})

t.test('plain node:http; close() releases frozen sessions', async (t) => {
  const carts = new Map<string, unknown>([['node-session-1', { n: 1 }]])
  const handoff = createHandoffEndpoint({
    secret: HANDOFF_SECRET,
    exportSession: (session) => carts.get(session),
    importSession: (session, state) => { carts.set(session, state) }
  })
  const server = http.createServer((req, res) => {
    handoff.middleware(req, res, () => { res.end(JSON.stringify({ session: handoff.sessionOf(req) })) })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.closeAllConnections(); server.close() })
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const exported = await send(`${url}/.well-known/sticky-handoff/export`, {
    method: 'POST', headers: { authorization: `Bearer ${HANDOFF_SECRET}` }, body: '{"v":1,"session":"node-session-1","holdMs":5000}'
  })
  t.same(exported.json(), { v: 1, session: 'node-session-1', state: { n: 1 } }, 'no content-type needed')
  t.ok(handoff.tracker.frozen('node-session-1'))
  const held = send(url, { headers: { 'x-sticky-session': 'node-session-1' } })
  await new Promise((resolve) => setTimeout(resolve, 50))
  handoff.close()
  t.same((await held).json(), { session: 'node-session-1' }, 'served once closed')
  t.notOk(handoff.tracker.frozen('node-session-1'))
})

t.test('mounted after express.json(): the parsed body is taken', async (t) => {
  const handoff = createHandoffEndpoint({ secret: HANDOFF_SECRET, exportSession: () => ['parsed'], importSession: () => {} })
  const app = express()
  app.use(express.json())
  app.use(handoff.middleware)
  const server = http.createServer(app)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { handoff.close(); server.closeAllConnections(); server.close() })
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/sticky-handoff/export`
  const exported = await send(url, {
    method: 'POST',
    headers: { authorization: `Bearer ${HANDOFF_SECRET}`, 'content-type': 'application/json' },
    body: '{"v":1,"session":"parsed-session","holdMs":1000}'
  })
  t.same(exported.json(), { v: 1, session: 'parsed-session', state: ['parsed'] })
})
