/**
 * The Express door's HTTP path on each host it supports (Express 5, Express 4, plain node:http): what reaches the
 * upstream, bodies both ways, the answers the gateway makes itself, and decisionOf (a new binding, then its hit).
 * Cookie affinity itself, the same for every door: test/doors/behaviours.ts.
 */
import http from 'node:http'
import t from 'tap'
import { CookieJar, get } from '../support/http'
import { MAX_ECHO_BODY_BYTES, startUpstreams } from '../support/upstreams'
import { startExpressGateway, type Host } from './express-gateway'

const HOSTS: Host[] = ['express5', 'express4', 'node']

// A GET with node:http, path and headers exactly as given.
function rawGet (base: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number, body: string }> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: new URL(base).port, path, headers, agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (c: string) => { body += c }).on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    }).on('error', reject)
  })
}

for (const host of HOSTS) {
  t.test(`${host}: the HTTP path`, async (t) => {
    const upstreams = await startUpstreams(t)
    const gateway = await startExpressGateway(t, { upstreams, host })

    t.test('forwarding headers are the gateway\'s own; client claims are dropped', async (t) => {
      // node:http sends Connection as given (undici's client would rewrite it).
      const echo = JSON.parse((await rawGet(gateway.url, '/h', {
        'x-forwarded-for': '6.6.6.6', forwarded: 'for=6.6.6.6', 'x-real-ip': '6.6.6.6', 'x-sticky-rebound': '1', connection: 'x-keep, close', 'x-keep': 'y'
      })).body)
      t.equal(echo.headers['x-forwarded-for'], '127.0.0.1', 'untrusted X-Forwarded-For replaced by the peer')
      t.equal(echo.headers['x-forwarded-proto'], 'http')
      t.equal(echo.headers['x-forwarded-host'], new URL(gateway.url).host)
      t.notOk('forwarded' in echo.headers || 'x-real-ip' in echo.headers, 'edge claims removed')
      t.notOk('x-sticky-rebound' in echo.headers, 'a client cannot claim a rebound')
      t.notOk('x-keep' in echo.headers, 'what Connection names is hop-by-hop')
      t.equal(echo.headers.host, new URL(upstreams.find((u) => u.id === echo.upstream)?.url ?? '').host, 'Host is the upstream\'s, as reply-from sends it')
    })

    t.test('bodies stream both ways, past the replay buffer', async (t) => {
      const small = await get(`${gateway.url}/post`, { method: 'POST', body: 'hello', headers: { 'content-type': 'text/plain' } })
      t.same([small.json().method, small.json().body], ['POST', 'hello'])
      const big = Buffer.alloc(MAX_ECHO_BODY_BYTES / 2, 'z') // over the 64 KiB replay limit: streamed
      const large = await get(`${gateway.url}/put`, { method: 'PUT', body: big })
      t.equal(large.json().body.length, big.length, 'a large body arrives whole')
      // Chunked, length unknown: streamed through as well.
      const chunked = await new Promise<string>((resolve, reject) => {
        const request = http.request(`${gateway.url}/chunked`, { method: 'POST' }, (response) => {
          let text = ''
          response.setEncoding('utf8').on('data', (c: string) => { text += c }).on('end', () => resolve(text))
        })
        request.on('error', reject)
        request.write('part one, ')
        setTimeout(() => request.end('part two'), 20)
      })
      t.equal(JSON.parse(chunked).body, 'part one, part two')
      const head = await get(`${gateway.url}/head`, { method: 'HEAD' })
      t.same([head.status, head.body], [200, ''], 'HEAD: headers, no body')
      const empty = await get(`${gateway.url}/status/204`)
      t.same([empty.status, empty.body], [204, ''])
      const failed = await get(`${gateway.url}/status/503`)
      t.equal(failed.status, 503, 'an upstream\'s own error status is passed on as it is')
      t.equal(failed.json().upstream !== undefined, true)
    })

    t.test('an unforwardable target is a 400 problem, never sent upstream', async (t) => {
      const hitsBefore = upstreams.reduce((n, u) => n + u.hits, 0)
      const response = await rawGet(gateway.url, '/a/%2e%2e/admin')
      t.equal(response.status, 400)
      t.match(JSON.parse(response.body), { statusCode: 400, code: 'FST_STICKY_BAD_REQUEST_TARGET' })
      t.equal(upstreams.reduce((n, u) => n + u.hits, 0), hitsBefore, 'no upstream saw it')
    })

    t.test('no upstream to take a new client: 503 with Retry-After and a JSON problem', async (t) => {
      for (const u of upstreams) await gateway.sticky.api.drain('shop', u.id)
      t.teardown(async () => { for (const u of upstreams) await gateway.sticky.api.undrain('shop', u.id) })
      const response = await get(`${gateway.url}/`)
      t.equal(response.status, 503)
      t.ok(Number(response.headers['retry-after']) >= 1, 'Retry-After')
      t.match(response.json(), { statusCode: 503, code: 'FST_STICKY_NO_UPSTREAM', error: 'Service Unavailable' })
      t.notMatch(response.body, /127\.0\.0\.1/, 'no address in the body')
      t.equal(response.setCookies.length, 0)
    })

    t.test('decisionOf tells where a request went', async (t) => {
      const seen: string[] = []
      const traced = await startExpressGateway(t, {
        upstreams,
        host,
        mount (sticky, app, server) {
          const proxy = sticky.proxy()
          const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
            res.once('finish', () => { seen.push(`${sticky.decisionOf(req)?.upstream.id}:${sticky.decisionOf(req)?.decision}`) })
            proxy(req, res)
          }
          if (app !== undefined) app.use(handler)
          else server.on('request', handler)
        }
      })
      const jar = new CookieJar()
      const upstream = (await get(`${traced.url}/`, { jar })).json().upstream
      await get(`${traced.url}/`, { jar })
      t.same(seen, [`${upstream}:new`, `${upstream}:hit`])
    })
  })
}

