/**
 * Socket.IO behind two sticky gateways sharing Redis (`npx tsx examples/socketio/index.ts`, then
 * `npx tsx examples/socketio/chat-client.ts`): three chat servers with no adapter, default transports.
 * REDIS_URL names the Redis; without it a redis-server from PATH is started on a free port for the demo.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import net from 'node:net'
import Fastify, { type FastifyInstance } from 'fastify'
import sticky from '../../lib/index'
import { startChatServer, type ChatServer } from './chat-server'

/** The running example. */
export interface SocketIoDemo {
  readonly gateways: readonly string[]
  readonly servers: readonly ChatServer[]
  close (): Promise<void>
}

/**
 * Starts three chat servers and two gateways on one Redis.
 * @param redisUrl - the shared Redis
 * @param ports - gateway ports (0 for free ones)
 */
export async function startSocketIoDemo (redisUrl: string, ports: readonly number[] = [0, 0], key: 'cookie' | false = 'cookie'): Promise<SocketIoDemo> {
  const servers = await Promise.all(['a', 'b', 'c'].map(async (id) => startChatServer(id)))
  const apps: FastifyInstance[] = []
  for (const port of ports) {
    const app = Fastify()
    // The same secret and prefix on both gateways: they read each other's cookies and bindings.
    await app.register(sticky, {
      secret: 'socket-io-demo-secret-0123456789-abcdefgh',
      redis: redisUrl,
      prefix: 'socketio-demo:',
      pools: { chat: { upstreams: servers.map((s) => ({ id: s.id, url: s.url })) } }
    })
    // Long-polling requests and the WebSocket upgrade take the same route and so the same affinity.
    app.all('/socket.io/*', { config: { sticky: { key } } }, (_request, reply) => reply.forward())
    await app.listen({ host: '127.0.0.1', port })
    apps.push(app)
  }
  return {
    gateways: apps.map((app) => `http://127.0.0.1:${(app.server.address() as net.AddressInfo).port}`),
    servers,
    // Chat servers first: they end their held long-polling requests at once, which the gateways would otherwise
    // wait out (up to Socket.IO's 25 s ping interval) before closing.
    close: async () => {
      await Promise.all(servers.map(async (s) => s.close()))
      await Promise.all(apps.map(async (app) => app.close()))
    }
  }
}

async function localRedis (): Promise<{ url: string, child: ChildProcess }> {
  const port = await new Promise<number>((resolve) => {
    const probe = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo
      probe.close(() => resolve(port))
    })
  })
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' })
  await new Promise((resolve) => setTimeout(resolve, 300))
  return { url: `redis://127.0.0.1:${port}`, child }
}

if (require.main === module) {
  void (async () => {
    const own = process.env.REDIS_URL === undefined ? await localRedis() : undefined
    const demo = await startSocketIoDemo(process.env.REDIS_URL ?? (own as { url: string }).url, [3001, 3002])
    process.stdout.write(`socket.io demo: gateways ${demo.gateways.join(' and ')}; chat servers ${demo.servers.map((s) => s.id).join(', ')}. ` +
      `Run: npx tsx examples/socketio/chat-client.ts ${demo.gateways.join(',')}  (Ctrl-C to stop)\n`)
    const stop = (): void => {
      void demo.close().finally(() => {
        own?.child.kill()
        process.exit(0)
      })
    }
    process.once('SIGINT', stop)
    process.once('SIGTERM', stop)
  })()
}
