/**
 * Cookie text as the Cookie header parser (cookie@2, through @fastify/cookie) reads it: names and values are
 * trimmed of spaces and tabs only. `String#trim` would also drop U+00A0 and other Unicode spaces, which a UTF-8
 * value read as latin1 can end with, and the plugin would then disagree with the parser about a cookie.
 */

/** @returns the text without leading and trailing spaces and tabs */
export function trimOws (text: string): string {
  let start = 0
  let end = text.length
  while (start < end && (text.charCodeAt(start) === 32 || text.charCodeAt(start) === 9)) start++
  while (end > start && (text.charCodeAt(end - 1) === 32 || text.charCodeAt(end - 1) === 9)) end--
  return text.slice(start, end)
}

/** @returns a cookie value %-decoded as the parser decodes it: only when it has a `%`, and as sent when it does not decode */
export function decodeCookieValue (raw: string): string {
  if (!raw.includes('%')) return raw
  try {
    return decodeURIComponent(raw)
  } catch {
    return raw
  }
}
