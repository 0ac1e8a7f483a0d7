/**
 * The one failure classifier: who is at fault for a failed forward, and what follows. Errors are shaped as
 * reply-from and the tunnel hand them over (an outer wrapper code, the transport's code as `cause`).
 */
import t from 'tap'
import { classifyForwardFailure, HANDSHAKE_TIMEOUT_CODE, planFailureResponse, type RetryContext } from '../../lib/core/failure'
import { forwardTarget } from '../../lib/core/forward-target'
import { createHeaderRewriter } from '../../lib/core/header-rewriter'
import { forwardedForValue } from '../../lib/core/upstream-headers'
import { resolveOptions } from '../../lib/options'

function wrapped (outer: string, inner?: string): Error {
  return Object.assign(new Error('wrapped'), { code: outer, cause: inner === undefined ? undefined : Object.assign(new Error('inner'), { code: inner }) })
}

const fresh: RetryContext = { replayable: true, idempotent: true, unreachedAttempts: 0, retried: false, poolSize: 3 }

t.test('only a failure to connect is the upstream\'s fault', async (t) => {
  const cases: Array<[Error, boolean, string]> = [
    [wrapped('FST_REPLY_FROM_INTERNAL_SERVER_ERROR', 'ECONNREFUSED'), false, 'unreached'],
    [wrapped('UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT'), false, 'unreached'],
    [wrapped('FST_REPLY_FROM_SERVICE_UNAVAILABLE', 'ENOTFOUND'), false, 'unreached'],
    [wrapped('FST_REPLY_FROM_INTERNAL_SERVER_ERROR', 'ECONNREFUSED'), true, 'unreached'],
    [wrapped('FST_REPLY_FROM_GATEWAY_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT'), false, 'timeout'],
    [wrapped(HANDSHAKE_TIMEOUT_CODE), false, 'timeout'],
    [wrapped('ECONNRESET', 'ECONNRESET'), false, 'reset'],
    [wrapped('ECONNRESET', 'ECONNRESET'), true, 'client-gone'],
    [wrapped('FST_REPLY_FROM_INTERNAL_SERVER_ERROR', 'UND_ERR_ABORTED'), false, 'client-gone'],
    [wrapped('FST_REPLY_FROM_INTERNAL_SERVER_ERROR', 'UND_ERR_INVALID_ARG'), false, 'bad-request'],
    [wrapped('FST_REPLY_FROM_INTERNAL_SERVER_ERROR', 'HPE_INVALID_CONSTANT'), false, 'bad-gateway'],
    [new Error('no code'), false, 'bad-gateway']
  ]
  for (const [error, gone, kind] of cases) {
    t.equal(classifyForwardFailure(error, gone).kind, kind, `${JSON.stringify((error as { code?: string }).code)} ${gone ? '(client gone)' : ''} → ${kind}`)
  }
  t.equal(classifyForwardFailure(wrapped('X', 'ECONNREFUSED'), false).code, 'ECONNREFUSED', 'the innermost code is reported')
})

t.test('the plan: blame, retry, answer', async (t) => {
  const plan = (kind: Parameters<typeof planFailureResponse>[0]['kind'], code?: string, context: Partial<RetryContext> = {}): ReturnType<typeof planFailureResponse> =>
    planFailureResponse({ kind, code }, { ...fresh, ...context })
  t.same(plan('timeout'), { blame: 'no', retry: false, status: 504 }, 'a slow answer: 504, no blame, no retry')
  t.same(plan('client-gone'), { blame: 'no', retry: false, status: null }, 'a client that left: nothing at all')
  t.same(plan('bad-request'), { blame: 'no', retry: false, status: 400 })
  t.same(plan('bad-gateway'), { blame: 'no', retry: false, status: 502 })
  t.same(plan('unreached', 'ECONNREFUSED'), { blame: 'yes', retry: true, status: 502 })
  t.same(plan('unreached', 'UND_ERR_CONNECT_TIMEOUT', { unreachedAttempts: 3 }), { blame: 'yes', retry: false, status: 504 }, 'every upstream tried once: no more retries')
  t.same(plan('unreached', 'ECONNREFUSED', { idempotent: false }).retry, true, 'never sent: any method is retried')
  t.same(plan('unreached', 'ECONNREFUSED', { replayable: false }).retry, false, 'but not a body that cannot be sent again')
  t.same(plan('reset'), { blame: 'if-unreachable', retry: true, status: 502 })
  t.same(plan('reset', undefined, { idempotent: false }).retry, false, 'a reset POST is not sent again')
  t.same(plan('reset', undefined, { retried: true }).retry, false, 'a reset is retried once')
})

