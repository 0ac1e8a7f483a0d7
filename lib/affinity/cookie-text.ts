/**
 * Cookie text as the Cookie header parser (cookie@2, through @fastify/cookie) reads it: names and values are
 * trimmed of spaces and tabs only. `String#trim` would also drop U+00A0 and other Unicode spaces, which a UTF-8
 * value read as latin1 can end with, and the plugin would then disagree with the parser about a cookie.
 */

/** @returns the text without leading and trailing spaces and tabs */
export function trimOws (text: string): string {
  const start = skipOws(text, 0, text.length)
  return text.slice(start, backOws(text, start, text.length))
}

/** @returns the first index in [from, to) that is not a space or tab (`to` when there is none) */
export function skipOws (text: string, from: number, to: number): number {
  while (from < to && isOws(text.charCodeAt(from))) from++
  return from
}

/** @returns the end of text[from, to) without its trailing spaces and tabs */
export function backOws (text: string, from: number, to: number): number {
  while (to > from && isOws(text.charCodeAt(to - 1))) to--
  return to
}

function isOws (code: number): boolean {
  return code === 32 || code === 9
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
