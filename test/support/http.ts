import type { IncomingHttpHeaders } from 'node:http'
import { request } from 'undici'

/** Options for {@link get}. */
export interface RequestOptions {
  /** @defaultValue `'GET'` */
  method?: string
  headers?: Record<string, string | string[]>
  /** A Cookie header value (`a=1; b=2`), sent after the jar's cookies and any `headers.cookie`. */
  cookie?: string
  /** Acts like a browser: sends the jar's cookies and stores the response's Set-Cookie into it. */
  jar?: CookieJar
  /** A string or Buffer is sent as is; any other value as JSON (with `content-type: application/json`). */
  body?: string | Buffer | object
  /**
   * Headers and body timeouts, so a hung server fails the test quickly instead of at undici's 300 s.
   * @defaultValue 10000
   */
  timeoutMs?: number
}

/** A fully read response. */
export interface HttpResponse {
  status: number
  headers: IncomingHttpHeaders
  /** The body as utf8. */
  body: string
  /** Every Set-Cookie header, in order (empty when none). */
  setCookies: string[]
  /**
   * The body parsed as JSON.
   * @throws Error naming the status and the start of the body when it is not JSON
   */
  json<T = any>(): T
}

const DEFAULT_TIMEOUT_MS = 10_000

/**
 * Sends one HTTP request (any method, despite the name) with undici and reads the whole body.
 * Non-2xx statuses resolve normally; only transport failures reject.
 *
 * @param url - absolute URL, e.g. `${gateway.url}/shop/cart`
 * @param options - method, headers, cookies, body
 * @returns status, headers, body text, Set-Cookie list and a json() reader
 * @example
 * const jar = new CookieJar()
 * const first = await get(`${url}/shop/x`, { jar })
 * const again = await get(`${url}/shop/x`, { jar })   // carries the routing cookie
 * t.equal(again.json().upstream, first.json().upstream)
 */
export async function get (url: string, options: RequestOptions = {}): Promise<HttpResponse> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS
  const headers: Record<string, string | string[]> = {}
  for (const [name, value] of Object.entries(options.headers ?? {})) headers[name.toLowerCase()] = value

  const cookies = [options.jar?.header(), headers.cookie, options.cookie]
    .flat()
    .filter((c): c is string => typeof c === 'string' && c !== '')
  if (cookies.length > 0) headers.cookie = cookies.join('; ')
  else delete headers.cookie

  let body: string | Buffer | undefined
  if (typeof options.body === 'string' || Buffer.isBuffer(options.body)) {
    body = options.body
  } else if (options.body !== undefined) {
    body = JSON.stringify(options.body)
    headers['content-type'] ??= 'application/json'
  }

  const res = await request(url, {
    method: (options.method ?? 'GET').toUpperCase(),
    headers,
    body,
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs
  })
  const text = await res.body.text()
  const raw = res.headers['set-cookie']
  const setCookies = raw === undefined ? [] : Array.isArray(raw) ? raw : [raw]
  options.jar?.store(setCookies)

  return {
    status: res.statusCode,
    headers: res.headers as IncomingHttpHeaders,
    body: text,
    setCookies,
    json () {
      try {
        return JSON.parse(text)
      } catch {
        throw new Error(`expected a JSON body from ${url} (status ${res.statusCode}), got: ${text.slice(0, 200)}`)
      }
    }
  }
}

/**
 * A minimal browser cookie store for one site: keeps `name=value` from Set-Cookie, ignores Domain,
 * Path and Secure, deletes on `Max-Age<=0` (or, without Max-Age, an `Expires` in the past).
 */
export class CookieJar {
  readonly #cookies = new Map<string, string>()

  /**
   * Applies Set-Cookie headers, in order.
   * @param setCookies - one header value or a list, e.g. `response.setCookies`
   * @returns this jar
   */
  store (setCookies: string | string[]): this {
    for (const line of Array.isArray(setCookies) ? setCookies : [setCookies]) {
      const [pair, ...attributes] = line.split(';')
      const eq = pair.indexOf('=')
      if (eq <= 0) continue
      const name = pair.slice(0, eq).trim()
      const value = pair.slice(eq + 1).trim()
      if (name === '') continue
      if (isDeletion(attributes)) this.#cookies.delete(name)
      else this.#cookies.set(name, value)
    }
    return this
  }

  /** @returns the stored value, or undefined */
  get (name: string): string | undefined {
    return this.#cookies.get(name)
  }

  has (name: string): boolean {
    return this.#cookies.has(name)
  }

  /** Sets a cookie by hand (e.g. a tampered routing token). */
  set (name: string, value: string): this {
    this.#cookies.set(name, value)
    return this
  }

  delete (name: string): boolean {
    return this.#cookies.delete(name)
  }

  clear (): void {
    this.#cookies.clear()
  }

  get size (): number {
    return this.#cookies.size
  }

  /** @returns a Cookie header value (`a=1; b=2`), or `''` when empty */
  header (): string {
    return [...this.#cookies].map(([name, value]) => `${name}=${value}`).join('; ')
  }

  toString (): string {
    return this.header()
  }
}

/** RFC 6265 §5.3: Max-Age wins over Expires; Max-Age <= 0 or a past Expires removes the cookie. */
function isDeletion (attributes: string[]): boolean {
  let expires: string | undefined
  for (const attribute of attributes) {
    const eq = attribute.indexOf('=')
    const key = (eq === -1 ? attribute : attribute.slice(0, eq)).trim().toLowerCase()
    const value = eq === -1 ? '' : attribute.slice(eq + 1).trim()
    if (key === 'max-age' && /^-?\d+$/.test(value)) return Number(value) <= 0
    if (key === 'expires') expires = value
  }
  if (expires === undefined) return false
  const at = Date.parse(expires)
  return !Number.isNaN(at) && at <= Date.now()
}
