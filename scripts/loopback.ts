/**
 * Loopback helpers shared by the soak and the test helpers that start their own servers: a free port, and a
 * redis-server readiness probe that needs no client library.
 */
import net from 'node:net'

/** Binds 127.0.0.1:0, reads the port the kernel chose, releases it. */
export function freePort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer()
    probe.unref()
    probe.once('error', reject)
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo
      probe.close(() => resolve(port))
    })
  })
}

/** Sends an inline PING over raw TCP to 127.0.0.1; true only on `+PONG` (a server still loading answers `-LOADING`). */
export function pingRedis (port: number): Promise<boolean> {
  return new Promise((resolve) => {
    let reply = ''
    const socket = net.connect({ host: '127.0.0.1', port })
    const done = (ok: boolean): void => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(500, () => done(false))
    socket.once('error', () => done(false))
    socket.once('connect', () => socket.write('PING\r\n'))
    socket.on('data', (chunk) => {
      reply += chunk.toString('latin1')
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'))
    })
    socket.once('close', () => done(false))
  })
}
