/**
 * Cookie secret rotation over three generations, end to end through gateways sharing one Redis: a cookie issued
 * under secret 1 is honoured by gateways configured [s2, s1] and [s3, s2, s1] and re-issued under their newest
 * secret (same binding, same upstream); once s1 is dropped ([s3, s2]) it is refused as a forgery would be, while
 * its re-issued successor keeps working. Also: the minimum secret length, and errors that never echo a secret.
 */
import Fastify from 'fastify'
import t from 'tap'
import sticky from '../../lib/index'
import { createRoutingCookieCodec } from '../../lib/affinity/routing-cookie'
import { startGateway, type TestGateway } from '../support/gateway'
import { get } from '../support/http'
import { startRedis, uniquePrefix } from '../support/redis'
import { startUpstreams } from '../support/upstreams'

const S1 = 'generation-1-secret-0123456789abcdefghij'
const S2 = 'generation-2-secret-0123456789abcdefghij'
const S3 = 'generation-3-secret-0123456789abcdefghij'

const tokenOf = (cookie: string): { bindingId: string, upstreamId: string, signature: string } => {
  const [, bindingId, upstreamId, , signature] = decodeURIComponent(cookie).split('.')
  return { bindingId, upstreamId, signature }
}

t.test('three generations of secrets on gateways sharing Redis', async (t) => {
  const redis = await startRedis(t)
  const upstreams = await startUpstreams(t)
  const prefix = uniquePrefix()
  const gateway = (secret: string[]): Promise<TestGateway> => startGateway(t, { upstreams, redis: redis.url, prefix, secret })
  const g1 = await gateway([S1])
  const g2 = await gateway([S2, S1])
  const g3 = await gateway([S3, S2, S1])
  const g4 = await gateway([S3, S2])

  const cookieFrom = (setCookies: string[]): string | undefined => setCookies.find((c) => c.startsWith('sticky='))?.split(';')[0].slice('sticky='.length)
  const visit = async (g: TestGateway, cookie: string): Promise<{ upstream: string, reissued: string | undefined }> => {
    const response = await get(`${g.url}/x`, { cookie: `sticky=${cookie}` })
    t.equal(response.status, 200)
    return { upstream: response.json().upstream, reissued: cookieFrom(response.setCookies) }
  }
  const verifies = (cookie: string, secrets: string[]): boolean => createRoutingCookieCodec(secrets).verify(decodeURIComponent(cookie)).ok

  // Several clients, so the test does not pass by one lucky upstream.
  for (let client = 0; client < 6; client++) {
    const first = await get(`${g1.url}/x`)
    const c1 = cookieFrom(first.setCookies) as string
    const upstream = first.json().upstream as string
    const { bindingId } = tokenOf(c1)
    t.ok(verifies(c1, [S1]) && !verifies(c1, [S2]), 'generation 1 signs with s1')

    const viaG2 = await visit(g2, c1)
    t.equal(viaG2.upstream, upstream, '[s2, s1] honours an s1 cookie')
    t.ok(viaG2.reissued !== undefined && verifies(viaG2.reissued, [S2]) && !verifies(viaG2.reissued, [S1]), '... and re-issues it under s2')
    const c2 = viaG2.reissued as string
    t.equal(tokenOf(c2).bindingId, bindingId, '... for the same binding')

    for (const [label, cookie] of [['s1', c1], ['s2', c2]] as const) {
      const viaG3 = await visit(g3, cookie)
      t.equal(viaG3.upstream, upstream, `[s3, s2, s1] honours an ${label} cookie`)
      t.ok(viaG3.reissued !== undefined && verifies(viaG3.reissued, [S3]) && !verifies(viaG3.reissued, [S2, S1]), `... and re-issues it under s3`)
      t.equal(tokenOf(viaG3.reissued as string).bindingId, bindingId)
    }
    const c3 = (await visit(g3, c2)).reissued as string
    const settled = await visit(g3, c3)
    t.same(settled, { upstream, reissued: undefined }, 'an s3 cookie is current: no new cookie')

    // s1 retired: its cookies are refused like forgeries (a new binding); the re-issued ones still work.
    const refusedBefore = g4.app.sticky.stats.invalidCookie['bad-signature']
    const old = await visit(g4, c1)
    t.equal(g4.app.sticky.stats.invalidCookie['bad-signature'], refusedBefore + 1, '[s3, s2] refuses an s1 cookie')
    t.ok(old.reissued !== undefined && tokenOf(old.reissued).bindingId !== bindingId, '... and starts a new binding')
    t.same(await visit(g4, c3), { upstream, reissued: undefined }, '[s3, s2] keeps the client that was re-issued an s3 cookie')
    const fromS2 = await visit(g4, c2)
    t.equal(fromS2.upstream, upstream, '[s3, s2] still honours s2 cookies')
    t.ok(fromS2.reissued !== undefined && verifies(fromS2.reissued, [S3]), '... re-issued under s3')
  }
  t.ok(g3.app.sticky.stats.hit > 0 && g4.app.sticky.stats.hit > 0, 'honoured cookies found their binding in Redis (hits): rotation does not touch bindings')
})

t.test('secrets: at least 32 characters each, and errors never echo one', async (t) => {
  const upstreams = [{ id: 'a', url: 'http://127.0.0.1:9' }]
  const attempt = async (secret: unknown): Promise<Error> => {
    const app = Fastify()
    t.teardown(() => app.close())
    app.register(sticky, { secret: secret as string, pools: { shop: { upstreams } } })
    try {
      await app.ready()
    } catch (error) {
      return error as Error
    }
    throw new Error(`accepted ${JSON.stringify(secret)}`)
  }
  const short = 'short-secret-but-31-characters!'
  t.equal(short.length, 31)
  for (const [secret, path] of [[short, 'secret'], [[S1, short], 'secret[1]'], [[short, S1], 'secret[0]'], [[], 'secret'], ['', 'secret']] as const) {
    const error = await attempt(secret)
    t.equal((error as Error & { code?: string }).code, 'FST_STICKY_INVALID_OPTION', `${JSON.stringify(path)} refused`)
    t.match(error.message, path, 'the message names the option')
    t.notMatch(error.message, short, 'and never echoes the secret')
    t.notMatch(error.message, S1)
  }
})
