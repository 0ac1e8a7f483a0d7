/**
 * A tiny shopping-cart app on each door of fastify-sticky/upstream (the Fastify plugin, the Express middleware),
 * keyed by the `x-sticky-session` handle, on a free loopback port closed in `t.teardown`. Sessions named
 * `throws-*` make exportSession throw, `hangs-*` make it never answer.
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import express from 'express'
import Fastify from 'fastify'
import type { Test } from 'tap'
import stickyUpstream, { createHandoffEndpoint, type HandoffEndpoint, type StickyUpstreamOptions } from '../../lib/upstream/index'
import { request as undiciRequest } from 'undici'

/** The secret every test app and caller shares. */
export const HANDOFF_SECRET = 'handoff-test-secret-0123456789abcdef'

/** Which door the app runs on. */
export type Door = 'fastify' | 'express'

/** A running cart app. */
export interface CartApp {
  /** `http://127.0.0.1:<port>` */
  readonly url: string
  readonly carts: Map<string, string[]>
  /** The core behind the Express door (the Fastify door keeps its own). */
  readonly endpoint: HandoffEndpoint | undefined
  /** How many exportSession / importSession / dropSession calls the app saw. */
  readonly calls: { export: number, import: number, drop: number }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Starts a cart app on `door`, with `overrides` merged over the test options. */
export async function startCartApp (t: Test, door: Door, overrides: Partial<StickyUpstreamOptions> = {}): Promise<CartApp> {
  const carts = new Map<string, string[]>()
  const calls = { export: 0, import: 0, drop: 0 }
  const options: StickyUpstreamOptions = {
    secret: HANDOFF_SECRET,
    timeout: 1000,
    exportSession: async (session) => {
      calls.export++
      if (session.startsWith('throws-')) throw new Error('export failed')
      if (session.startsWith('hangs-')) return await new Promise(() => {})
      return carts.get(session)
    },
    importSession: (session, state) => {
      calls.import++
      carts.set(session, state as string[])
    },
    dropSession: (session) => {
      calls.drop++
      carts.delete(session)
    },
    ...overrides
  }
  const add = (session: string | null, item: string): string[] => {
    const items = carts.get(session ?? '') ?? []
    if (session !== null) carts.set(session, [...items, item])
    return carts.get(session ?? '') ?? [item]
  }

  let url: string
  let endpoint: HandoffEndpoint | undefined
  if (door === 'fastify') {
    const app = Fastify()
    await app.register(stickyUpstream, options)
    app.get('/cart', async (request) => ({ session: request.stickySession, items: carts.get(request.stickySession ?? '') ?? [] }))
    app.post<{ Params: { item: string } }>('/cart/:item', async (request) => ({ items: add(request.stickySession, request.params.item) }))
    app.get<{ Params: { ms: string } }>('/slow/:ms', async (request) => {
      await sleep(Number(request.params.ms))
      return { items: add(request.stickySession, 'slow') }
    })
    url = await app.listen({ host: '127.0.0.1', port: 0 })
    t.teardown(async () => {
      app.server.closeAllConnections()
      await app.close()
    })
  } else {
    const handoff = createHandoffEndpoint(options)
    endpoint = handoff
    const app = express()
    app.use(handoff.middleware)
    app.use(express.json())
    app.get('/cart', (req, res) => { res.json({ session: handoff.sessionOf(req), items: carts.get(handoff.sessionOf(req) ?? '') ?? [] }) })
    app.post('/cart/:item', (req, res) => { res.json({ items: add(handoff.sessionOf(req), req.params.item) }) })
    app.get('/slow/:ms', (req, res) => {
      void sleep(Number(req.params.ms)).then(() => { res.json({ items: add(handoff.sessionOf(req), 'slow') }) })
    })
    const server = http.createServer(app)
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    t.teardown(async () => {
      handoff.close()
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    })
  }
  return { url, carts, endpoint, calls }
}

/** A response, read whole. */
export interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  text: string
  json (): any
}

/** Sends one request with undici (no retries, 5 s timeouts) and reads the whole body. */
export async function send (url: string, init: { method?: string, headers?: Record<string, string>, body?: string } = {}): Promise<Answer> {
  const res = await undiciRequest(url, { method: (init.method ?? 'GET') as 'GET', headers: init.headers, body: init.body, headersTimeout: 5000, bodyTimeout: 5000 })
  const text = await res.body.text()
  return { status: res.statusCode, headers: res.headers, text, json: () => JSON.parse(text) }
}

/** A request of the cart app carrying the session header. */
export function asSession (app: CartApp, session: string, path: string, method = 'GET'): Promise<Answer> {
  return send(`${app.url}${path}`, { method, headers: { 'x-sticky-session': session } })
}

/** A handoff call, authorised with {@link HANDOFF_SECRET} unless `authorization` says otherwise (`null`: none). */
export function handoff (app: CartApp, step: string, body: unknown, authorization: string | null = `Bearer ${HANDOFF_SECRET}`): Promise<Answer> {
  const headers: Record<string, string> = { 'content-type': 'application/json' }
  if (authorization !== null) headers.authorization = authorization
  return send(`${app.url}/.well-known/sticky-handoff/${step}`, {
    method: 'POST', headers, body: typeof body === 'string' ? body : JSON.stringify(body)
  })
}

/** A GET with node:http that the client aborts after `abortAfterMs`; resolves once the socket is gone. */
export function abortedGet (app: CartApp, session: string, path: string, abortAfterMs: number): Promise<void> {
  return new Promise((resolve) => {
    const { port } = new URL(app.url)
    const req = http.get({ host: '127.0.0.1', port, path, headers: { 'x-sticky-session': session }, agent: false })
    req.on('error', () => {})
    req.on('response', (res) => { res.resume() })
    req.on('close', () => resolve())
    setTimeout(() => req.destroy(), abortAfterMs)
  })
}

/** Resolves after `ms`. */
export { sleep }

/** Tracks whether a promise settled yet. */
export function watch<T> (promise: Promise<T>): { readonly settled: boolean, readonly promise: Promise<T> } {
  const state = { settled: false, promise }
  promise.then(() => { state.settled = true }, () => { state.settled = true })
  return state
}
