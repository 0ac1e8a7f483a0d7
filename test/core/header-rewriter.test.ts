/**
 * The routing Set-Cookie text the core makes once per pool must be what @fastify/cookie (cookie@2) would write for
 * the same cookie, for every attribute a pool or the cookie options can set.
 */
import t from 'tap'
import { createHeaderRewriter } from '../../lib/core/header-rewriter'
import type { StickyRequestState } from '../../lib/core/request-state'
import { resolveOptions, resolveRouteConfig, type StickyPluginOptions } from '../../lib/options'

const upstreams = [{ id: 'a', url: 'http://127.0.0.1:1' }]

t.test('the routing Set-Cookie is byte for byte the serializer\'s, for every attribute combination', async (t) => {
  const { stringifySetCookie } = await import('cookie')
  const cookieOptions: Array<StickyPluginOptions['cookie']> = [
    {},
    { name: 'route', path: '/shop', maxAge: 3600, sameSite: 'strict', secure: true },
    { domain: 'example.com', sameSite: 'none', secure: 'auto' },
    { maxAge: '2h', secure: false, sameSite: 'lax' }
  ]
  const poolCookies = [undefined, { name: 'shopcookie', path: '/s', maxAge: 60 }]
  let checked = 0
  for (const cookie of cookieOptions) {
    for (const poolCookie of poolCookies) {
      const options = resolveOptions({ secret: 's'.repeat(32), cookie, pools: { p: { upstreams, ...(poolCookie === undefined ? {} : { cookie: poolCookie }) } } })
      const rewriter = createHeaderRewriter(options, stringifySetCookie)
      const route = resolveRouteConfig('GET /', { pool: 'p' }, options)
      for (const https of [false, true]) {
        const state = { route, cookie: '1.AAAAAAAAAAAAAAAAAAAAAA.a.lx3k9q2.Sig+/ab-_' } as unknown as StickyRequestState
        const parts = rewriter.routingCookie(state, https)
        if (parts === undefined) throw new Error('no routing cookie')
        t.equal(rewriter.routingSetCookie(state, https), stringifySetCookie({ name: parts.name, value: parts.value, ...parts.attributes }), `${JSON.stringify({ cookie, poolCookie, https })}`)
        checked++
      }
    }
  }
  t.equal(checked, 16)
  const options = resolveOptions({ secret: 's'.repeat(32), pools: { p: { upstreams } } })
  const none = { route: resolveRouteConfig('GET /', { pool: 'p' }, options), cookie: undefined } as unknown as StickyRequestState
  t.equal(createHeaderRewriter(options, stringifySetCookie).routingSetCookie(none, false), undefined, 'no cookie to set, no text')
})

t.test('client response headers: the upstream origin leaves Location and Content-Location, a routing cookie makes the answer private', async (t) => {
  const { stringifySetCookie } = await import('cookie')
  const options = resolveOptions({ secret: 's'.repeat(32), pools: { p: { upstreams: [{ id: 'a', url: 'http://10.0.0.7:8080' }] } } })
  const rewriter = createHeaderRewriter(options, stringifySetCookie)
  const route = resolveRouteConfig('GET /', { pool: 'p' }, options)
  const upstream = options.pools.p.upstreams[0]
  const state = (cookie: string | undefined): StickyRequestState => ({ route, cookie, decision: { upstream } }) as unknown as StickyRequestState
  const upstreamHeaders = {
    connection: 'keep-alive, x-hop',
    'keep-alive': 'timeout=5',
    'x-hop': '1',
    location: 'HTTP://10.0.0.7:8080/login?next=%2F',
    'content-location': 'http://10.0.0.7:8080',
    'cache-control': 'public, max-age=60',
    'x-other': 'http://10.0.0.7:8080/kept'
  }
  t.same(rewriter.clientResponseHeaders(state(undefined), upstreamHeaders), {
    location: '/login?next=%2F',
    'content-location': '/',
    'cache-control': 'public, max-age=60',
    'x-other': 'http://10.0.0.7:8080/kept'
  }, 'a returning client: only the references lose the origin')
  t.same(rewriter.clientResponseHeaders(state('1.x'), upstreamHeaders)['cache-control'], 'private, max-age=60', 'a response that sets the routing cookie')
  t.same(rewriter.clientResponseHeaders(state('1.x'), { 'content-type': 'text/plain' }), { 'content-type': 'text/plain', 'cache-control': 'private' })
  t.same(rewriter.clientResponseHeaders(undefined, { location: 'http://10.0.0.7:8080/x' }), { location: 'http://10.0.0.7:8080/x' }, 'no state, no upstream to take out')
  t.equal(upstreamHeaders.location, 'HTTP://10.0.0.7:8080/login?next=%2F', 'the upstream\'s record is left as it was')
})
