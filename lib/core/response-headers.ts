/**
 * What an upstream's response headers must not carry to the client: its own origin in redirects, and shared-cache
 * permission on a response that sets the routing cookie. Framework-free.
 */

/** A reference that starts with the upstream's own origin, as a path-absolute reference; anything else as it is. */
export function withoutOrigin (value: unknown, origin: string): unknown {
  if (typeof value !== 'string' || value.length < origin.length || value.slice(0, origin.length).toLowerCase() !== origin.toLowerCase()) return value
  const rest = value.slice(origin.length)
  if (rest === '') return '/'
  if (rest[0] === '/') return rest
  return rest[0] === '?' || rest[0] === '#' ? '/' + rest : value
}

/**
 * The response's Cache-Control once it carries a routing cookie: private (the browser may keep it, a shared cache
 * may not); `no-store` and `private` are kept as they are, and `public` / `s-maxage` give way.
 */
export function privateCacheControl (value: unknown): string {
  if (typeof value !== 'string' || value === '') return 'private'
  if (/(^|,)\s*(private|no-store)\s*(,|$|=)/i.test(value)) return value
  const kept = value.split(',').map((d) => d.trim()).filter((d) => d !== '' && !/^(public|s-maxage\s*=.*)$/i.test(d))
  return ['private', ...kept].join(', ')
}
