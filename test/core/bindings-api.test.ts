// `app.sticky.bindings` and the read-only `app.sticky.pools` views, through a real gateway (memory store; the
// admin API's tests run the same calls over HTTP and on Redis).
import t, { type Test } from 'tap'
import { MemoryBindingStore } from '../../lib/index'
import type { BindingStore } from '../../lib/store/binding-store'
import { startGateway, type TestGateway } from '../support/gateway'
import { CookieJar, get } from '../support/http'
import { startUpstreams, type TestUpstream } from '../support/upstreams'
import { eventually } from '../support/eventually'

interface Setup {
  readonly g: TestGateway
  readonly upstreams: TestUpstream[]
  readonly store: MemoryBindingStore
}

async function setup (t: Test, wrap?: (store: BindingStore) => BindingStore): Promise<Setup> {
  const upstreams = await startUpstreams(t, ['a', 'b'])
  const store = new MemoryBindingStore({})
  t.teardown(() => store.close())
  const members = upstreams.map(({ id, url }) => ({ id, url }))
  const g = await startGateway(t, {
    store: wrap === undefined ? store : wrap(store),
    pools: { shop: { upstreams: members }, models: { upstreams: members } },
    routes (app) {
      app.all('/shop/*', { config: { sticky: { pool: 'shop' } } }, (_request, reply) => reply.forward())
      app.all('/tenant/*', { config: { sticky: { pool: 'shop', key: { header: 'X-Tenant' } } } }, (_request, reply) => reply.forward())
      app.all('/models/*', { config: { sticky: { pool: 'models', key: { header: 'x-tenant' } } } }, (_request, reply) => reply.forward())
      app.all('/q/*', { config: { sticky: { pool: 'shop', key: { query: 'User' } } } }, (_request, reply) => reply.forward())
      app.all('/app/*', { config: { sticky: { pool: 'shop', key: { learn: 'SID' } } } }, (_request, reply) => reply.forward())
      app.all('/net/*', { config: { sticky: { pool: 'shop', key: { ip: { ipv4Prefix: 24 } } } } }, (_request, reply) => reply.forward())
    }
  })
  return { g, upstreams, store }
}

const upstreamOf = async (url: string, options: Parameters<typeof get>[1] = {}): Promise<string> => (await get(url, options)).json().upstream as string
const other = (id: string): string => id === 'a' ? 'b' : 'a'

t.test('every kind of key finds the binding its route made', async (t) => {
  const { g } = await setup(t)
  const { bindings } = g.app.sticky
  const jar = new CookieJar()
  const byCookie = await upstreamOf(`${g.url}/shop/cart`, { jar })
  const cookie = jar.get('sticky') as string
  const found = await bindings.get(cookie)
  t.match(found, { pool: 'shop', key: 'cookie', upstream: byCookie, state: 'active', cookieUpstream: byCookie })
  t.match(found?.keyId, /^[A-Za-z0-9_-]{16}$/, 'the key id, never the raw key')
  t.same(await bindings.get({ cookie: decodeURIComponent(cookie) }), found, 'decoded, and as { cookie }')

  const byHeader = await upstreamOf(`${g.url}/tenant/x`, { headers: { 'x-tenant': 'acme' } })
  t.match(await bindings.get({ header: 'x-TENANT', value: 'acme' }, { pool: 'shop' }), { key: 'header', upstream: byHeader }, 'header names are case-insensitive')
  t.equal(await bindings.get({ header: 'x-tenant', value: 'ACME' }, { pool: 'shop' }), null, 'values are not')

  const byQuery = await upstreamOf(`${g.url}/q/x?User=42`)
  t.match(await bindings.get({ query: 'User', value: '42' }), { key: 'query', upstream: byQuery })

  const learnt = await upstreamOf(`${g.url}/app/set-cookie/SID/s3ss10n`)
  t.match(await bindings.get({ appCookie: 'SID', value: 's3ss10n' }), { key: 'appCookie', upstream: learnt })

  const byNet = await upstreamOf(`${g.url}/net/x`)
  t.match(await bindings.get({ ip: '127.0.0.99', ipv4Prefix: 24 }), { key: 'ip', upstream: byNet }, 'any address of the /24')
  t.equal(await bindings.get({ ip: '127.0.0.1' }), null, 'masked otherwise (/32) it is another key')

  t.equal(await bindings.get(undefined), null, 'a cookie the request did not send names no binding')
  for (const junk of ['', 'not-a-cookie', { header: 'x-tenant', value: '' }, { ip: 'not an address' }, { nothing: 1 }, 42, null]) {
    t.equal(await bindings.get(junk as never), null, `junk names no binding: ${JSON.stringify(junk)}`)
  }
  await t.rejects(bindings.get(cookie, { pool: 'nope' }), { code: 'FST_STICKY_UNKNOWN_POOL', statusCode: 404 })
})

