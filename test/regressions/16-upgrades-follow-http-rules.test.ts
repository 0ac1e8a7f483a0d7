/**
 * Security round 2, findings 2, 5 and 8: an upgrade is forwarded by exactly the rules of a plain HTTP request.
 * Its target is checked the same way (no `..`, no absolute form; `reply.forward(source)` honoured), an upstream's
 * refusal of the upgrade is relayed with the same header rewriting and correct framing, and the tunnel sends its
 * own `Connection: Upgrade`, never the client's list of headers for the next hop to drop.
 */
import http from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import t, { type Test } from 'tap'
import { startGateway } from '../support/gateway'
import { rawExchange, upgradeRequest } from '../support/raw-http'

interface SeenUpgrade { url: string, headers: http.IncomingHttpHeaders }
interface RecordingUpstream { url: string, upgrades: SeenUpgrade[] }

// Records every upgrade; `/refuse` is answered 302 with an absolute Location at its own address and a chunked body.
async function startRecordingUpstream (t: Test): Promise<RecordingUpstream> {
  const upstream: RecordingUpstream = { url: '', upgrades: [] }
  const server = http.createServer((_req, res) => { res.end('ok') })
  const held: Duplex[] = []
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex) => {
    upstream.upgrades.push({ url: req.url ?? '', headers: req.headers })
    held.push(socket)
    if (req.url === '/refuse') {
      socket.end(`HTTP/1.1 302 Found\r\nLocation: ${upstream.url}/login?next=ws\r\nTransfer-Encoding: chunked\r\n` +
        'Content-Type: text/plain\r\n\r\n5\r\nlogin\r\n0\r\n\r\n')
      return
    }
    socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n' +
      'Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n')
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  upstream.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  t.teardown(async () => {
    for (const socket of held) socket.destroy()
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  })
  return upstream
}

t.test('upgrade targets are checked like HTTP targets', async (t) => {
  const upstream = await startRecordingUpstream(t)
  const gateway = await startGateway(t, {
    pools: { shop: { upstreams: [{ id: 'a', url: upstream.url }] } },
    routes (app) {
      app.all('/public/*', { config: { sticky: true } }, (_request, reply) => reply.forward())
      // A handler that rewrites the target: upgrades must go where it says, like requests do.
      app.all('/v1/*', { config: { sticky: true } }, (request, reply) => reply.forward('/v2/' + (request.params as Record<string, string>)['*']))
    }
  })
  for (const target of ['/public/../admin/secret', '/public/%2e%2e/admin/secret', '/public/.%2E/admin', '/public/%zz']) {
    const plain = await rawExchange(gateway.url, `GET ${target} HTTP/1.1\r\nHost: gateway.test\r\nConnection: close\r\n\r\n`)
    const upgrade = await rawExchange(gateway.url, upgradeRequest(target))
    t.equal(upgrade.status, plain.status, `${target}: an upgrade gets what a plain request gets (${plain.status})`)
    t.equal(upgrade.status, 400, `${target}: refused`)
  }
  const absolute = await rawExchange(gateway.url, upgradeRequest(`${upstream.url}/public/x`))
  t.not(absolute.status, 101, 'an absolute-form upgrade target is not tunnelled')
  t.same(upstream.upgrades.map((u) => u.url), [], 'none of them reached the upstream')

  const rewritten = await rawExchange(gateway.url, upgradeRequest('/v1/socket?room=1'), 500)
  t.equal(rewritten.status, 101, 'a normal upgrade is tunnelled')
  t.equal(upstream.upgrades[0]?.url, '/v2/socket?room=1', 'to the target reply.forward(source) names, with the request\'s query')
})

t.test('a refused upgrade is relayed like an HTTP response: Location rewritten, framing intact', async (t) => {
  const upstream = await startRecordingUpstream(t)
  const gateway = await startGateway(t, { pools: { shop: { upstreams: [{ id: 'a', url: upstream.url }] } } })
  const answer = await rawExchange(gateway.url, upgradeRequest('/refuse'))
  t.equal(answer.status, 302)
  t.match(answer.head, /\r\nlocation: \/login\?next=ws\r\n/i, 'Location is path-only, as for HTTP')
  t.notMatch(answer.head + answer.rest, /127\.0\.0\.1/, 'the upstream\'s address does not reach the client')
  t.match(answer.head, /\r\nset-cookie: sticky=/i, 'a new client still gets its routing cookie')
  const chunked = /\r\ntransfer-encoding: chunked/i.test(answer.head)
  const length = /\r\ncontent-length: (\d+)/i.exec(answer.head)
  if (chunked) t.equal(answer.rest, '5\r\nlogin\r\n0\r\n\r\n', 'a chunked answer carries chunked framing')
  else t.equal(answer.rest.slice(0, Number(length?.[1] ?? -1)), 'login', 'a sized answer carries exactly its body')
  t.ok(chunked !== (length !== null), 'exactly one framing header')
})

t.test('the tunnel sends its own Connection: Upgrade and X-Forwarded-*', async (t) => {
  const upstream = await startRecordingUpstream(t)
  const gateway = await startGateway(t, { pools: { shop: { upstreams: [{ id: 'a', url: upstream.url }] } } })
  const hostile = upgradeRequest('/socket', 'X-Real-IP: 6.6.6.6\r\nKeep-Alive: timeout=5\r\n')
    .replace('Connection: Upgrade', 'Connection: Upgrade, X-Forwarded-For, X-Forwarded-Host')
  const answer = await rawExchange(gateway.url, hostile, 500)
  t.equal(answer.status, 101)
  const seen = upstream.upgrades[0]?.headers ?? {}
  t.equal(seen.connection, 'Upgrade', 'only Upgrade is named in Connection')
  t.equal(seen.upgrade, 'websocket')
  t.equal(seen['x-forwarded-for'], '127.0.0.1', 'the gateway\'s X-Forwarded-For is sent')
  t.equal(seen['x-forwarded-host'], 'gateway.test')
  t.equal(seen['x-real-ip'], undefined, 'client-made forwarding claims are removed')
  t.equal(seen['keep-alive'], undefined, 'hop-by-hop headers are removed')
})
