/**
 * The operator contract of `npm run gateway`: every setting comes from the environment, and a bad value
 * stops the gateway at start with one line naming the variable (URL credentials in it shown as `***`).
 */
import { randomBytes } from 'node:crypto'
import net from 'node:net'
import type { Duration, RedisAddress, RedisConnection, StickyKeyOption, StickyUpstreamOptions } from '../index'
import { redactCredentials } from '../redact-credentials'
import { GatewayEnvError, type GatewaySettings } from './settings'

export { GatewayEnvError, type GatewaySettings } from './settings'

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']

function bad (name: string, expectation: string, value: string): never {
  // Redacted before it is cut: a cut could drop the '@' that marks the password as one.
  const shown = redactCredentials(value)
  throw new GatewayEnvError(`${name} must be ${expectation}, got ${JSON.stringify(shown.length > 80 ? shown.slice(0, 80) + '…' : shown)}`)
}

// A host:port entry never has userinfo; if someone wrote `:password@host:port`, it is not echoed.
function hideUserinfo (entry: string): string {
  const at = entry.lastIndexOf('@')
  return at < 0 ? entry : '***' + entry.slice(at)
}

// Seconds as a bare number (the operator's habit), or the plugin's own '30m'-style strings.
function durationEnv (name: string, value: string | undefined): Duration | undefined {
  if (value === undefined || value === '') return undefined
  if (/^\d+(\.\d+)?$/.test(value)) {
    const seconds = Number(value)
    if (seconds > 0) return Math.round(seconds * 1000)
  } else if (/^\d+(\.\d+)?(ms|s|m|h|d)$/.test(value) && parseFloat(value) > 0) {
    return value as Duration
  }
  return bad(name, "a positive number of seconds or a duration like '30m', '12h'", value)
}

function parseUpstreams (value: string | undefined): StickyUpstreamOptions[] {
  if (value === undefined || value.trim() === '') {
    throw new GatewayEnvError('UPSTREAMS must be set: a comma list of id=url, e.g. UPSTREAMS=a=http://127.0.0.1:4001,b=http://127.0.0.1:4002')
  }
  const seen = new Set<string>()
  return value.split(',').map((entry) => {
    const eq = entry.indexOf('=')
    const id = entry.slice(0, eq).trim()
    const url = entry.slice(eq + 1).trim()
    if (eq <= 0 || !/^[A-Za-z0-9_-]{1,32}$/.test(id)) bad('UPSTREAMS', 'a comma list of id=url with ids of [A-Za-z0-9_-]', entry)
    if (seen.has(id)) bad('UPSTREAMS', 'a comma list of id=url with unique ids', entry)
    seen.add(id)
    let parsed: URL | undefined
    try { parsed = new URL(url) } catch { parsed = undefined }
    if (parsed === undefined || !/^https?:$/.test(parsed.protocol) || !/^https?:\/\/[^/?#@]+\/?$/.test(url)) {
      bad('UPSTREAMS', 'a comma list of id=url with http(s) origin URLs (no path, no credentials)', entry)
    }
    return { id, url }
  })
}

function parseKey (value: string | undefined): StickyKeyOption {
  const key = value === undefined || value === '' ? 'cookie' : value
  if (key === 'cookie' || key === 'ip') return key
  const match = /^(header|query|learn):(.+)$/.exec(key)
  const name = match?.[2] ?? ''
  const valid = match !== null && (match[1] === 'query' ? name.length <= 64 : /^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}$/.test(name))
  if (!valid) bad('STICKY_KEY', "'cookie', 'ip', 'header:<Name>', 'query:<param>' or 'learn:<CookieName>'", key)
  const kind = match[1] as 'header' | 'query' | 'learn'
  return kind === 'header' ? { header: name } : kind === 'query' ? { query: name } : { learn: name }
}

function parseAddresses (name: string, value: string): RedisAddress[] {
  return value.split(',').map((entry) => {
    const match = /^\s*([^\s:[\]]+|\[[0-9A-Fa-f:.]+\]):(\d{1,5})\s*$/.exec(entry)
    const port = Number(match?.[2])
    if (match === null || port < 1 || port > 65535) bad(name, 'a comma list of host:port', hideUserinfo(entry))
    return { host: match[1].replace(/^\[|\]$/g, ''), port }
  })
}

