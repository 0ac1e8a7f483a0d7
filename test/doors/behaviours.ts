/**
 * One behaviour suite for every front door (Fastify routes, stickyHttpProxy, Express), so the doors cannot drift:
 * cookie affinity, header keys, learnt app cookies, failover, draining, session handoff, WebSocket (affinity,
 * failover, refusals, tunnel caps), upstream timeouts and a Redis outage (a gateway started during it too). Each door's
 * test file gives {@link doorBehaviours} a {@link Door} that starts a gateway of its kind; everything else here is
 * the same for all of them: real upstreams, one real redis-server per file (a key prefix per subtest), and the
 * same requests and assertions.
 */
import http from 'node:http'
import { once } from 'node:events'
import net, { type AddressInfo } from 'node:net'
import Fastify, { type FastifyInstance } from 'fastify'
import type { Test } from 'tap'
import type { StickyExpressRouteConfig } from '../../lib/express/index'
import sticky, { type StickyPluginOptions, type StickyRouteConfig } from '../../lib/index'
import type { StickyApi } from '../../lib/core/sticky-api'
import { CART_HANDOFF_SECRET, startCartUpstreams, type CartUpstream } from '../support/cart-upstream'
import { CookieJar, get, type HttpResponse } from '../support/http'
import { startRedis, uniquePrefix, type RedisServer } from '../support/redis'
import { startUpstreams } from '../support/upstreams'
import { openSocket, refusedUpgrade, startWsUpstreams } from '../support/ws-upstream'
import { eventually } from '../support/eventually'

/** What every door is started with: the plugin's options, less what only the Fastify plugin has. */
export type DoorOptions = Omit<StickyPluginOptions, 'defaults' | 'admin' | 'metrics'>

/** A route with settings of its own, mounted by every door under `prefix`. */
export interface DoorRoute {
  /** `/tenant`: the door forwards `/tenant/...` with the target unchanged. */
  readonly prefix: string
  readonly sticky: StickyRouteConfig & StickyExpressRouteConfig
}

/**
 * The routes every door mounts besides its catch-all cookie route (`sticky: true`, every other path, WebSocket
 * upgrades included).
 */
export const DOOR_ROUTES: readonly DoorRoute[] = [
  { prefix: '/tenant', sticky: { key: { header: 'x-tenant' } } },
  { prefix: '/learn', sticky: { key: { learn: 'JSESSIONID' } } },
  { prefix: '/long', sticky: { timeout: 0 } }
]

/** A running gateway of one door. */
export interface DoorGateway {
  /** `http://127.0.0.1:<port>` */
  readonly url: string
  /** `app.sticky`, or the Express door's `sticky.api`. */
  readonly api: StickyApi
  /** Stops the gateway: ends open WebSocket tunnels, closes the listener and the store connection. */
  close (): Promise<void>
}

/** A front door, as the suite starts it. */
export interface Door {
  /** Names the door in test titles. */
  readonly name: string
  /**
   * Starts a gateway on a free loopback port with these options, logging nothing, with {@link DOOR_ROUTES} and the
   * catch-all cookie route mounted.
   */
  start (options: DoorOptions): Promise<DoorGateway>
}

/**
 * A door on a Fastify app: the plugin registered with the options, then the door's routes (`mount`), listening on a
 * free loopback port; the app is closed if any of it fails.
 */
export function fastifyDoor (name: string, mount: (app: FastifyInstance) => void | Promise<void>): Door {
  return {
    name,
    async start (options) {
      const app = Fastify()
      try {
        await app.register(sticky, options)
        await mount(app)
        const url = await app.listen({ host: '127.0.0.1', port: 0 })
        return { url, api: app.sticky, close: () => app.close() }
      } catch (error) {
        await app.close()
        throw error
      }
    }
  }
}

const SECRET = 'door-behaviours-secret-0123456789-abcdef'
const ROUTING_COOKIE = /^sticky=[^;]+; Path=\/; HttpOnly; SameSite=Lax$/
const SHOP = 'shop'

