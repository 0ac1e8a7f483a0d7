/**
 * The baseline of every ratio: Fastify + @fastify/reply-from forwarding every path and method to one fixed
 * upstream, with no stickiness. Built like the fastify-sticky command (lib/gateway/build-gateway.ts: same Fastify options, body pass-through, the
 * same two routes) and registering reply-from as the plugin does (no `base`, `getUpstream` per request, the
 * same undici timeouts), so that sticky ÷ plain isolates what stickiness costs.
 *
 * Same operator contract as that command: env `PORT`, `HOST`, `UPSTREAMS` (`id=url,...`; the first
 * entry is used), `LOG_LEVEL`; prints a line containing `listening` and the URL once it listens.
 */
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify'
import replyFrom, { type FastifyReplyFromHooks } from '@fastify/reply-from'
import { DEFAULT_BODY_TIMEOUT_MS, DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_HEADERS_TIMEOUT_MS } from '../lib/options'

function firstUpstream (list: string | undefined): string {
  const first = (list ?? '').split(',')[0] ?? ''
  const url = first.slice(first.indexOf('=') + 1)
  if (!/^https?:\/\//.test(url)) throw new Error(`plain-gateway: UPSTREAMS must be "id=url,...", got ${JSON.stringify(list)}`)
  return url
}

async function main (): Promise<void> {
  const upstream = firstUpstream(process.env.UPSTREAMS)
  const app = Fastify({ logger: { level: process.env.LOG_LEVEL ?? 'info' }, trustProxy: false })
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (_request, payload, done) => { done(null, payload) })
  await app.register(replyFrom, {
    disableRequestLogging: true,
    undici: ({
      connect: { timeout: DEFAULT_CONNECT_TIMEOUT_MS },
      headersTimeout: DEFAULT_HEADERS_TIMEOUT_MS,
      bodyTimeout: DEFAULT_BODY_TIMEOUT_MS,
      tls: { rejectUnauthorized: true }
    }) as Record<string, unknown>
  })
  // Shared options object, as the plugin's forward() uses: no allocation per request.
  const options = Object.freeze({ getUpstream: (): string => upstream }) as unknown as FastifyReplyFromHooks
  const forward = (_request: FastifyRequest, reply: FastifyReply): FastifyReply => reply.from(undefined, options)
  app.all('/*', forward)
  app.all('/', forward)

  const address = await app.listen({ port: Number(process.env.PORT ?? 3000), host: process.env.HOST ?? '127.0.0.1' })
  process.stdout.write(`plain gateway listening on ${address}\n`)
  const stop = (): void => { app.close().then(() => process.exit(0), () => process.exit(1)) }
  process.once('SIGTERM', stop)
  process.once('SIGINT', stop)
}

main().catch((error: unknown) => {
  process.stderr.write(`plain-gateway: ${(error as Error).message}\n`)
  process.exit(1)
})