t.test('Express: mounted under a path, the whole original URL is forwarded; other routes stay the app\'s', async (t) => {
  const upstreams = await startUpstreams(t, ['a'])
  const gateway = await startExpressGateway(t, {
    upstreams,
    mount (sticky, app) {
      app?.get('/own', (_req, res) => { res.json({ own: true }) })
      app?.use('/shop', sticky.proxy({ pool: 'shop' }))
    }
  })
  t.same((await get(`${gateway.url}/own`)).json(), { own: true })
  t.equal((await get(`${gateway.url}/shop/cart?q=1`)).json().url, '/shop/cart?q=1')
  t.equal((await get(`${gateway.url}/elsewhere`)).status, 404, 'Express answers what no proxy is mounted on')
})

t.test('Express: a body parser before the proxy', async (t) => {
  const upstreams = await startUpstreams(t, ['a'])
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const express = require('express') as typeof import('express')
  const gateway = await startExpressGateway(t, {
    upstreams,
    mount (sticky, app) {
      app?.use('/raw', express.raw({ type: '*/*' }), sticky.proxy())
      app?.use('/json', express.json(), sticky.proxy())
      app?.use((error: Error, _req: http.IncomingMessage, res: http.ServerResponse, _next: unknown) => {
        res.statusCode = 500
        res.end(error.name)
      })
    }
  })
  const raw = await get(`${gateway.url}/raw/x`, { method: 'POST', body: 'bytes', headers: { 'content-type': 'text/plain' } })
  t.equal(raw.json().body, 'bytes', 'express.raw(): the buffered body is forwarded')
  const json = await get(`${gateway.url}/json/x`, { method: 'POST', body: { a: 1 } })
  t.same([json.status, json.body], [500, 'BodyAlreadyReadError'], 'a parsed body reaches next(error), not the upstream')
})
