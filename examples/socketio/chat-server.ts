/**
 * A Socket.IO 4 server with no adapter: each instance knows only its own sockets, so a client's long-polling
 * requests and its upgrade must all reach the instance that did the handshake (the case sticky sessions solve).
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { Server } from 'socket.io'

/** A running chat server. */
export interface ChatServer {
  readonly id: string
  readonly url: string
  close (): Promise<void>
}

/**
 * Starts a chat server: every `message` is acknowledged with `{ upstream, n }` (the count this socket sent).
 * @param port - 0 for a free port
 */
export async function startChatServer (id: string, port = 0): Promise<ChatServer> {
  const server = http.createServer()
  const io = new Server(server)
  io.on('connection', (socket) => {
    let n = 0
    socket.on('message', (_text: unknown, ack?: (reply: unknown) => void) => {
      n++
      if (typeof ack === 'function') ack({ upstream: id, n })
    })
  })
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
  return {
    id,
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: async () => {
      io.disconnectSockets(true)
      await new Promise<void>((resolve) => { void io.close(() => resolve()) })
    }
  }
}
