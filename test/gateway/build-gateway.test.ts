import t from 'tap'
import { buildGateway } from '../../lib/gateway/build-gateway'
import { readGatewayEnv } from '../../lib/gateway/env-settings'
import { CookieJar, get } from '../support/http'
import { startRedis, uniquePrefix } from '../support/redis'
import { startUpstreams } from '../support/upstreams'

const SECRET = 'gateway-secret-0123456789-abcdefghijklm'

t.test('the gateway proxies every method and path with stickiness, bodies unparsed, on Redis', async (t) => {
  const upstreams = await startUpstreams(t)
  const redis = await startRedis(t)
  const settings = readGatewayEnv({
    UPSTREAMS: upstreams.map((u) => `${u.id}=${u.url}`).join(','), PORT: '0', STICKY_SECRET: SECRET,
    REDIS_URL: redis.url, STICKY_PREFIX: uniquePrefix(), LOG_LEVEL: 'silent'
  })
  const app = await buildGateway(settings)
  t.teardown(() => app.close())
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  const jar = new CookieJar()
  const upstream = (await get(`${url}/`, { jar })).json().upstream
  const json = await get(`${url}/api/items?q=1`, { jar, method: 'POST', body: '{"not":"parsed",', headers: { 'content-type': 'application/json' } })
  t.same([json.json().upstream, json.json().method, json.json().url, json.json().body], [upstream, 'POST', '/api/items?q=1', '{"not":"parsed",'], 'invalid JSON passes through untouched')
  const del = await get(`${url}/deep/path/x`, { jar, method: 'DELETE' })
  t.equal(del.json().upstream, upstream)
})
