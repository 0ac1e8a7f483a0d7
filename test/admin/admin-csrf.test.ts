/**
 * Issue #16 finding 10c: with an authHook that accepts a cookie, a browser attaches the credential to any request
 * to the admin API, cross-site forms and no-cors fetches included. A request that changes state must prove a
 * script sent it: an x-sticky-admin header or a JSON body (neither is sendable cross-site without a preflight).
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { ADMIN_HEADER_REQUIRED_CODE, ADMIN_REQUEST_HEADER } from '../../lib/admin/routes'
import { openBrowser } from '../support/browser'
import { CookieJar, get } from '../support/http'
import { startUpstreams } from '../support/upstreams'
import { startAdminGateway } from './admin-gateway'

const OPS_COOKIE = 'ops-session=valid-operator-session'

/** An authHook as a site with its own operator login would write it: a session cookie is the credential. */
function cookieAuth (seen: string[]) {
  return function opsSession (request: FastifyRequest, reply: FastifyReply, done: () => void): void {
    const ok = request.cookies['ops-session'] === 'valid-operator-session'
    seen.push(`${request.method} ${request.url.split('?')[0]} ${ok ? 'cookie' : 'none'}`)
    if (ok) done()
    else reply.code(401).send({ statusCode: 401, error: 'Unauthorized', message: 'Unauthorized' })
  }
}

const REFUSED = { statusCode: 403, error: 'Forbidden', code: ADMIN_HEADER_REQUIRED_CODE, message: new RegExp(`needs an ${ADMIN_REQUEST_HEADER} header or a JSON body`) }

t.test('a cookie authHook: a request that changes state needs x-sticky-admin or a JSON body', async (t) => {
  const upstreams = await startUpstreams(t, ['a', 'b'])
  const seen: string[] = []
  const gw = await startAdminGateway(t, { upstreams, authHook: cookieAuth(seen) })
  const jar = new CookieJar()
  const bound = (await get(`${gw.url}/`, { jar })).json().upstream as string
  const other = bound === 'a' ? 'b' : 'a'
  const binding = `/bindings/${jar.get('sticky') as string}`
  const send = (method: string, path: string, headers: Record<string, string> = {}, body?: string): ReturnType<typeof get> =>
    get(`${gw.admin}${path}`, { method, headers: { cookie: OPS_COOKIE, ...headers }, body })

  // What a cross-site form (urlencoded, multipart, text/plain) or a no-cors fetch can send, the cookie attached.
  const simple: Array<[string, string, Record<string, string>, string?]> = [
    ['POST', '/upstreams/a/drain', {}],
    ['POST', '/upstreams/a/drain', { 'content-type': 'text/plain' }, ''],
    ['POST', '/upstreams/a/drain', { 'content-type': 'text/plain;charset=UTF-8' }, '{"json":"in disguise"}'],
    ['POST', '/upstreams/a/drain', { 'content-type': 'application/x-www-form-urlencoded' }, 'a=1'],
    ['POST', '/upstreams/a/drain', { 'content-type': 'multipart/form-data; boundary=x' }, '--x--\r\n'],
    ['POST', '/upstreams/a/drain', { 'content-type': 'text/plain; application/json' }, '{}'],
    ['POST', '/upstreams/b/undrain', {}],
    ['PUT', binding, { 'content-type': 'text/plain' }, JSON.stringify({ upstream: other })],
    ['DELETE', binding, {}]
  ]
  for (const [method, path, headers, body] of simple) {
    const response = await send(method, path, headers, body)
    t.equal(response.status, 403, `${method} ${path.slice(0, 24)} ${headers['content-type'] ?? '(no content type)'}: refused`)
    t.match(response.json(), REFUSED, 'with a coded JSON body saying what is missing')
  }
  t.ok(seen.every((line) => line.endsWith(' cookie')), 'each of them passed the authHook: only the new rule refused them')
  t.equal(gw.app.sticky.state('shop', 'a'), 'active', 'nothing was drained')
  t.equal((await send('GET', binding)).json().upstream, bound, 'nor moved nor evicted; reading needs no header')

  const anonymous = await get(`${gw.admin}/upstreams/a/drain`, { method: 'POST' })
  t.equal(anonymous.status, 401, 'without the cookie: 401 first, the rule tells a stranger nothing')

  const drained = await send('POST', '/upstreams/a/drain', { [ADMIN_REQUEST_HEADER]: '1' })
  t.equal(drained.status, 200, 'the header lets it through')
  t.equal(gw.app.sticky.state('shop', 'a'), 'draining')
  const undrained = await send('POST', '/upstreams/a/undrain', { 'content-type': 'application/json' })
  t.equal(undrained.status, 200, 'so does a JSON content type (a body-less one too)')
  t.equal(gw.app.sticky.state('shop', 'a'), 'active')
  const moved = await send('PUT', binding, { 'content-type': 'application/json; charset=utf-8' }, JSON.stringify({ upstream: other }))
  t.equal(moved.status, 200, 'a JSON body moves a binding')
  t.equal(moved.json().upstream, other)
  t.equal((await send('PUT', binding, { [ADMIN_REQUEST_HEADER]: '1', 'content-type': 'text/plain' }, 'x')).status, 415, 'with the header, a non-JSON body is still refused by type')
  t.equal((await send('DELETE', binding, { [ADMIN_REQUEST_HEADER]: '1' })).status, 204, 'the header evicts')
})

