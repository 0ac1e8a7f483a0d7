/**
 * No leaks, across a run that includes every failure (502 from an upstream that resets, 503 with no upstream left
 * and on a strict route, 504 from one that never answers, failover off a killed upstream): no upstream host, port or
 * URL in any cookie, error body or header the gateway sends, nor in any log line at info level or above; raw keys
 * (addresses, header values, query values, app session ids, routing cookie binding ids) never in Redis (every key
 * and value scanned) nor in any log line at any level. Fastify's own request logging is off here: it logs the
 * URL (query keys) and the client address (ip keys) at info, which SECURITY.md tells operators about.
 */
import { randomUUID } from 'node:crypto'
import net from 'node:net'
import { Writable } from 'node:stream'
import Redis from 'ioredis'
import t, { type Test } from 'tap'
import { startGateway } from '../support/gateway'
import { CookieJar, get, type HttpResponse } from '../support/http'
import { startRedis, uniquePrefix } from '../support/redis'
import { startUpstreamProcesses } from '../support/upstream-process'
import { startUpstreams } from '../support/upstreams'

// A TCP server that accepts and then either resets every connection or never answers.
async function rawServer (t: Test, mode: 'reset' | 'silent'): Promise<{ url: string, port: number }> {
  const sockets = new Set<net.Socket>()
  const server = net.createServer((socket) => {
    sockets.add(socket)
    socket.on('error', () => {})
    socket.on('close', () => sockets.delete(socket))
    if (mode === 'reset') socket.once('data', () => socket.resetAndDestroy())
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => { for (const s of sockets) s.destroy(); server.close(() => resolve()) }))
  const { port } = server.address() as net.AddressInfo
  return { url: `http://127.0.0.1:${port}`, port }
}

