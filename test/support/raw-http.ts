/**
 * Raw HTTP/1.1 exchanges over a TCP socket, for requests no well-behaved client library sends (upgrades to odd
 * targets, hop-by-hop headers) and for reading an answer's framing exactly as it went over the wire.
 */
import net from 'node:net'

/** What came back on the socket before it closed (or the wait ended). */
export interface RawAnswer {
  /** Status code of the first status line; 0 when nothing came. */
  readonly status: number
  /** Everything up to the blank line after the headers. */
  readonly head: string
  /** The bytes after the head, undecoded (chunked framing kept). */
  readonly rest: string
}

/**
 * Sends `request` as it is and collects the answer until the peer closes or `waitMs` passes.
 * @param url - `http://127.0.0.1:<port>`
 */
export async function rawExchange (url: string, request: string, waitMs = 3000): Promise<RawAnswer> {
  const { hostname, port } = new URL(url)
  return new Promise((resolve) => {
    const socket = net.connect({ host: hostname, port: Number(port) })
    let data = ''
    const finish = (): void => {
      clearTimeout(timer)
      socket.destroy()
      const end = data.indexOf('\r\n\r\n')
      const head = end < 0 ? data : data.slice(0, end)
      const match = /^HTTP\/1\.1 (\d{3})/.exec(head)
      resolve({ status: match === null ? 0 : Number(match[1]), head, rest: end < 0 ? '' : data.slice(end + 4) })
    }
    const timer = setTimeout(finish, waitMs)
    socket.setEncoding('latin1')
    socket.on('data', (chunk: string) => { data += chunk })
    socket.on('close', finish)
    socket.on('error', () => {})
    socket.write(request)
  })
}

/** An upgrade request line and headers for `target` (any string, sent verbatim). */
export function upgradeRequest (target: string, extraHeaders = ''): string {
  return `GET ${target} HTTP/1.1\r\nHost: gateway.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
    'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n' + extraHeaders + '\r\n'
}
