/**
 * Security round 2, finding 10: open tunnels are capped per gateway and per client (each holds two sockets for up
 * to its idle timeout), with a clear coded refusal; a response that sets the routing cookie is never left for a
 * shared cache to serve to other users.
 */
import http from 'node:http'
import { once } from 'node:events'
import net, { type AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import t, { type Test } from 'tap'
import { startGateway } from '../support/gateway'
import { get } from '../support/http'
import { eventually } from '../support/eventually'
import { rawExchange, upgradeRequest } from '../support/raw-http'

// An upstream that accepts every upgrade and holds it open; HTTP answers carry the Cache-Control asked for in `?cc=`.
async function startHoldingUpstream (t: Test): Promise<string> {
  const held: Duplex[] = []
  const server = http.createServer((req, res) => {
    const cc = new URL(req.url ?? '/', 'http://x').searchParams.get('cc')
    if (cc !== null) res.setHeader('cache-control', cc)
    res.end('ok')
  })
  server.on('upgrade', (_req, socket: Duplex) => {
    held.push(socket)
    socket.on('error', () => {})
    // As WebSocket servers do: the peer's FIN closes the connection.
    socket.on('end', () => socket.end())
    socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n')
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(async () => {
    for (const socket of held) socket.destroy()
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  })
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

// Opens an upgrade and keeps the socket; resolves with the status line's code once the head has arrived.
async function holdUpgrade (t: Test, url: string): Promise<{ status: number, socket: net.Socket }> {
  const { port } = new URL(url)
  const socket = net.connect(Number(port), '127.0.0.1')
  t.teardown(() => { socket.destroy() })
  socket.on('error', () => {})
  socket.write(upgradeRequest('/socket'))
  let data = ''
  socket.setEncoding('latin1')
  return new Promise((resolve) => {
    const onData = (chunk: string): void => {
      data += chunk
      if (!data.includes('\r\n\r\n')) return
      socket.off('data', onData)
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(data)?.[1] ?? 0), socket })
    }
    socket.on('data', onData)
  })
}

t.test('tunnels are capped per client and per gateway, and places come back on close', async (t) => {
  const upstream = await startHoldingUpstream(t)
  const perClient = await startGateway(t, { pools: { shop: { upstreams: [{ id: 'a', url: upstream }] } }, websocket: { maxTunnelsPerClient: 3 } })
  const open = await Promise.all([0, 1, 2].map(async () => holdUpgrade(t, perClient.url)))
  t.same(open.map((o) => o.status), [101, 101, 101], 'up to the cap, tunnels open')
  const refused = await rawExchange(perClient.url, upgradeRequest('/socket'))
  t.equal(refused.status, 503, 'one more from the same client is refused')
  t.match(refused.rest, /FST_STICKY_TUNNEL_LIMIT/, 'with a coded problem')
  t.match(refused.head, /\r\nretry-after: \d+/i, 'and Retry-After')
  open[0].socket.destroy()
  t.ok(await eventually(async () => (await rawExchange(perClient.url, upgradeRequest('/socket'), 200)).status === 101), 'a closed tunnel gives its place back')

  const gatewayWide = await startGateway(t, { pools: { shop: { upstreams: [{ id: 'a', url: upstream }] } }, websocket: { maxTunnels: 2 } })
  t.same((await Promise.all([0, 1].map(async () => holdUpgrade(t, gatewayWide.url)))).map((o) => o.status), [101, 101])
  t.equal((await rawExchange(gatewayWide.url, upgradeRequest('/socket'))).status, 503, 'past the gateway cap, refused')
  t.equal((await get(`${gatewayWide.url}/page`)).status, 200, 'plain HTTP is not affected')
  await t.rejects(startGateway(t, { pools: { shop: { upstreams: [{ id: 'a', url: upstream }] } }, websocket: { maxTunnels: 0 } }), /websocket\.maxTunnels/)
})

t.test('a response that sets the routing cookie is private to the browser', async (t) => {
  const upstream = await startHoldingUpstream(t)
  const gateway = await startGateway(t, { pools: { shop: { upstreams: [{ id: 'a', url: upstream }] } } })
  const cases: Array<[string | undefined, string]> = [
    [undefined, 'private'],
    ['public, max-age=600', 'private, max-age=600'],
    ['max-age=60, s-maxage=600', 'private, max-age=60'],
    ['no-store', 'no-store'],
    ['private, max-age=5', 'private, max-age=5']
  ]
  for (const [sent, expected] of cases) {
    const first = await get(`${gateway.url}/page${sent === undefined ? '' : '?cc=' + encodeURIComponent(sent)}`)
    t.equal(first.setCookies.length, 1, 'a new client gets a routing cookie')
    t.equal(first.headers['cache-control'], expected, `upstream Cache-Control ${JSON.stringify(sent)} → ${JSON.stringify(expected)}`)
    const again = await get(`${gateway.url}/page?cc=public`, { cookie: first.setCookies[0].split(';')[0] })
    t.equal(again.headers['cache-control'], 'public', 'a response without our cookie keeps the upstream\'s caching')
  }
})