/** A page of another origin on the same host (another port is the same site: Lax cookies go along). */
async function startAttackerSite (t: Test, pages: Record<string, string>): Promise<string> {
  const server = http.createServer((request, response) => {
    const page = pages[request.url ?? '']
    response.writeHead(page === undefined ? 404 : 200, { 'content-type': 'text/html; charset=utf-8' })
    response.end(page ?? '')
  })
  t.teardown(() => new Promise<void>((resolve) => {
    server.closeAllConnections()
    server.close(() => resolve())
  }))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

t.test('in Chromium, another site\'s form post and no-cors fetch carry the cookie but drain nothing', async (t) => {
  const upstreams = await startUpstreams(t, ['a', 'b'])
  const seen: string[] = []
  const gw = await startAdminGateway(t, { upstreams, authHook: cookieAuth(seen) })
  const drain = `${gw.admin}/upstreams/a/drain`
  const site = await startAttackerSite(t, {
    '/form': `<!doctype html><form id="f" method="POST" action="${drain}"><input name="x" value="1"></form>
<script>document.getElementById('f').submit()</script>`,
    '/json-form': `<!doctype html><form id="f" method="POST" enctype="text/plain" action="${drain}"><input name='{"a":"' value='"}'></form>
<script>document.getElementById('f').submit()</script>`,
    '/blank': '<!doctype html><title>blank</title>'
  })
  const { context, page } = await openBrowser(t)
  // The operator is logged in to the admin API through the site's own login: the browser holds the cookie.
  await context.addCookies([{ name: 'ops-session', value: 'valid-operator-session', url: gw.url, sameSite: 'Lax' }])

  for (const form of ['/form', '/json-form']) {
    const answered = page.waitForResponse((response) => response.url() === drain)
    await page.goto(`${site}${form}`)
    const response = await answered
    t.equal(response.status(), 403, `${form}: the cross-site form post is refused`)
    t.equal(gw.app.sticky.state('shop', 'a'), 'active', `${form}: nothing drained`)
  }
  await page.goto(`${site}/blank`)
  await page.evaluate(async (url) => {
    await fetch(url, { method: 'POST', mode: 'no-cors', credentials: 'include' })
    await fetch(url, { method: 'POST', mode: 'no-cors', credentials: 'include', body: '{}', headers: { 'content-type': 'text/plain' } })
  }, drain)
  t.equal(gw.app.sticky.state('shop', 'a'), 'active', 'the no-cors fetches drained nothing')
  const attacks = seen.filter((line) => line.startsWith('POST /_sticky/upstreams/a/drain'))
  t.same(attacks, Array(4).fill('POST /_sticky/upstreams/a/drain cookie'), 'every attempt reached the admin API with the operator\'s cookie')
})
