/**
 * A stateful shop upstream with fastify-sticky/upstream: carts in process memory, keyed by the session handle the
 * gateway sends (`request.stickySession`), exported and imported on a planned move. In-process for most tests; as a
 * child process ({@link startCartProcess}) for those that kill it.
 *
 * Routes: `POST /cart/<item>` adds an item and answers the cart, `GET /cart[?delay=ms]` answers it: `{ upstream, items, session }`.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import Fastify, { type FastifyInstance } from 'fastify'
import stickyUpstream from '../../lib/upstream/index'
import type { TeardownOwner } from './teardown-owner'

/** The secret the test gateways and cart upstreams share. */
export const CART_HANDOFF_SECRET = 'cart-handoff-secret-0123456789abcdefgh'

/** How a cart upstream misbehaves, for failure tests. */
export interface CartFaults {
  /** exportSession throws. */
  exportThrows?: boolean
  /** importSession throws. */
  importThrows?: boolean
  /** exportSession waits this long first. */
  exportDelayMs?: number
}

/** A running cart upstream. */
export interface CartUpstream {
  readonly id: string
  readonly url: string
  readonly carts: Map<string, string[]>
  faults: CartFaults
  close (): Promise<void>
}

async function buildCartApp (id: string, carts: Map<string, string[]>, faults: () => CartFaults): Promise<FastifyInstance> {
  const app = Fastify({ logger: false, forceCloseConnections: true })
  await app.register(stickyUpstream, {
    secret: CART_HANDOFF_SECRET,
    timeout: 2000,
    exportSession: async (session) => {
      const delay = faults().exportDelayMs ?? 0
      if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay))
      if (faults().exportThrows === true) throw new Error('export broke')
      return carts.get(session) ?? null
    },
    importSession: (session, state) => {
      if (faults().importThrows === true) throw new Error('import broke')
      carts.set(session, state as string[])
    },
    dropSession: (session) => { carts.delete(session) }
  })
  app.post<{ Params: { item: string } }>('/cart/:item', async (request) => {
    const session = request.stickySession ?? 'none'
    const items = [...(carts.get(session) ?? []), request.params.item]
    carts.set(session, items)
    return { upstream: id, items, session }
  })
  // `?delay=<ms>`: a slow request (in flight while a move starts).
  app.get<{ Querystring: { delay?: string } }>('/cart', async (request) => {
    const delay = Number(request.query.delay ?? 0)
    if (delay > 0) await new Promise((resolve) => setTimeout(resolve, Math.min(delay, 10_000)))
    return { upstream: id, items: carts.get(request.stickySession ?? 'none') ?? [], session: request.stickySession }
  })
  return app
}

/** Starts cart upstreams in this process, closed at `t` teardown. */
export async function startCartUpstreams (t: TeardownOwner, ids: readonly string[]): Promise<CartUpstream[]> {
  const started: CartUpstream[] = []
  t.teardown(() => Promise.all(started.map((u) => u.close())))
  for (const id of ids) {
    const carts = new Map<string, string[]>()
    const upstream: CartUpstream = { id, url: '', carts, faults: {}, close: async () => {} }
    const app = await buildCartApp(id, carts, () => upstream.faults)
    await app.listen({ host: '127.0.0.1', port: 0 })
    let closed: Promise<void> | undefined
    Object.assign(upstream, {
      url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`,
      close: async () => { closed ??= app.close(); await closed }
    })
    started.push(upstream)
  }
  return started
}

/** A cart upstream in a child process, which a test can SIGKILL. */
export interface CartProcess {
  readonly id: string
  readonly url: string
  kill (): Promise<void>
}

/** Starts a cart upstream process (its exportSession waits `exportDelayMs`), killed at `t` teardown if alive. */
export async function startCartProcess (t: TeardownOwner, id: string, exportDelayMs: number): Promise<CartProcess> {
  // Loaded by require from a CommonJS entry: the test runner's process hooks would load a .ts entry as an ES module.
  const entry = `require('sucrase/register/ts'); require(${JSON.stringify(join(__dirname, 'cart-upstream.ts'))}).serveCartProcess(${JSON.stringify(id)}, ${exportDelayMs})`
  const child: ChildProcess = spawn(process.execPath, ['-e', entry], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, SUCRASE_OPTIONS: '{"disableESTransforms":true,"preserveDynamicImport":true}' }
  })
  const kill = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill('SIGKILL')
    await once(child, 'exit')
  }
  t.teardown(kill)
  let out = ''
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`cart upstream ${id} did not start: ${out}`)), 15_000)
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk
      const match = /listening (\d+)/.exec(out)
      if (match !== null) { clearTimeout(timer); resolve(Number(match[1])) }
    })
    child.once('exit', () => { clearTimeout(timer); reject(new Error(`cart upstream ${id} exited: ${out}`)) })
  })
  return { id, url: `http://127.0.0.1:${port}`, kill }
}

/** The child process's side of {@link startCartProcess}: serves one cart upstream and says its port. */
export function serveCartProcess (id: string, exportDelayMs: number): void {
  buildCartApp(id, new Map(), () => ({ exportDelayMs }))
    .then(async (app) => {
      await app.listen({ host: '127.0.0.1', port: 0 })
      process.stdout.write(`listening ${(app.server.address() as AddressInfo).port}\n`)
    })
    .catch((error: unknown) => {
      process.stderr.write(`${(error as Error).message}\n`)
      process.exit(1)
    })
}
