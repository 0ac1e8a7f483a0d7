/**
 * Reads an upstream's Set-Cookie lines for the app session cookie a `{ learn }` key follows: the value it sets, or
 * that it deletes the cookie.
 */
import { decodeCookieValue, trimOws } from './cookie-text'

/**
 * Reads one Set-Cookie line for the named cookie.
 * @returns its value and whether the line deletes it (empty value, `Max-Age<=0`, or `Expires` in the past)
 */
export function parseSetCookie (line: string, name: string): { value: string, deleted: boolean } | undefined {
  const parts = line.split(';')
  const first = parts[0]
  const eq = first.indexOf('=')
  if (eq < 0 || trimOws(first.slice(0, eq)) !== name) return undefined
  // Keyed as the client's Cookie header will be read back by @fastify/cookie (%-decoded when it decodes, quotes
  // kept), or the client would never find its binding.
  const value = decodeCookieValue(trimOws(first.slice(eq + 1)))
  let maxAge: number | undefined
  let expires: number | undefined
  for (let i = 1; i < parts.length; i++) {
    const attribute = parts[i].trim()
    const sep = attribute.indexOf('=')
    const key = (sep < 0 ? attribute : attribute.slice(0, sep)).trim().toLowerCase()
    const text = sep < 0 ? '' : attribute.slice(sep + 1).trim()
    if (key === 'max-age' && /^-?\d+$/.test(text)) maxAge = Number(text)
    else if (key === 'expires' && Number.isFinite(Date.parse(text))) expires = Date.parse(text)
  }
  // Max-Age wins over Expires (RFC 6265 §5.3).
  const deleted = value === '' || value === '""' || (maxAge !== undefined ? maxAge <= 0 : expires !== undefined && expires <= Date.now())
  return { value, deleted }
}