t.test('forwardable targets: the one rule for requests and upgrades', async (t) => {
  // `/a/...b` is refused too: reply-from refuses any `/..`, and upgrades must refuse exactly what it refuses.
  for (const ok of ['/', '/a/b?q=1', '//double', '/a%20b', '/a/.b', '/a?x=/../%zz']) t.equal(forwardTarget(undefined, ok), ok, `${ok} forwarded (its query as it is)`)
  for (const bad of ['http://evil/', '*', 'example.com:443', '/a/../b', '/a/%2e%2e/b', '/a/.%2E', '/..', '/%zz', '/a/...b']) t.equal(forwardTarget(undefined, bad), null, `${bad} refused`)
  t.equal(forwardTarget('/v2/x', '/v1/x?room=1'), '/v2/x?room=1', 'a source without a query takes the request\'s')
  t.equal(forwardTarget('/v2/x?b=2', '/v1/x?room=1'), '/v2/x?b=2', 'a source with a query keeps its own')
  t.equal(forwardTarget('/v2/x?x=/../', '/v1/x'), null, 'a source is checked whole, as reply-from checks it')
})

t.test('forwarding headers are the edge\'s own', async (t) => {
  t.equal(forwardedForValue(undefined, '10.0.0.1'), '10.0.0.1', 'no trust: the peer alone')
  t.equal(forwardedForValue(['10.0.0.1'], '10.0.0.1'), '10.0.0.1')
  t.equal(forwardedForValue(['10.0.0.1', '10.0.0.2', '203.0.113.9'], '10.0.0.1'), '203.0.113.9, 10.0.0.2, 10.0.0.1', 'the trusted chain in header order')
  const { stringifySetCookie } = await import('cookie')
  const rewriter = createHeaderRewriter(resolveOptions({ secret: 's'.repeat(32), pools: { p: { upstreams: [{ id: 'a', url: 'http://127.0.0.1:1' }] } } }), stringifySetCookie)
  const headers: Record<string, unknown> = {
    connection: 'keep-alive, X-Drop, Host', 'x-drop': '1', host: 'h', te: 'trailers', 'keep-alive': '5', 'x-real-ip': '6.6.6.6',
    'x-forwarded-host': 'evil', 'x-forwarded-for': '6.6.6.6', expect: '100-continue', 'x-sticky-session': 'forged', 'x-sticky-rebound': '1', accept: '*/*'
  }
  const sent = rewriter.upstreamRequestHeaders(undefined, headers, { forwardedFor: '1.2.3.4', protocol: 'https', host: '' })
  t.same(sent, { host: 'h', accept: '*/*', 'x-forwarded-for': '1.2.3.4', 'x-forwarded-proto': 'https' }, 'hop-by-hop, claims and our own headers gone, Host kept, ours written')
  t.equal(headers['x-drop'], '1', 'the client\'s record is left as it was')
  const answered = rewriter.clientResponseHeaders(undefined, { connection: 'keep-alive, x-hop', 'keep-alive': 'timeout=5', 'x-hop': '1', 'transfer-encoding': 'chunked', 'content-type': 'text/plain', 'set-cookie': ['a=1'] })
  t.same(answered, { 'content-type': 'text/plain', 'set-cookie': ['a=1'] }, 'hop-by-hop response headers (and what Connection names) are not copied back')
  t.same(rewriter.clientResponseHeaders(undefined, { connection: 'close', close: 'x', 'x-kept': '1' }), { 'x-kept': '1' }, 'Connection: close names a header called close, which goes too')
  t.same(rewriter.upstreamRequestHeaders(undefined, { connection: 'Close', close: 'x', host: 'h' }, { forwardedFor: undefined, protocol: 'http', host: '' }), { host: 'h', 'x-forwarded-proto': 'http' })
})
