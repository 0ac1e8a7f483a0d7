/**
 * Socket.IO clients with the default transports (long-polling first, then the upgrade to WebSocket), as a
 * browser would use them: each sends messages and waits for every acknowledgement.
 */
import { io, type Socket } from 'socket.io-client'

/** What one client saw. */
export interface ClientRun {
  /** Acknowledgements received. */
  readonly acked: number
  /** Upstreams that answered (1 when stickiness holds). */
  readonly upstreams: ReadonlySet<string>
  /** Connection errors and disconnects seen (`Session ID unknown` without stickiness). */
  readonly errors: readonly string[]
  /** The transport at the end (`websocket` once upgraded). */
  readonly transport: string | undefined
}

/**
 * Runs clients against gateway URLs (client i uses `urls[i % urls.length]`), bounded by `timeoutMs`.
 */
export async function runClients (urls: readonly string[], clients: number, messages: number, timeoutMs: number): Promise<ClientRun[]> {
  return Promise.all(Array.from({ length: clients }, async (_, i) => {
    // withCredentials keeps cookies (the routing cookie) between requests in Node, as a browser does.
    const socket: Socket = io(urls[i % urls.length], { withCredentials: true, reconnectionDelay: 100, timeout: timeoutMs })
    const upstreams = new Set<string>()
    const errors: string[] = []
    let acked = 0
    socket.on('connect_error', (error) => errors.push(error.message))
    socket.on('disconnect', (reason) => { if (reason !== 'io client disconnect') errors.push(reason) })
    const deadline = Date.now() + timeoutMs
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', () => resolve())
        setTimeout(() => reject(new Error('no connection')), timeoutMs).unref()
      })
      for (let n = 0; n < messages && Date.now() < deadline; n++) {
        const reply = await socket.timeout(Math.max(1, deadline - Date.now())).emitWithAck('message', `hello ${n}`) as { upstream: string }
        upstreams.add(reply.upstream)
        acked++
      }
    } catch (error) {
      errors.push((error as Error).message)
    }
    const transport = socket.io.engine?.transport?.name
    socket.disconnect()
    return { acked, upstreams, errors, transport }
  }))
}

if (require.main === module) {
  const urls = (process.argv[2] ?? 'http://127.0.0.1:3001,http://127.0.0.1:3002').split(',')
  runClients(urls, 10, 20, 10_000).then((runs) => {
    for (const [i, run] of runs.entries()) {
      process.stdout.write(`client ${i}: ${run.acked}/20 acks from ${[...run.upstreams].join(',') || '-'} over ${run.transport ?? '-'}${run.errors.length > 0 ? ` (errors: ${run.errors.join('; ')})` : ''}\n`)
    }
    const ok = runs.every((run) => run.acked === 20 && run.upstreams.size === 1)
    process.stdout.write(ok ? 'every client got every ack from one upstream\n' : 'some clients lost their session\n')
    process.exit(ok ? 0 : 1)
  }, (error: unknown) => {
    process.stderr.write(`chat-client: ${(error as Error).message}\n`)
    process.exit(1)
  })
}
