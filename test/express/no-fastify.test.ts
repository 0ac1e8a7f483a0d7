/**
 * An Express user installs nothing of Fastify: in a process of its own that never loads Fastify, the Express door
 * routes requests with cookies (parsing and serialising them needs no Fastify plugin registered), and loads nothing
 * of fastify, @fastify/reply-from, express or another front door.
 */
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import t from 'tap'

const root = path.resolve(__dirname, '../..')

const PROBE = `
const http = require('node:http')
const { createStickyMiddleware, silentLogger } = require('./lib/express/index.ts')
const listen = (server) => new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)))
const call = (port, headers) => new Promise((resolve, reject) => {
  http.get({ host: '127.0.0.1', port, path: '/x', headers, agent: false }, (res) => {
    let body = ''
    res.setEncoding('utf8').on('data', (c) => { body += c }).on('end', () => resolve({ status: res.statusCode, setCookie: res.headers['set-cookie'] ?? [], body }))
  }).on('error', reject)
})
;(async () => {
  const upstream = http.createServer((req, res) => res.end(JSON.stringify({ cookie: req.headers.cookie ?? null })))
  const upstreamPort = await listen(upstream)
  const sticky = await createStickyMiddleware({
    secret: 'x'.repeat(32), logger: silentLogger,
    pools: { shop: { upstreams: [{ id: 'a', url: 'http://127.0.0.1:' + upstreamPort }] } }
  })
  const handler = sticky.proxy()
  const gateway = http.createServer((req, res) => handler(req, res, (error) => { res.statusCode = 500; res.end(String(error)) }))
  const port = await listen(gateway)
  const first = await call(port, { cookie: 'app=1; sticky=garbage' })
  const routing = first.setCookie[0].split(';')[0]
  const again = await call(port, { cookie: routing + '; app=2' })
  await sticky.close()
  gateway.close(); upstream.close()
  process.stdout.write(JSON.stringify({ first, again, loaded: Object.keys(require.cache) }))
})().catch((error) => { process.stderr.write(String(error && error.stack)); process.exit(1) })
`

t.test('the Express door works, and loads no framework, in a process without Fastify', async (t) => {
  const run = spawnSync(process.execPath, ['--import', 'tsx', '-e', PROBE], { cwd: root, encoding: 'utf8', timeout: 30_000 })
  t.equal(run.status, 0, run.stderr)
  const { first, again, loaded } = JSON.parse(run.stdout) as {
    first: { status: number, setCookie: string[], body: string }, again: { status: number, setCookie: string[], body: string }, loaded: string[]
  }
  t.equal(first.status, 200, 'a request with a Cookie header (a garbled routing cookie) is served')
  t.match(first.setCookie[0], /^sticky=[^;]+; Path=\/; HttpOnly; SameSite=Lax$/, 'and gets a fresh routing cookie')
  t.same(JSON.parse(first.body), { cookie: 'app=1' }, 'the routing cookie is stripped before the upstream')
  t.same([again.status, again.setCookie, JSON.parse(again.body)], [200, [], { cookie: 'app=2' }], 'the cookie is read back: no new one')
  const forbidden = loaded.filter((file) => /node_modules[\\/](fastify|@fastify[\\/]reply-from|express|express4)[\\/]/.test(file) ||
    /[\\/]lib[\\/](fastify|http-proxy)[\\/]/.test(file))
  t.same(forbidden, [], 'nothing of fastify, reply-from, express or another front door')
  t.ok(loaded.some((file) => /node_modules[\\/]undici[\\/]/.test(file)), 'undici forwards')
})
