/**
 * The one rule for what request target may be sent upstream, for HTTP requests and upgrades alike: an
 * origin-form path (`/a/b?q`) with no `..` that could climb out of the route's prefix once the upstream decodes it.
 * Absolute-form targets (`http://other/`), authority-form and `*` are refused, and so is `..` after a slash in
 * any spelling (`%2e%2e`, `.%2E`), as @fastify/reply-from refuses it for plain HTTP; a bad %-escape is refused too.
 * Framework-free.
 */

/**
 * The target to send upstream, as @fastify/reply-from builds it: `source` when given (its own query, else the
 * request's), else the request's own target; only the path is checked when the request's own target is used.
 * @param source - the target given to `reply.forward(source)`, if any
 * @param requestUrl - the request's own target
 * @returns the target to send, or `null` when it must be refused (a 400)
 */
export function forwardTarget (source: string | undefined, requestUrl: string): string | null {
  const query = requestUrl.indexOf('?')
  if (source === undefined) {
    if (!checkedPath(query < 0 ? requestUrl : requestUrl.slice(0, query))) return null
    return requestUrl
  }
  if (!checkedPath(source)) return null
  return source.includes('?') || query < 0 ? source : source + requestUrl.slice(query)
}

function checkedPath (target: string): boolean {
  if (target.charCodeAt(0) !== 47 /* '/' */) return false
  // Fast path: nothing encoded and no `..` (almost every real request).
  if (!target.includes('%') && !target.includes('..')) return true
  let decoded: string
  try {
    decoded = decodeURIComponent(target)
  } catch {
    return false
  }
  // The same test as reply-from's, so HTTP and upgrades refuse exactly the same set.
  return !(decoded.includes('/..') || decoded.includes('../'))
}
