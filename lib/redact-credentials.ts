/**
 * Redaction of URL credentials in text that echoes a configured value (option errors, the gateway's start-up
 * lines): `redis://:secret@host` is shown as `redis://***@host`.
 */

// Where an authority may start: any scheme followed by a slash or backslash (WHATWG parsers treat `\` as `/` in
// special schemes and skip any number of them), or a special scheme followed by anything at all
// (`http:user:pass@host` has an authority too).
const AUTHORITY_START = /[A-Za-z][A-Za-z0-9+.-]*:[\\/]+|(?<![A-Za-z0-9+.-])(?:https?|wss?|ftp):/gi
const LINE_BREAK = /[\r\n]/

/**
 * Replaces the userinfo of every URL in `text` with `***`. Everything between a scheme's `://` and the last `@`
 * before the next URL or line break goes, not only up to the first `/`, `?`, `#` or space: a mistyped URL (an
 * unencoded `/` or space in the password) is exactly the one an error message echoes. A URL with `@` in its path
 * loses a little more than its userinfo; a URL's userinfo is never kept. Text with no `@` after a scheme comes back
 * unchanged. Scheme-less `user:pass@host` is not recognised.
 * @param text - any text, e.g. an error message that quotes a configured value
 * @returns the text with each URL's userinfo replaced by `***`
 * @example
 * redactCredentials('REDIS_URL must be a redis:// URL, got "redis://:s3cret@bad host"')
 * // → 'REDIS_URL must be a redis:// URL, got "redis://***@bad host"'
 */
export function redactCredentials (text: string): string {
  if (!text.includes('@')) return text
  const matches = [...text.matchAll(AUTHORITY_START)]
  if (matches.length === 0) return text
  let out = text.slice(0, matches[0].index)
  matches.forEach((match, i) => {
    const authority = match.index + match[0].length
    const next = i + 1 < matches.length ? matches[i + 1].index : text.length
    out += match[0] + redactRun(text.slice(authority, next))
  })
  return out
}

// One authority candidate: up to the first line break; everything before its last '@' there is userinfo.
function redactRun (run: string): string {
  const lineBreak = run.search(LINE_BREAK)
  const at = (lineBreak < 0 ? run : run.slice(0, lineBreak)).lastIndexOf('@')
  return at < 0 ? run : '***' + run.slice(at)
}
