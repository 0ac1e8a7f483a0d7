/**
 * Security round 2, findings 6 and 7: the forwarding headers are the gateway's, written as the edge from what
 * `trustProxy` trusts, and hop-by-hop request headers never reach the upstream nor make the forward fail (a
 * client could otherwise cause 502s that count as forward errors).
 */
import t from 'tap'
import { startGateway } from '../support/gateway'
import { get } from '../support/http'
import { startUpstreams } from '../support/upstreams'
import { rawExchange } from '../support/raw-http'

const CLAIMS = {
  'x-forwarded-for': '203.0.113.9',
  'x-forwarded-host': 'evil.example',
  'x-forwarded-proto': 'https',
  'x-forwarded-port': '443',
  'x-real-ip': '6.6.6.6',
  forwarded: 'for=6.6.6.6;host=evil.example',
  'x-original-url': '/admin',
  'x-rewrite-url': '/admin'
}

t.test('an untrusted client cannot choose its forwarding headers', async (t) => {
  const upstreams = await startUpstreams(t, ['a'])
  const gateway = await startGateway(t, { upstreams })
  const seen = (await get(`${gateway.url}/x`, { headers: { ...CLAIMS, host: 'shop.example' } })).json().headers
  t.equal(seen['x-forwarded-for'], '127.0.0.1', 'X-Forwarded-For is the peer alone')
  t.equal(seen['x-forwarded-host'], 'shop.example', 'X-Forwarded-Host is the Host the client used, not its claim')
  t.equal(seen['x-forwarded-proto'], 'http', 'X-Forwarded-Proto is what the connection is')
  for (const name of ['x-forwarded-port', 'x-real-ip', 'forwarded', 'x-original-url', 'x-rewrite-url']) {
    t.equal(seen[name], undefined, `${name} is removed`)
  }
})

t.test('a trusted proxy\'s chain is kept, and only allowed hosts are passed on', async (t) => {
  const upstreams = await startUpstreams(t, ['a'])
  const trusted = await startGateway(t, { upstreams, fastify: { trustProxy: '127.0.0.1' } })
  const seen = (await get(`${trusted.url}/x`, { headers: { 'x-forwarded-for': '198.51.100.1, 203.0.113.9', 'x-forwarded-proto': 'https' } })).json().headers
  t.equal(seen['x-forwarded-for'], '203.0.113.9, 127.0.0.1', 'the trusted hop\'s client, then the peer; what lies beyond the first untrusted hop is dropped')
  t.equal(seen['x-forwarded-proto'], 'https', 'a trusted proxy\'s protocol is kept')

  const allowed = await startGateway(t, { upstreams, xForwarded: { allowedHosts: ['shop.example'] } })
  t.equal((await get(`${allowed.url}/x`, { headers: { host: 'shop.example' } })).json().headers['x-forwarded-host'], 'shop.example', 'an allowed host is passed on')
  const other = (await get(`${allowed.url}/x`, { headers: { host: 'evil.example', 'x-forwarded-host': 'evil.example' } })).json().headers
  t.equal(other['x-forwarded-host'], undefined, 'another host is not, and the client\'s own claim is removed')
  await t.rejects(startGateway(t, { upstreams, xForwarded: { allowedHosts: ['bad host'] } }), /xForwarded\.allowedHosts\[0\]/, 'a bad host is refused at register, naming the option')
})

t.test('hop-by-hop request headers are removed, and never make a 502', async (t) => {
  const upstreams = await startUpstreams(t, ['a'])
  const gateway = await startGateway(t, { upstreams })
  const cases = [
    'Upgrade: h2c',
    'Keep-Alive: timeout=5',
    'TE: gzip',
    'Trailer: X-Checksum',
    'Proxy-Connection: keep-alive',
    'Connection: keep-alive, X-Secret\r\nX-Secret: 1'
  ]
  for (const header of cases) {
    const answer = await rawExchange(gateway.url, `GET /x HTTP/1.1\r\nHost: x\r\n${header}\r\nConnection: close\r\n\r\n`)
    t.equal(answer.status, 200, `${header.split('\r\n')[0]}: forwarded normally`)
    const body = answer.rest.slice(answer.rest.indexOf('{'))
    const seen = (JSON.parse(body) as { headers: Record<string, string> }).headers
    for (const name of ['upgrade', 'keep-alive', 'te', 'trailer', 'proxy-connection', 'x-secret']) t.equal(seen[name], undefined, `${name} not forwarded`)
  }
  t.equal(gateway.app.sticky.state('shop', 'a'), 'active')
})