// One way to reach Redis: a URL, sentinels (with the master group's name), or cluster nodes.
function parseRedis (env: NodeJS.ProcessEnv): RedisConnection | undefined {
  const set = (name: string): string | undefined => env[name] === undefined || env[name] === '' ? undefined : env[name]
  const url = set('REDIS_URL')
  const sentinels = set('REDIS_SENTINELS')
  const cluster = set('REDIS_CLUSTER')
  const given = [url && 'REDIS_URL', sentinels && 'REDIS_SENTINELS', cluster && 'REDIS_CLUSTER'].filter(Boolean)
  if (given.length > 1) throw new GatewayEnvError(`${given.join(' and ')} are both set: give one way to reach Redis`)
  const password = set('REDIS_PASSWORD')
  if (url !== undefined) {
    if (!/^rediss?:\/\/\S+$/.test(url)) bad('REDIS_URL', 'a redis:// or rediss:// URL', url)
    if (password !== undefined) throw new GatewayEnvError('REDIS_PASSWORD applies to REDIS_SENTINELS and REDIS_CLUSTER; put the password in REDIS_URL')
    return url
  }
  const auth = password === undefined ? {} : { password }
  if (sentinels !== undefined) {
    const name = set('REDIS_SENTINEL_NAME')
    if (name === undefined) throw new GatewayEnvError('REDIS_SENTINEL_NAME must be set with REDIS_SENTINELS: the master group name the sentinels monitor')
    return { sentinels: parseAddresses('REDIS_SENTINELS', sentinels), name, ...auth }
  }
  if (cluster !== undefined) return { cluster: parseAddresses('REDIS_CLUSTER', cluster), ...auth }
  return undefined
}

// `off`, or the safety TTL as seconds or '10s'-style.
function parseNearCache (value: string | undefined): false | { ttl: Duration } | undefined {
  if (value === undefined || value === '') return undefined
  if (value === 'off' || value === '0') return false
  const ttl = durationEnv('STICKY_NEAR_CACHE', value)
  return ttl === undefined ? undefined : { ttl }
}

// `off`, or the per-client budget of new bindings as `<count>/<duration>` (e.g. `30/1m`).
function parseNewBindings (value: string | undefined): false | { perClient: { rate: number, per: Duration } } | undefined {
  if (value === undefined || value === '') return undefined
  if (value === 'off') return false
  const match = /^(\d{1,7})\/(.+)$/.exec(value)
  const per = match === null ? undefined : durationEnv('STICKY_NEW_BINDINGS', match[2])
  if (match === null || per === undefined || Number(match[1]) < 1) bad('STICKY_NEW_BINDINGS', "'off' or <count>/<duration>, e.g. 30/1m", value)
  return { perClient: { rate: Number(match[1]), per } }
}

function parseTrustProxy (value: string | undefined): boolean | number | string {
  if (value === undefined || value === '' || value === 'false' || value === '0') return false
  if (value === 'true') return true
  // A number is a hop count (Fastify's trustProxy), not an address.
  if (/^\d{1,2}$/.test(value)) return Number(value)
  const entries = value.split(',').map((entry) => entry.trim())
  const valid = entries.every((entry) => {
    const [address, bits, extra] = entry.split('/')
    const family = net.isIP(address)
    if (family === 0 || extra !== undefined) return false
    return bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128))
  })
  if (!valid) bad('TRUST_PROXY', "'true', 'false', a hop count or a comma list of addresses/CIDRs", value)
  return entries.join(',')
}

// ADMIN_PORT (and ADMIN_HOST, loopback by default): the admin API on a listener of its own.
function parseAdminListen (env: NodeJS.ProcessEnv, adminToken: string | undefined, host: string, port: number): GatewaySettings['adminListen'] {
  const value = env.ADMIN_PORT === undefined || env.ADMIN_PORT === '' ? undefined : env.ADMIN_PORT
  const adminHost = env.ADMIN_HOST === undefined || env.ADMIN_HOST === '' ? undefined : env.ADMIN_HOST
  if (value === undefined) {
    if (adminHost !== undefined) throw new GatewayEnvError('ADMIN_HOST applies with ADMIN_PORT: set ADMIN_PORT too (and ADMIN_TOKEN)')
    return undefined
  }
  const adminPort = /^\d{1,5}$/.test(value) ? Number(value) : NaN
  if (!(adminPort >= 0 && adminPort <= 65535)) bad('ADMIN_PORT', 'a port number (0-65535)', value)
  if (adminToken === undefined) throw new GatewayEnvError('ADMIN_PORT applies to the admin API: set ADMIN_TOKEN too (at least 16 characters)')
  const listenHost = adminHost ?? '127.0.0.1'
  if (net.isIP(listenHost) === 0 && !/^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(listenHost)) {
    bad('ADMIN_HOST', 'an IP address or a host name', listenHost)
  }
  if (adminPort !== 0 && adminPort === port && listenHost === host) bad('ADMIN_PORT', 'another port than PORT (the admin API must not share the public listener)', value)
  return { host: listenHost, port: adminPort }
}

