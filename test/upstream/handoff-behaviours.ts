/**
 * The handoff behaviours every door of fastify-sticky/upstream must show, over real HTTP: run by
 * fastify-door.test.ts and express-door.test.ts.
 */
import type { Test } from 'tap'
import { abortedGet, asSession, handoff, HANDOFF_SECRET, send, sleep, startCartApp, watch, type Answer, type Door } from './cart-app'

const MOVED = { statusCode: 421, code: 'FST_STICKY_SESSION_MOVED', message: 'this session moved to another upstream; the gateway retries there' }

function assertMoved (t: Test, answer: Answer, label: string): void {
  t.equal(answer.status, 421, `${label}: 421`)
  t.equal(answer.headers['x-sticky-moved'], '1', `${label}: x-sticky-moved`)
  t.match(answer.headers['content-type'], /^application\/json/, `${label}: JSON`)
  t.same(answer.json(), MOVED, `${label}: the moved body`)
}

/** Runs the shared suite against `door`. */
export function handoffBehaviours (t: Test, door: Door): void {
  t.test('auth comes first; nothing is served without the secret', async (t) => {
    const app = await startCartApp(t, door)
    app.carts.set('auth-session', ['a'])
    for (const [label, authorization] of [['none', null], ['wrong', 'Bearer nope-nope-nope-nope-nope-nope-nope'], ['basic', `Basic ${HANDOFF_SECRET}`], ['bare', HANDOFF_SECRET]] as const) {
      const answer = await handoff(app, 'export', { v: 1, session: 'auth-session', holdMs: 1000 }, authorization)
      t.equal(answer.status, 401, `${label}: 401`)
      t.same(answer.json(), { v: 1, error: 'unauthorized' }, `${label}: no other detail`)
      const garbage = await handoff(app, 'import', 'not json at all', authorization)
      t.equal(garbage.status, 401, `${label}: 401 before the body is looked at`)
    }
    t.equal(app.calls.export, 0, 'exportSession never called')
    t.equal(app.carts.has('auth-session'), true)
    const served = await asSession(app, 'auth-session', '/cart')
    t.equal(served.status, 200, 'the session was not frozen')
    t.equal((await handoff(app, 'export', { v: 1, session: 'auth-session', holdMs: 1000 }, `bearer  ${HANDOFF_SECRET} `)).status, 200, 'scheme case-insensitive, spaces trimmed')
    await handoff(app, 'abort', { v: 1, session: 'auth-session' })
  })

  t.test('version first, then the body shape', async (t) => {
    const app = await startCartApp(t, door)
    const unsupported = await handoff(app, 'export', { v: 2, session: 'version-session', holdMs: 1000, whatever: true })
    t.equal(unsupported.status, 400)
    t.same(unsupported.json(), { v: 1, error: 'unsupported-version', supported: [1] })
    const cases: Array<[string, string, unknown]> = [
      ['export', 'not JSON', '{"v":1,'],
      ['export', 'an array', [1]],
      ['export', 'no session', { v: 1, holdMs: 1000 }],
      ['export', 'a bad handle', { v: 1, session: 'short', holdMs: 1000 }],
      ['export', 'a handle with a slash', { v: 1, session: 'abc/defghij', holdMs: 1000 }],
      ['export', 'holdMs a string', { v: 1, session: 'version-session', holdMs: '1000' }],
      ['import', 'no state', { v: 1, session: 'version-session' }],
      ['commit', 'session a number', { v: 1, session: 12345678 }]
    ]
    for (const [step, label, body] of cases) {
      const answer = await handoff(app, step, body)
      t.equal(answer.status, 400, `${step} with ${label}: 400`)
      t.same(answer.json(), { v: 1, error: 'bad-request' }, `${step} with ${label}: bad-request`)
    }
    t.equal(app.calls.export + app.calls.import, 0, 'the app was never asked')
  })

  t.test('export → import → commit moves the cart; the old upstream answers 421 for a minute', async (t) => {
    const [x, y] = await Promise.all([startCartApp(t, door), startCartApp(t, door)])
    const session = 'move-session-1'
    await asSession(x, session, '/cart/apple', 'POST')
    await asSession(x, session, '/cart/pear', 'POST')
    const exported = await handoff(x, 'export', { v: 1, session, holdMs: 2000 })
    t.equal(exported.status, 200)
    t.same(exported.json(), { v: 1, session, state: ['apple', 'pear'] })

    const held = watch(asSession(x, session, '/cart'))
    const imported = await handoff(y, 'import', { v: 1, session, state: exported.json().state })
    t.equal(imported.status, 204)
    t.equal(imported.text, '')
    t.same((await asSession(y, session, '/cart')).json(), { session, items: ['apple', 'pear'] }, 'the new upstream serves the cart')
    t.notOk(held.settled, 'the old upstream holds the request meanwhile')

    t.equal((await handoff(x, 'commit', { v: 1, session })).status, 204)
    assertMoved(t, await held.promise, 'held request')
    t.notOk(x.carts.has(session), 'dropSession ran')
    assertMoved(t, await asSession(x, session, '/cart'), 'later request')
    t.equal((await handoff(x, 'commit', { v: 1, session })).status, 204, 'a retried commit is still fine')
    const again = await handoff(x, 'export', { v: 1, session, holdMs: 1000 })
    t.same([again.status, again.json().error], [409, 'moved'], 'handed over a moment ago: not "unknown" (which would move it without state)')

    // Moving back clears the marker at once.
    t.equal((await handoff(x, 'import', { v: 1, session, state: ['apple', 'pear', 'plum'] })).status, 204)
    t.same((await asSession(x, session, '/cart')).json().items, ['apple', 'pear', 'plum'], 'served again after moving back')
  })

  t.test('a request in flight delays the export until it finishes', async (t) => {
    const app = await startCartApp(t, door)
    const session = 'slow-session-1'
    const slow = asSession(app, session, '/slow/300')
    await sleep(50)
    const started = Date.now()
    const exported = await handoff(app, 'export', { v: 1, session, holdMs: 1000 })
    t.ok(Date.now() - started >= 200, 'the export waited for the request')
    t.equal((await slow).status, 200)
    t.same(exported.json().state, ['slow'], 'the state includes what the request did')
    t.equal((await handoff(app, 'abort', { v: 1, session })).status, 204)
  })

  t.test('a request that outlasts the timeout: 409 busy, and the session is not left frozen', async (t) => {
    const app = await startCartApp(t, door, { timeout: 200 })
    const session = 'busy-session-1'
    const slow = asSession(app, session, '/slow/600')
    await sleep(50)
    const exported = await handoff(app, 'export', { v: 1, session, holdMs: 1000 })
    t.equal(exported.status, 409)
    t.same(exported.json(), { v: 1, error: 'busy' })
    t.equal((await asSession(app, session, '/cart')).status, 200, 'served at once')
    await slow
  })

  t.test('abort serves the held requests here', async (t) => {
    const app = await startCartApp(t, door)
    const session = 'abort-session-1'
    await asSession(app, session, '/cart/fig', 'POST')
    t.equal((await handoff(app, 'export', { v: 1, session, holdMs: 2000 })).status, 200)
    const held = [watch(asSession(app, session, '/cart')), watch(asSession(app, session, '/cart/kiwi', 'POST'))]
    await sleep(100)
    t.notOk(held.some((h) => h.settled), 'held while frozen')
    t.equal((await handoff(app, 'abort', { v: 1, session })).status, 204)
    const answers = await Promise.all(held.map((h) => h.promise))
    t.same(answers.map((a) => a.status), [200, 200], 'served by the app')
    t.same(app.carts.get(session), ['fig', 'kiwi'])
    t.equal((await handoff(app, 'abort', { v: 1, session })).status, 204, 'abort is idempotent')
    t.equal((await handoff(app, 'abort', { v: 1, session: 'never-seen-1' })).status, 204, 'abort of an unknown session: 204')
    t.equal((await handoff(app, 'commit', { v: 1, session })).status, 409, 'commit after abort: nothing to commit')
  })

  t.test('the hold expires by itself; a late commit is 409 expired', async (t) => {
    const app = await startCartApp(t, door)
    const session = 'expire-session-1'
    await asSession(app, session, '/cart/lime', 'POST')
    const started = Date.now()
    t.equal((await handoff(app, 'export', { v: 1, session, holdMs: 250 })).status, 200)
    const held = await asSession(app, session, '/cart')
    t.ok(Date.now() - started >= 200, 'held until the hold ran out')
    t.equal(held.status, 200, 'then served by the app')
    t.same(held.json().items, ['lime'])
    const late = await handoff(app, 'commit', { v: 1, session })
    t.equal(late.status, 409)
    t.same(late.json(), { v: 1, error: 'expired' })
    t.equal((await asSession(app, session, '/cart')).status, 200, 'not moved')
  })

  t.test('holdMs is bounded by the timeout', async (t) => {
    const app = await startCartApp(t, door, { timeout: 200 })
    const session = 'bounded-hold-1'
    app.carts.set(session, [])
    const started = Date.now()
    t.equal((await handoff(app, 'export', { v: 1, session, holdMs: 60_000 })).status, 200)
    t.equal((await asSession(app, session, '/cart')).status, 200)
    t.ok(Date.now() - started < 1500, 'released after the timeout, not after holdMs')
  })

  t.test('unknown session: 404, not frozen', async (t) => {
    const app = await startCartApp(t, door)
    const answer = await handoff(app, 'export', { v: 1, session: 'unknown-session', holdMs: 5000 })
    t.equal(answer.status, 404)
    t.same(answer.json(), { v: 1, error: 'unknown-session' })
    t.equal((await asSession(app, 'unknown-session', '/cart')).status, 200, 'served at once')
  })

  t.test('too large: 413 on export (not frozen) and on import', async (t) => {
    const app = await startCartApp(t, door, { maxStateBytes: 200 })
    const session = 'large-session-1'
    app.carts.set(session, ['x'.repeat(300)])
    const exported = await handoff(app, 'export', { v: 1, session, holdMs: 5000 })
    t.equal(exported.status, 413)
    t.same(exported.json(), { v: 1, error: 'too-large' })
    t.equal((await asSession(app, session, '/cart')).status, 200, 'served at once')
    const state = ['y'.repeat(300)]
    t.equal((await handoff(app, 'import', { v: 1, session: 'large-session-2', state })).status, 413, 'over maxStateBytes')
    t.equal((await handoff(app, 'import', { v: 1, session: 'large-session-2', state: ['z'.repeat(5000)] })).status, 413, 'over the body limit')
    t.equal(app.calls.import, 0)
  })

  t.test('exportSession throwing or hanging: 500 failed, not frozen', async (t) => {
    const app = await startCartApp(t, door, { timeout: 200 })
    for (const session of ['throws-session', 'hangs-session']) {
      const answer = await handoff(app, 'export', { v: 1, session, holdMs: 5000 })
      t.equal(answer.status, 500, `${session}: 500`)
      t.same(answer.json(), { v: 1, error: 'failed' })
      t.equal((await asSession(app, session, '/cart')).status, 200, `${session}: served at once`)
    }
    const failing = await startCartApp(t, door, { timeout: 200, importSession: () => { throw new Error('no') }, dropSession: () => { throw new Error('no') } })
    t.same((await handoff(failing, 'import', { v: 1, session: 'import-fails', state: 1 })).json(), { v: 1, error: 'failed' })
    failing.carts.set('drop-fails-1', [])
    t.equal((await handoff(failing, 'export', { v: 1, session: 'drop-fails-1', holdMs: 1000 })).status, 200)
    t.equal((await handoff(failing, 'commit', { v: 1, session: 'drop-fails-1' })).status, 204, 'a failing dropSession does not fail the commit')
    assertMoved(t, await asSession(failing, 'drop-fails-1', '/cart'), 'after the commit')
  })

  t.test('in-flight accounting: many concurrent requests, some aborted, then an export at once', async (t) => {
    const app = await startCartApp(t, door, { timeout: 500 })
    const session = 'crowd-session-1'
    const finished = Array.from({ length: 20 }, (_, i) => asSession(app, session, `/slow/${20 + (i % 5) * 20}`))
    const aborted = Array.from({ length: 10 }, (_, i) => abortedGet(app, session, `/slow/${150 + i * 10}`, 30))
    await Promise.all([...finished, ...aborted])
    await sleep(50)
    if (app.endpoint !== undefined) t.equal(app.endpoint.tracker.inFlight(session), 0, 'count back to 0')
    const started = Date.now()
    const exported = await handoff(app, 'export', { v: 1, session, holdMs: 1000 })
    t.equal(exported.status, 200, 'not busy: no count leaked')
    t.ok(Date.now() - started < 400, 'no wait either')
    await handoff(app, 'abort', { v: 1, session })
    // A request aborted while held is not counted when the hold ends.
    t.equal((await handoff(app, 'export', { v: 1, session, holdMs: 1000 })).status, 200)
    await abortedGet(app, session, '/cart', 30)
    t.equal((await handoff(app, 'abort', { v: 1, session })).status, 204)
    await sleep(20)
    if (app.endpoint !== undefined) t.equal(app.endpoint.tracker.inFlight(session), 0, 'still 0, never negative')
    t.equal((await handoff(app, 'export', { v: 1, session, holdMs: 1000 })).status, 200, 'exportable at once again')
    await handoff(app, 'abort', { v: 1, session })
  })

  t.test('requests without a (valid) header are untouched', async (t) => {
    const app = await startCartApp(t, door)
    const session = 'frozen-session-1'
    app.carts.set(session, [])
    t.equal((await handoff(app, 'export', { v: 1, session, holdMs: 2000 })).status, 200)
    const plain = await asSession(app, 'bad/handle!', '/cart')
    t.equal(plain.status, 200)
    t.equal(plain.json().session, null, 'a malformed handle is no session')
    const none = await send(`${app.url}/cart`)
    t.same(none.json(), { session: null, items: [] })
    t.equal((await asSession(app, 'other-session-1', '/cart')).json().session, 'other-session-1', 'other sessions are served')
    await handoff(app, 'abort', { v: 1, session })
  })
}