type Upstreams = ReadonlyArray<{ id: string, url: string }>
const poolsOf = (upstreams: Upstreams): DoorOptions['pools'] =>
  // cooldown: an upstream found down stays down for the test, whatever the machine's speed.
  ({ [SHOP]: { upstreams: upstreams.map(({ id, url }) => ({ id, url })), cooldown: '1h' } })

const cookieOf = (setCookie: string): string => setCookie.split(';')[0]

// A server of the test's own on a free loopback port, its connections ended at `t`'s teardown.
async function listen (t: Test, server: net.Server): Promise<{ server: net.Server, url: string }> {
  const sockets = new Set<net.Socket>()
  server.on('connection', (socket: net.Socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => {
    for (const socket of sockets) socket.destroy()
    return new Promise((resolve) => server.close(resolve))
  })
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }
}

async function liveSessions (api: StickyApi): Promise<number> {
  return Object.values(await api.sessionCounts(SHOP)).reduce((sum, n) => sum + n, 0)
}

/**
 * Runs the behaviour suite against one door: the cases with Redis up side by side, then the Redis outage (which
 * stops the file's redis-server, so it runs alone, last).
 * @param t - the file's root test; it owns the redis-server
 * @param door - starts gateways of the door under test
 */
export function doorBehaviours (t: Test, door: Door): void {
  let redis: Promise<RedisServer> | undefined
  const redisOf = (): Promise<RedisServer> => (redis ??= startRedis(t))

  // `count` gateways of the door on one key prefix: replicas behind one load balancer, closed at `t`'s teardown.
  async function gateways (t: Test, upstreams: Upstreams, count = 1, extra: Partial<DoorOptions> = {}): Promise<DoorGateway[]> {
    const server = await redisOf()
    const options: DoorOptions = { secret: SECRET, pools: poolsOf(upstreams), redis: server.url, prefix: uniquePrefix(), ...extra }
    const started: DoorGateway[] = []
    t.teardown(() => Promise.all(started.map((g) => g.close())))
    for (let i = 0; i < count; i++) started.push(await door.start(options))
    return started
  }

  t.test(door.name, async (t) => {
    t.test('with Redis up', async (t) => {
      // Each case has upstreams, gateways and a key prefix of its own; they share only the redis-server.
      t.jobs = 8
      withRedisUp(t)
    })
    t.test('Redis outage', redisOutage)
  })

  function withRedisUp (t: Test): void {

    t.test('cookie: one routing cookie for a new client, its upstream kept; a bad cookie is no affinity yet', async (t) => {
      const upstreams = await startUpstreams(t)
      const [gateway] = await gateways(t, upstreams)
      const jar = new CookieJar()
      const first = await get(`${gateway.url}/cart?x=1`, { jar })
      t.equal(first.status, 200)
      t.equal(first.setCookies.length, 1, 'one Set-Cookie')
      t.match(first.setCookies[0], ROUTING_COOKIE, 'signed, HttpOnly, SameSite=Lax, not Secure on http')
      t.equal(first.headers['cache-control'], 'private', 'a response that sets the routing cookie is not for shared caches')
      t.equal(first.json().url, '/cart?x=1', 'the request target reaches the upstream as sent')
      const upstream = first.json().upstream as string
      for (let i = 0; i < 4; i++) {
        const again = await get(`${gateway.url}/page/${i}`, { jar, cookie: 'app=1' })
        t.equal(again.json().upstream, upstream, `request ${i + 2}: same upstream`)
        t.equal(again.setCookies.length, 0, 'no new cookie')
        t.equal(again.json().headers.cookie, 'app=1', 'the routing cookie is not forwarded; the app\'s cookies are')
      }

      const jars = Array.from({ length: 6 }, () => new CookieJar())
      const bound = await Promise.all(jars.map(async (jar) => (await get(`${gateway.url}/`, { jar })).json().upstream as string))
      t.ok(new Set(bound).size >= 2, `new clients spread over the pool (${bound.join(',')})`)
      for (const [i, jar] of jars.entries()) t.equal((await get(`${gateway.url}/`, { jar })).json().upstream, bound[i], 'each keeps its own')

      const both = await get(`${gateway.url}/set-cookie/app/7`, { headers: { 'x-sticky-rebound': '1' } })
      t.equal(both.setCookies.length, 2, 'a new client gets the upstream\'s Set-Cookie and the routing cookie')
      t.ok(both.setCookies.includes('app=7; Path=/') && both.setCookies.some((line) => ROUTING_COOKIE.test(line)), both.setCookies.join(' | '))
      t.equal(both.json().headers['x-sticky-rebound'], undefined, 'a client cannot claim a rebound')

      const garbled = await get(`${gateway.url}/`, { cookie: 'sticky=garbage; app=2' })
      t.equal(garbled.status, 200, 'a routing cookie that does not verify is never an error')
      t.match(garbled.setCookies, [ROUTING_COOKIE], 'but a fresh routing cookie')
      t.equal(garbled.json().headers.cookie, 'app=2', 'and it is not forwarded either')
      t.same([gateway.api.stats.new, gateway.api.stats.hit], [9, 10], 'decisions counted: 9 new, 10 hits')
    })

    t.test('header key: the value is the key on every replica; no header: balanced, nothing bound; one winner', async (t) => {
      const upstreams = await startUpstreams(t)
      const replicas = await gateways(t, upstreams, 2)
      const tenants = ['acme', 'globex', 'initech', 'umbrella']
      const bound = new Map<string, string>()
      for (const tenant of tenants) {
        const first = await get(`${replicas[0].url}/tenant/x`, { headers: { 'x-tenant': tenant } })
        t.equal(first.setCookies.length, 0, `${tenant}: no routing cookie of our own`)
        bound.set(tenant, first.json().upstream)
        for (let i = 1; i <= 3; i++) {
          t.equal((await get(`${replicas[i % 2].url}/tenant/y`, { headers: { 'x-tenant': tenant } })).json().upstream, bound.get(tenant), `${tenant} stays, on either replica`)
        }
      }
      t.ok(new Set(bound.values()).size >= 2, 'tenants spread over the pool')
      t.equal(await liveSessions(replicas[0].api), tenants.length, 'one binding per tenant')
      for (let i = 0; i < 3; i++) {
        const anonymous = await get(`${replicas[0].url}/tenant/z`)
        t.same([anonymous.status, anonymous.setCookies.length], [200, 0], 'no header: served, no cookie')
      }
      t.equal(replicas[0].api.stats.none, 3, 'counted as no key')
      t.equal(await liveSessions(replicas[0].api), tenants.length, 'and nothing bound')
      const racers = await Promise.all(Array.from({ length: 10 }, async (_, i) =>
        (await get(`${replicas[i % 2].url}/tenant/race`, { headers: { 'x-tenant': 'racer' } })).json().upstream as string))
      t.equal(new Set(racers).size, 1, `10 concurrent first requests for one new tenant over two replicas: one upstream (${racers.join(',')})`)
    })

    t.test('learn: the upstream\'s session cookie is bound before the client has it, followed by every replica, forgotten when deleted', async (t) => {
      const upstreams = await startUpstreams(t)
      const replicas = await gateways(t, upstreams, 2)
      const sessions = await Promise.all(['s1', 's2', 's3', 's4'].map(async (id, i) => {
        const jar = new CookieJar()
        const login = await get(`${replicas[i % 2].url}/learn/login/set-cookie/JSESSIONID/${id}`, { jar })
        t.equal(jar.get('JSESSIONID'), id, 'the app\'s Set-Cookie reaches the client')
        t.notOk(jar.has('sticky'), 'no routing cookie of our own in learn mode')
        return { jar, upstream: login.json().upstream as string }
      }))
      t.equal(await liveSessions(replicas[0].api), 4, 'every session bound in the store when its response arrived')
      t.equal(replicas[0].api.stats.learned + replicas[1].api.stats.learned, 4, 'counted as learnt')
      t.ok(new Set(sessions.map((s) => s.upstream)).size >= 2, 'sessions on several upstreams')
      for (const [i, session] of sessions.entries()) {
        for (let n = 0; n < 3; n++) {
          t.equal((await get(`${replicas[(i + n + 1) % 2].url}/learn/cart`, { jar: session.jar })).json().upstream, session.upstream, 'the app session follows its upstream, on either replica')
        }
      }
      const logout = await get(`${replicas[1].url}/learn/logout/delete-cookie/JSESSIONID`, { jar: sessions[0].jar })
      t.equal(logout.json().upstream, sessions[0].upstream, 'the logout itself still goes to the session\'s upstream')
      t.notOk(sessions[0].jar.has('JSESSIONID'), 'the client drops the cookie')
      t.equal(await liveSessions(replicas[0].api), 3, 'and its binding is gone')
      t.equal(replicas[1].api.stats.learnedForgotten, 1)
    })

    t.test('failover: a dead upstream\'s clients move, the request replayed, the app told (x-sticky-rebound), a new cookie', async (t) => {
      const upstreams = await startUpstreams(t)
      const [gateway] = await gateways(t, upstreams)
      const clients = []
      // One after the other, so least-sessions spreads them exactly 2/2/2.
      for (let i = 0; i < 6; i++) {
        const jar = new CookieJar()
        clients.push({ i, jar, upstream: (await get(`${gateway.url}/`, { jar })).json().upstream as string })
      }
      const victim = clients[0].upstream
      t.equal(clients.filter((c) => c.upstream === victim).length, 2, 'two clients on the upstream that dies')
      await upstreams.find((u) => u.id === victim)?.close()

      const moved = new Map<number, string>()
      await Promise.all(clients.map(async (client) => {
        const body = `client ${client.i}`
        const response = await get(`${gateway.url}/after`, { jar: client.jar, method: 'POST', body, headers: { 'content-type': 'text/plain' } })
        t.equal(response.status, 200, 'every request answered: a small body is replayed')
        const echo = response.json()
        t.equal(echo.body, body, 'the body arrives (after a retry too)')
        if (client.upstream === victim) {
          t.not(echo.upstream, victim, 'moved off the dead upstream')
          t.equal(echo.headers['x-sticky-rebound'], '1', 'the new upstream is told the session moved')
          t.match(response.setCookies, [ROUTING_COOKIE], 'one new routing cookie, naming the new upstream')
          moved.set(client.i, echo.upstream)
        } else {
          t.same([echo.upstream, echo.headers['x-sticky-rebound'], response.setCookies.length], [client.upstream, undefined, 0], 'clients of live upstreams never move')
        }
      }))
      for (const client of clients.filter((c) => moved.has(c.i))) {
        const again = await get(`${gateway.url}/again`, { jar: client.jar })
        t.same([again.json().upstream, again.json().headers['x-sticky-rebound'], again.setCookies.length], [moved.get(client.i), undefined, 0], 'then it stays there, told once')
      }
      t.equal(gateway.api.state(SHOP, victim), 'down')
      t.equal((await gateway.api.sessionCounts(SHOP))[victim], 0, 'no session left on the dead upstream')
    })

    t.test('drain: the drained upstream keeps its sessions and gets no new ones, on every replica', async (t) => {
      const upstreams = await startUpstreams(t)
      const replicas = await gateways(t, upstreams, 2)
      const clients = []
      for (let i = 0; i < 6; i++) {
        const jar = new CookieJar()
        clients.push({ jar, upstream: (await get(`${replicas[0].url}/`, { jar })).json().upstream as string })
      }
      const drained = clients[0].upstream
      await replicas[0].api.drain(SHOP, drained)
      t.equal(replicas[0].api.state(SHOP, drained), 'draining')
      t.ok(await eventually(() => replicas[1].api.state(SHOP, drained) === 'draining', 3000), 'the other replica sees it')
      const fresh = await Promise.all(Array.from({ length: 6 }, async (_, i) => (await get(`${replicas[i % 2].url}/`)).json().upstream as string))
      t.notOk(fresh.includes(drained), `no new session on the drained upstream (${fresh.join(',')})`)
      for (const [i, client] of clients.entries()) {
        t.equal((await get(`${replicas[i % 2].url}/`, { jar: client.jar })).json().upstream, client.upstream, 'bound sessions stay where they are')
      }
      t.equal(await replicas[1].api.sessions(SHOP, drained), 2, 'its two sessions are still counted')
      for (const u of upstreams) await replicas[0].api.drain(SHOP, u.id)
      t.ok(await eventually(() => upstreams.every((u) => replicas[1].api.state(SHOP, u.id) === 'draining'), 3000))
      const nowhere = await get(`${replicas[1].url}/`)
      t.equal(nowhere.status, 503, 'every upstream drained: a new client is refused')
      t.ok(Number(nowhere.headers['retry-after']) >= 1, 'with Retry-After')
      t.match(nowhere.json(), { statusCode: 503, code: 'FST_STICKY_NO_UPSTREAM', error: 'Service Unavailable' })
      t.same([nowhere.setCookies.length, /127\.0\.0\.1/.test(nowhere.body)], [0, false], 'no cookie, no address')
      t.equal((await get(`${replicas[1].url}/`, { jar: clients[1].jar })).json().upstream, clients[1].upstream, 'a bound client is still served')
    })

    t.test('handoff: a moved session goes on with its state, a request mid-move follows the 421; handoff paths and x-sticky-session are the gateway\'s', async (t) => {
      const upstreams = await startCartUpstreams(t, ['a', 'b'])
      const [gateway] = await gateways(t, upstreams, 1, { handoff: { secret: CART_HANDOFF_SECRET, hold: '500ms' } })
      const jar = new CookieJar()
      const first = await get(`${gateway.url}/cart/tea`, { jar, method: 'POST' })
      const from = first.json().upstream as string
      const to = from === 'a' ? 'b' : 'a'
      const source = upstreams.find((u) => u.id === from) as CartUpstream
      const target = upstreams.find((u) => u.id === to) as CartUpstream
      const cookie = jar.get('sticky') as string

      t.equal((await gateway.api.bindings.move(cookie, to, { handoff: true })).upstream, to)
      const after = await get(`${gateway.url}/cart/cake`, { jar, method: 'POST' })
      t.same([after.status, after.json().upstream, after.json().items], [200, to, ['tea', 'cake']], 'the next request lands on the new upstream, cart whole')
      t.equal(source.carts.size, 0, 'the old upstream dropped it')

      // Sent while the move back is exporting: decided for `to`, held there, answered 421 after the commit, followed.
      target.faults = { exportDelayMs: 200 }
      const back = gateway.api.bindings.move(cookie, from, { handoff: true })
      await new Promise((resolve) => setTimeout(resolve, 60))
      const during = await get(`${gateway.url}/cart/jam`, { jar, method: 'POST' })
      t.same([during.status, during.json().upstream, during.json().items], [200, from, ['tea', 'cake', 'jam']], 'held, then served by the new upstream with the moved cart')
      t.equal((await back).upstream, from)
      target.faults = {}

      for (const path of ['/.well-known/sticky-handoff/export', '/.well-known/STICKY-handoff/import', '/.well-known/sticky%2Dhandoff/commit']) {
        const refused = await get(`${gateway.url}${path}`, { jar, method: 'POST', body: { v: 1, session: 'x' } })
        t.same([refused.status, refused.json().code], [400, 'FST_STICKY_BAD_REQUEST_TARGET'], `${path} is refused`)
      }
      const forged = await get(`${gateway.url}/cart`, { jar, headers: { 'x-sticky-session': 'someone-elses-session' } })
      t.same([forged.json().session === 'someone-elses-session', forged.json().items], [false, ['tea', 'cake', 'jam']], 'a client-sent x-sticky-session is replaced by the gateway\'s')
    })

    t.test('WebSocket: the upgrade is sticky, cookie on the 101, one binding with HTTP; closes both ways; close() ends tunnels', async (t) => {
      const upstreams = await startWsUpstreams(t, ['a', 'b', 'c'])
      const [gateway] = await gateways(t, upstreams)
      const wsUrl = gateway.url.replace('http:', 'ws:') + '/live?room=1'
      const first = await openSocket(wsUrl)
      t.match(first.setCookie, [ROUTING_COOKIE], 'the 101 of a new client carries the routing cookie')
      const upstream = first.hello.upstream
      t.equal(first.hello.url, '/live?room=1', 'the handshake target reaches the upstream as sent')
      t.equal(first.hello.headers.cookie, undefined, 'the routing cookie does not reach the upstream')
      first.ws.send('ping')
      t.equal(String((await once(first.ws, 'message'))[0]), `${upstream}:ping`, 'messages flow both ways')
      const cookie = cookieOf(first.setCookie[0])
      for (let i = 0; i < 2; i++) {
        const again = await openSocket(wsUrl, `${cookie}; app=1`)
        t.same([again.hello.upstream, again.setCookie.length, again.hello.headers.cookie], [upstream, 0, 'app=1'], 'a bound client reaches the same upstream, no new cookie')
        again.ws.close()
      }
      const page = await get(`${gateway.url}/page`, { cookie })
      t.same([page.json().upstream, page.setCookies.length], [upstream, 0], 'HTTP and WebSocket share one binding')

      const target = upstreams.find((u) => u.id === upstream)
      if (target === undefined) throw new Error(`no upstream ${upstream}`)
      const closesBefore = target.closes
      first.ws.close()
      t.ok(await eventually(() => target.closes > closesBefore, 2000), 'closing the client closes the upstream side')
      const other = await openSocket(wsUrl, cookie)
      for (const client of target.wss.clients) client.close(1001, 'bye')
      t.equal((await once(other.ws, 'close'))[0], 1001, 'the upstream\'s close code reaches the client')
      const killed = await openSocket(wsUrl, cookie)
      for (const client of target.wss.clients) client.terminate()
      await once(killed.ws, 'close')
      t.pass('an upstream connection that dies closes the client')

      const held = await openSocket(wsUrl, cookie)
      const closed = once(held.ws, 'close')
      const closing = Date.now()
      await gateway.close()
      await closed
      t.ok(Date.now() - closing < 2000, 'closing the gateway ends its open tunnels promptly')
    })

    t.test('WebSocket: a tunnel whose session moves (on the other replica) is closed with 1012, and the reconnect reaches the new upstream', async (t) => {
      const upstreams = await startWsUpstreams(t, ['a', 'b'])
      const replicas = await gateways(t, upstreams, 2)
      const wsUrl = replicas[0].url.replace('http:', 'ws:') + '/live'
      const first = await openSocket(wsUrl)
      const cookie = cookieOf(first.setCookie[0])
      const to = first.hello.upstream === 'a' ? 'b' : 'a'
      const closed = once(first.ws, 'close')
      await replicas[1].api.bindings.move(decodeURIComponent(cookie.slice(cookie.indexOf('=') + 1)), to)
      t.equal((await closed)[0], 1012, 'closed with "service restart"')
      const again = await openSocket(wsUrl, cookie)
      t.equal(again.hello.upstream, to)
      again.ws.terminate()
    })

    t.test('WebSocket failover: a dead upstream\'s client moves before the 101, with a new cookie; none left: 503', async (t) => {
      const upstreams = await startWsUpstreams(t, ['a', 'b'])
      const [gateway] = await gateways(t, upstreams)
      const wsUrl = gateway.url.replace('http:', 'ws:') + '/live'
      const first = await openSocket(wsUrl)
      const bound = first.hello.upstream
      first.ws.close()
      await upstreams.find((u) => u.id === bound)?.close()
      const moved = await openSocket(wsUrl, cookieOf(first.setCookie[0]))
      t.not(moved.hello.upstream, bound, 'an upstream that refuses the connection: the upgrade goes to another one')
      t.match(moved.setCookie, [ROUTING_COOKIE], 'with the new routing cookie on the 101')
      t.equal(gateway.api.state(SHOP, bound), 'down')
      moved.ws.terminate()
      await upstreams.find((u) => u.id !== bound)?.close()
      const none = await refusedUpgrade(wsUrl)
      t.equal(none.status, 503, 'no upstream left: an HTTP 503 on the socket, not a reset')
      t.match(JSON.parse(none.body), { statusCode: 503, code: 'FST_STICKY_NO_UPSTREAM' })
      t.notMatch(none.body, /127\.0\.0\.1/, 'no address in the answer')
    })

    t.test('WebSocket: a refusal is relayed without the upstream\'s origin; a silent upstream is a 504 and stays up; tunnel caps', async (t) => {
      // "no" answers every upgrade 403 with a Location naming its own origin; "mute" accepts the connection, never answers.
      const no = await listen(t, http.createServer())
      no.server.on('upgrade', (_req, socket: net.Socket) => {
        socket.end(`HTTP/1.1 403 Forbidden\r\nLocation: ${no.url}/login\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno`)
      })
      const mute = await listen(t, net.createServer(() => {}))
      const [refusing] = await gateways(t, [{ id: 'no', url: no.url }])
      const relayed = await refusedUpgrade(refusing.url.replace('http:', 'ws:') + '/live')
      t.same([relayed.status, relayed.headers.location, relayed.body], [403, '/login', 'no'], 'the upstream\'s status and body; Location without its origin')
      t.equal(refusing.api.state(SHOP, 'no'), 'active', 'a refusal is an answer, not a failure')

      const [silent] = await gateways(t, [{ id: 'mute', url: mute.url }], 1, { websocket: { handshakeTimeout: 300 } })
      const started = Date.now()
      const timedOut = await refusedUpgrade(silent.url.replace('http:', 'ws:') + '/live')
      t.equal(timedOut.status, 504)
      t.match(JSON.parse(timedOut.body), { code: 'FST_STICKY_UPSTREAM_TIMEOUT' })
      t.ok(Date.now() - started < 2000, 'after the handshake timeout')
      t.equal(silent.api.state(SHOP, 'mute'), 'active', 'connected but slow: not down')

      const [capped] = await gateways(t, await startWsUpstreams(t, ['c']), 1, { websocket: { maxTunnelsPerClient: 1 } })
      const wsUrl = capped.url.replace('http:', 'ws:') + '/live'
      const one = await openSocket(wsUrl)
      const second = await refusedUpgrade(wsUrl)
      t.equal(second.status, 503, 'a second tunnel for the same client is refused')
      t.match(JSON.parse(second.body), { code: 'FST_STICKY_TUNNEL_LIMIT' })
      one.ws.close()
      // The gateway frees the place when it sees the client socket close, a moment after the client does.
      t.ok(await eventually(async () => {
        const again = await openSocket(wsUrl).catch(() => undefined)
        again?.ws.terminate()
        return again !== undefined
      }, 2000), 'its place is free again once it closed')
    })

    t.test('timeouts: a silent upstream is a 504 and stays up; a route with timeout 0 lets a paused stream through', async (t) => {
      const slow = await listen(t, http.createServer((req, res) => {
        if (req.url?.endsWith('/slow') === true) return // never answers (closed at teardown)
        res.writeHead(200, { 'content-type': 'text/event-stream' })
        res.write('data: one\n\n')
        setTimeout(() => res.end('data: two\n\n'), 1600)
      }))
      // undici's timers tick every ~0.5 s: a 300 ms timeout fires within about 1.3 s.
      const [gateway] = await gateways(t, [{ id: 's', url: slow.url }], 1, { timeouts: { headers: 300, body: 300 } })
      const started = Date.now()
      const [silent, long, short] = await Promise.all([
        get(`${gateway.url}/slow`),
        get(`${gateway.url}/long/events`).then((r) => r.body),
        get(`${gateway.url}/short/events`).then((r) => r.body, (error: Error) => error.message)
      ])
      t.equal(silent.status, 504)
      t.match(silent.json(), { code: 'FST_STICKY_UPSTREAM_TIMEOUT' })
      t.ok(Date.now() - started < 3000, 'within the configured timeouts, not undici\'s 300 s')
      t.equal(gateway.api.state(SHOP, 's'), 'active', 'a slow answer says nothing against the upstream')
      t.equal(long, 'data: one\n\ndata: two\n\n', 'timeout: 0 waits out the pause')
      t.not(short, 'data: one\n\ndata: two\n\n', 'without it the body timeout cuts the pause')
    })
  }

  async function redisOutage (t: Test): Promise<void> {
    const server = await redisOf()
    const upstreams = await startUpstreams(t)
    const [gateway] = await gateways(t, upstreams)
    const clients = []
    for (let i = 0; i < 4; i++) {
      const jar = new CookieJar()
      clients.push({ jar, upstream: (await get(`${gateway.url}/`, { jar })).json().upstream as string, via: gateway })
    }
    await server.stop()

    let slowest = 0
    const timed = async (url: string, jar: CookieJar): Promise<HttpResponse> => {
      const started = Date.now()
      try {
        return await get(url, { jar })
      } finally {
        slowest = Math.max(slowest, Date.now() - started)
      }
    }
    const outage = []
    for (let round = 0; round < 3; round++) {
      for (const client of clients) {
        const response = await timed(`${gateway.url}/`, client.jar)
        t.same([response.status, response.json().upstream], [200, client.upstream], 'a bound client keeps its upstream while Redis is down')
      }
      const jar = new CookieJar()
      const fresh = await timed(`${gateway.url}/`, jar)
      t.equal(fresh.status, 200, 'a new client is served')
      t.ok(jar.has('sticky'), 'and gets a routing cookie')
      outage.push({ jar, upstream: fresh.json().upstream as string, via: gateway })
    }
    t.ok(gateway.api.stats.degraded >= 3, `decisions counted as degraded (${gateway.api.stats.degraded})`)

    // A gateway that starts while Redis is down starts, and routes degraded too.
    const [late] = await gateways(t, upstreams)
    const lateJar = new CookieJar()
    const lateFirst = await timed(`${late.url}/`, lateJar)
    t.same([lateFirst.status, lateJar.has('sticky')], [200, true], 'a gateway started during the outage serves new clients')
    t.ok(late.api.stats.degraded >= 1, 'degraded')
    t.ok(slowest < 1000, `no request waited on Redis (slowest ${slowest} ms)`)

    await server.restart()
    const everyone = [...clients, ...outage]
    let movedAway = 0
    t.ok(await eventually(async () => {
      for (const client of everyone) if ((await get(`${client.via.url}/`, { jar: client.jar })).json().upstream !== client.upstream) movedAway++
      return await liveSessions(gateway.api).catch(() => -1) === everyone.length
    }, 8000), 'once Redis answers again, every client\'s binding is written back, without a restart')
    t.equal(movedAway, 0, 'and no client changed upstream on the way')
    t.ok(await eventually(async () => {
      if ((await get(`${late.url}/`, { jar: lateJar })).json().upstream !== lateFirst.json().upstream) movedAway++
      return await liveSessions(late.api).catch(() => -1) === 1
    }, 8000), 'the gateway started during the outage uses Redis once it is up')
    t.equal(movedAway, 0)
  }
}