/**
 * Reads the gateway's settings from an environment.
 * @throws GatewayEnvError naming the variable
 */
export function readGatewayEnv (env: NodeJS.ProcessEnv): GatewaySettings {
  const port = env.PORT === undefined || env.PORT === '' ? 3000 : Number(env.PORT)
  if (!Number.isInteger(port) || port < 0 || port > 65535) bad('PORT', 'a port number (0-65535)', env.PORT ?? '')
  const host = env.HOST === undefined || env.HOST === '' ? '127.0.0.1' : env.HOST
  const logLevel = env.LOG_LEVEL === undefined || env.LOG_LEVEL === '' ? 'info' : env.LOG_LEVEL
  if (!LOG_LEVELS.includes(logLevel)) bad('LOG_LEVEL', LOG_LEVELS.join(', '), logLevel)

  const redis = parseRedis(env)
  const nearCache = parseNearCache(env.STICKY_NEAR_CACHE)
  if (nearCache !== undefined && redis === undefined) throw new GatewayEnvError('STICKY_NEAR_CACHE applies to a Redis store: set REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER')

  const secrets = (env.STICKY_SECRET ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '')
  const generatedSecret = secrets.length === 0
  // Gateways sharing a Redis must share the secret too, or each would refuse the others' cookies.
  if (generatedSecret && redis !== undefined) {
    throw new GatewayEnvError('STICKY_SECRET must be set when REDIS_URL is (or REDIS_SENTINELS, REDIS_CLUSTER): every gateway sharing the Redis needs the same secret (at least 32 characters)')
  }
  if (generatedSecret) secrets.push(randomBytes(32).toString('base64url'))
  for (const secret of secrets) {
    if (secret.length < 32) bad('STICKY_SECRET', 'a comma list of secrets of at least 32 characters, newest first', `${secret.length} characters`)
  }
  const prefix = env.STICKY_PREFIX === undefined || env.STICKY_PREFIX === '' ? undefined : env.STICKY_PREFIX
  if (prefix !== undefined && !/^[^{}\s]{1,64}$/.test(prefix)) bad('STICKY_PREFIX', 'up to 64 characters without braces or spaces', prefix)
  const cookieName = env.STICKY_COOKIE === undefined || env.STICKY_COOKIE === '' ? undefined : env.STICKY_COOKIE
  if (cookieName !== undefined && !/^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}$/.test(cookieName)) bad('STICKY_COOKIE', 'a cookie name (letters, digits, -_.)', cookieName)

  const adminToken = env.ADMIN_TOKEN === undefined || env.ADMIN_TOKEN === '' ? undefined : env.ADMIN_TOKEN
  // The length only: a token is never echoed.
  if (adminToken !== undefined && adminToken.length < 16) bad('ADMIN_TOKEN', 'at least 16 characters (it guards the admin API)', `${adminToken.length} characters`)
  const adminListen = parseAdminListen(env, adminToken, host, port)

  const key = parseKey(env.STICKY_KEY)
  const newBindings = parseNewBindings(env.STICKY_NEW_BINDINGS)
  return {
    host,
    port,
    trustProxy: parseTrustProxy(env.TRUST_PROXY),
    logLevel,
    adminToken,
    adminListen,
    generatedSecret,
    plugin: {
      secret: secrets,
      pools: { default: { upstreams: parseUpstreams(env.UPSTREAMS) } },
      // No route of the command reads cookies: @fastify/cookie's hooks would be paid by every request for nothing.
      cookiePlugin: false,
      ...(redis === undefined ? {} : { redis }),
      ...(nearCache === undefined ? {} : { nearCache }),
      ...(newBindings === undefined ? {} : { newBindings }),
      ...(prefix === undefined ? {} : { prefix }),
      ...(cookieName === undefined ? {} : { cookie: { name: cookieName } }),
      ...(adminToken === undefined ? {} : { admin: { token: adminToken, ...(adminListen === undefined ? {} : { listen: adminListen }) } }),
      defaults: {
        pool: 'default',
        key,
        idleTimeout: durationEnv('STICKY_IDLE_TIMEOUT', env.STICKY_IDLE_TIMEOUT),
        maxLifetime: durationEnv('STICKY_MAX_LIFETIME', env.STICKY_MAX_LIFETIME)
      }
    }
  }
}