t.test('a key bound in two pools needs the pool named', async (t) => {
  const { g } = await setup(t)
  const { bindings } = g.app.sticky
  const inShop = await upstreamOf(`${g.url}/tenant/x`, { headers: { 'x-tenant': 'acme' } })
  const inModels = await upstreamOf(`${g.url}/models/x`, { headers: { 'x-tenant': 'acme' } })
  const key = { header: 'x-tenant', value: 'acme' }
  await t.rejects(bindings.get(key), { code: 'FST_STICKY_AMBIGUOUS_BINDING', statusCode: 409, pools: ['shop', 'models'] })
  await t.rejects(bindings.evict(key), { code: 'FST_STICKY_AMBIGUOUS_BINDING' }, 'nothing is evicted on a guess')
  t.match(await bindings.get(key, { pool: 'models' }), { pool: 'models', upstream: inModels })
  t.equal(await bindings.evict(key, { pool: 'shop' }), true)
  t.match(await bindings.get(key), { pool: 'models' }, 'one left: found without naming it')
  t.ok(inShop)
})

t.test('move and evict change where the client goes next', async (t) => {
  const { g, upstreams } = await setup(t)
  const { bindings } = g.app.sticky
  const jar = new CookieJar()
  const first = await upstreamOf(`${g.url}/shop/cart`, { jar })
  const cookie = jar.get('sticky') as string
  const target = other(first)

  t.match(await bindings.move(cookie, first), { upstream: first }, 'moving it where it is is a no-op')
  t.match(await bindings.move(cookie, target), { upstream: target, cookieUpstream: first })
  t.equal(await upstreamOf(`${g.url}/shop/cart`, { jar }), target, 'the next request goes to the new upstream')
  t.match(await bindings.get(jar.get('sticky') as string), { upstream: target, cookieUpstream: target }, 'with a routing cookie that says so')

  await t.rejects(bindings.move(cookie, 'zz'), { code: 'FST_STICKY_UNKNOWN_UPSTREAM', statusCode: 404 })
  await g.app.sticky.pool('shop').drain(first)
  t.match(await bindings.move(cookie, first), { upstream: first, state: 'draining' }, 'a draining upstream still takes a moved session')
  await g.app.sticky.pool('shop').undrain(first)

  t.equal(await bindings.evict(cookie), true)
  t.equal(await bindings.get(cookie), null, 'gone')
  t.equal(await bindings.evict(cookie), false, 'evicting twice finds nothing')
  await t.rejects(bindings.move(cookie, target), { code: 'FST_STICKY_UNKNOWN_BINDING', statusCode: 404 })
  const hitsBefore = upstreams.reduce((n, u) => n + u.hits, 0)
  await bindings.get(cookie)
  t.equal(upstreams.reduce((n, u) => n + u.hits, 0), hitsBefore, 'the API reaches no upstream')
})