t.test('nothing internal leaks to clients, logs or Redis, failures included', async (t) => {
  const redis = await startRedis(t)
  const [a, b] = await startUpstreams(t, ['a', 'b'])
  const [k, solo] = await startUpstreamProcesses(t, ['k', 'solo'])
  const reset = await rawServer(t, 'reset')
  const silent = await rawServer(t, 'silent')
  const prefix = uniquePrefix()
  const lines: string[] = []
  const stream = new Writable({ write (chunk: Buffer, _encoding, done) { lines.push(...chunk.toString('utf8').split('\n').filter((l) => l !== '')); done() } })

  const gateway = await startGateway(t, {
    redis: redis.url,
    prefix,
    fastify: { logger: { level: 'trace', stream }, disableRequestLogging: true, trustProxy: true },
    pools: {
      shop: { upstreams: [a, b, k].map((u) => ({ id: u.id, url: u.url })), cooldown: '1h' },
      broken: { upstreams: [{ id: 'x', url: reset.url }] },
      slow: { upstreams: [{ id: 's', url: silent.url }] },
      solo: { upstreams: [{ id: 'solo', url: solo.url }], cooldown: '1h' }
    },
    defaults: { pool: 'shop' },
    routes (app) {
      app.all('/c/*', { config: { sticky: true } }, (_request, reply) => reply.forward())
      app.all('/strict/*', { config: { sticky: { failover: 'strict' } } }, (_request, reply) => reply.forward())
      app.all('/h/*', { config: { sticky: { key: { header: 'x-tenant' } } } }, (_request, reply) => reply.forward())
      app.all('/q/*', { config: { sticky: { key: { query: 'room' } } } }, (_request, reply) => reply.forward())
      app.all('/i/*', { config: { sticky: { key: 'ip' } } }, (_request, reply) => reply.forward())
      app.all('/l/*', { config: { sticky: { key: { learn: 'JSESSIONID' } } } }, (_request, reply) => reply.forward())
      app.all('/broken/*', { config: { sticky: { pool: 'broken' } } }, (_request, reply) => reply.forward())
      app.all('/slow/*', { config: { sticky: { pool: 'slow', timeout: 300 } } }, (_request, reply) => reply.forward())
      app.all('/solo/*', { config: { sticky: { pool: 'solo' } } }, (_request, reply) => reply.forward())
    }
  })
  const responses: HttpResponse[] = []
  const send = async (path: string, options: Parameters<typeof get>[1] = {}): Promise<HttpResponse> => {
    const response = await get(`${gateway.url}${path}`, options)
    responses.push(response)
    return response
  }

  // Raw keys of every kind; each must stay out of Redis and the logs.
  const tenants = Array.from({ length: 6 }, () => `tenant-${randomUUID()}`)
  const rooms = Array.from({ length: 6 }, () => `room-${randomUUID()}`)
  const addresses = ['203.0.113.77', '198.51.100.23', '2001:db8:77:1::5', '2001:db8:88:1::9']
  const sessions = Array.from({ length: 4 }, () => `appsess${randomUUID().replace(/-/g, '')}`)
  const jars = Array.from({ length: 12 }, () => new CookieJar())

  for (const jar of jars) await send('/c/x', { jar })
  for (const jar of jars) await send('/strict/x', { jar })
  for (const tenant of tenants) await send('/h/x', { headers: { 'x-tenant': tenant } })
  for (const room of rooms) await send(`/q/x?room=${room}`)
  for (const address of addresses) await send('/i/x', { headers: { 'x-forwarded-for': address } })
  for (const session of sessions) {
    const jar = new CookieJar()
    await send(`/l/login/set-cookie/JSESSIONID/${session}`, { jar })
    await send('/l/cart', { jar })
  }
  // Failures: a killed upstream (failover, then a strict route's 503), a pool left without upstreams (503), an
  // upstream that resets (502), one that never answers (504).
  await k.kill()
  await solo.kill()
  const strict = await Promise.all(jars.map((jar) => send('/strict/after', { jar })))
  for (const jar of jars) {
    await send('/c/after', { jar })
    await send('/c/post', { jar, method: 'POST', body: 'hello', headers: { 'content-type': 'text/plain' } })
  }
  for (let i = 0; i < 3; i++) await send('/solo/x')
  for (let i = 0; i < 3; i++) await send('/broken/x')
  for (let i = 0; i < 2; i++) await send('/slow/x')
  for (const tenant of tenants) await send('/h/again', { headers: { 'x-tenant': tenant } })

  const statuses = responses.map((r) => r.status)
  t.ok(statuses.includes(502) && statuses.includes(503) && statuses.includes(504), `failures happened: ${JSON.stringify(Object.fromEntries([...new Set(statuses)].map((s) => [s, statuses.filter((x) => x === s).length])))}`)
  t.ok(strict.some((r) => r.status === 503), 'a strict route answered 503 for a session on the killed upstream')
  t.ok(responses.some((r) => r.status === 200 && r.json().headers['x-sticky-rebound'] === '1'), 'failover happened')

  const upstreamAddresses = [a, b, k, solo, reset, silent].flatMap((u) => [u.url, `127.0.0.1:${u.port}`])
  const ports = [a, b, k, solo, reset, silent].map((u) => String(u.port))
  const named = (text: string): string | undefined => upstreamAddresses.find((address) => text.includes(address))

  await t.test('clients: cookies, error bodies, headers', async (t) => {
    const problems: string[] = []
    for (const response of responses) {
      for (const cookie of response.setCookies) if (named(cookie) !== undefined) problems.push(`cookie names ${named(cookie)}: ${cookie}`)
      for (const [name, value] of Object.entries(response.headers)) {
        const text = [value].flat().join('\n')
        if (named(text) !== undefined) problems.push(`header ${name} names ${named(text)}`)
      }
      if (response.status >= 400) {
        // The gateway's own answers: short JSON, no address and no port number at all.
        if (named(response.body) !== undefined || ports.some((port) => new RegExp(`\\b${port}\\b`).test(response.body))) problems.push(`${response.status} body names an upstream: ${response.body}`)
        t.match(response.json(), { statusCode: response.status, code: /^FST_STICKY_/, requestId: /.+/ }, `${response.status} is the gateway's own short JSON`)
      }
    }
    t.same(problems, [], `${responses.length} responses checked`)
  })

  await t.test('logs: no upstream address at info and above; no raw key at any level', async (t) => {
    const parsed = lines.map((line) => JSON.parse(line) as { level: number, msg?: string })
    const leaking = parsed.filter((entry, i) => entry.level >= 30 &&
      (named(lines[i]) !== undefined || ports.some((port) => lines[i].includes(`"port":${port}`))))
    t.same(leaking.map((entry) => `${entry.msg}: ${JSON.stringify(entry).slice(0, 300)}`), [], `${parsed.filter((e) => e.level >= 30).length} lines at info and above name no upstream`)
    const raw = [...tenants, ...rooms, ...addresses, ...sessions]
    t.same(lines.filter((line) => raw.some((key) => line.includes(key))), [], `${lines.length} lines (trace and above) hold no raw key`)
  })

  await t.test('Redis: every key and value, no raw key and no binding id', async (t) => {
    const client = new Redis(redis.url)
    t.teardown(() => client.disconnect())
    const bindingIds = jars.flatMap((jar) => {
      const value = jar.get('sticky')
      return value === undefined ? [] : [decodeURIComponent(value).split('.')[1]]
    })
    t.ok(bindingIds.length === jars.length, 'every client holds a routing cookie')
    const dump: string[] = []
    let cursor = '0'
    do {
      const [next, keys] = await client.scan(cursor, 'COUNT', '500')
      cursor = next
      for (const key of keys) {
        const type = await client.type(key)
        const values = type === 'string' ? [await client.get(key)]
          : type === 'zset' ? await client.zrange(key, '0', '-1', 'WITHSCORES')
            : type === 'hash' ? Object.entries(await client.hgetall(key)).flat()
              : type === 'set' ? await client.smembers(key)
                : type === 'list' ? await client.lrange(key, 0, -1) : [`(${type})`]
        dump.push(key, ...values.map(String))
      }
    } while (cursor !== '0')
    t.ok(dump.some((entry) => entry.includes(':b:')), `${dump.length} keys and values scanned, bindings among them`)
    const secrets = [...tenants, ...rooms, ...addresses, ...sessions, ...bindingIds]
    t.same(dump.filter((entry) => secrets.some((key) => entry.includes(key))), [], 'no raw key, address, app session id or binding id')
  })
})