t.test('a move towards a down upstream, a lost race and a failing store are coded errors', async (t) => {
  let race: ((store: BindingStore, pool: string, keyId: string) => Promise<void>) | undefined
  let failing = false
  let garbledTime = false
  const { g } = await setup(t, (store) => new Proxy(store, {
    get (target, property, receiver) {
      const value = Reflect.get(target, property, receiver) as (...args: unknown[]) => unknown
      if (typeof value !== 'function') return value
      if (property !== 'get' && property !== 'rebind') return value.bind(target)
      return async (...args: unknown[]) => {
        if (failing && property === 'get') throw new Error('connection lost')
        if (garbledTime && property === 'get') {
          const found = await value.apply(target, args) as object | null
          return found === null ? null : { ...found, createdAt: Number.NaN }
        }
        if (property === 'rebind' && race !== undefined) await race(target, args[0] as string, args[1] as string)
        return value.apply(target, args)
      }
    }
  }))
  const { bindings } = g.app.sticky
  const jar = new CookieJar()
  const first = await upstreamOf(`${g.url}/shop/cart`, { jar })
  const cookie = jar.get('sticky') as string
  const target = other(first)

  // As another gateway's health check would: this gateway reads it from the store within a second.
  await g.app.sticky.store.setUpstreamState('shop', target, { down: true })
  await eventually(() => g.app.sticky.state('shop', target) === 'down')
  await t.rejects(bindings.move(cookie, target), { code: 'FST_STICKY_UPSTREAM_DOWN', statusCode: 409 })
  await g.app.sticky.store.setUpstreamState('shop', target, { down: false })
  await eventually(() => g.app.sticky.state('shop', target) === 'active')

  race = async (store, pool, keyId) => { await store.delete(pool, keyId) }
  await t.rejects(bindings.move(cookie, target), { code: 'FST_STICKY_BINDING_CHANGED', statusCode: 409, upstream: null }, 'evicted meanwhile')
  race = undefined

  await upstreamOf(`${g.url}/shop/cart`, { jar }) // bound again under its cookie
  garbledTime = true
  t.match(await bindings.get(cookie), { pool: 'shop', createdAt: null }, 'a time the store mangled is shown as unknown, not thrown')
  garbledTime = false

  failing = true
  const error = await bindings.get(cookie).catch((e: unknown) => e) as Error
  t.match(error, { code: 'FST_STICKY_STORE_UNAVAILABLE', statusCode: 503 })
  t.match(error.cause, { message: 'connection lost' }, 'the cause kept for logs')
})

t.test('pools are read-only views whose changes are validated', async (t) => {
  const { g } = await setup(t)
  const { pools } = g.app.sticky
  const shop = pools.get('shop')
  t.ok(shop !== undefined)
  if (shop === undefined) return
  t.equal(g.app.sticky.pool('shop'), shop, 'pool(name) is the same view')
  const writable = pools as Map<string, unknown>
  t.throws(() => writable.clear(), TypeError, 'the Map is read-only at run time too, not only in its type')
  t.throws(() => writable.delete('shop'), TypeError)
  t.throws(() => writable.set('shop', {}), TypeError)
  t.equal(g.app.sticky.pool('shop'), shop, 'and still holds every pool')
  t.same([...pools.keys()], ['shop', 'models'])
  t.ok(Object.isFrozen(shop), 'frozen')
  for (const internal of ['applyLocalChange', 'applyStates', 'noteBound', 'refreshCounts', 'pickForNewSession', 'config']) {
    t.notOk(internal in shop, `no ${internal}: a view cannot bypass the store`)
  }
  t.same(shop.upstreams.map((u) => u.id), ['a', 'b'])
  t.throws(() => shop.state('zz'), { code: 'FST_STICKY_UNKNOWN_UPSTREAM' })
  t.throws(() => g.app.sticky.pool('nope'), { code: 'FST_STICKY_UNKNOWN_POOL' })

  await shop.drain('a')
  t.equal(shop.state('a'), 'draining')
  t.equal(await g.app.sticky.store.upstreamStates('shop').then((s) => s.a?.admin), 'draining', 'written to the store')
  t.equal(pools.get('models')?.state('a'), 'active', 'a pool of its own')
  await shop.undrain('a')
  await t.rejects(shop.drain('zz'), { code: 'FST_STICKY_UNKNOWN_UPSTREAM' })
  await t.rejects(shop.add({ id: 'a', url: 'http://127.0.0.1:9' }), { code: 'FST_STICKY_UPSTREAM_EXISTS' })
  await t.rejects(shop.add({ id: 'c', url: 'ftp://x' } as never), { code: 'FST_STICKY_INVALID_OPTION' })
  await shop.add({ id: 'c', url: 'http://127.0.0.1:9' })
  t.same(shop.upstreams.map((u) => u.id), ['a', 'b', 'c'])
  await shop.remove('c')
  t.equal(shop.state('c'), 'removed')
  t.same(await shop.sessionCounts(), { a: 0, b: 0 })
})
