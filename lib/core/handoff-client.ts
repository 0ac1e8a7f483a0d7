/**
 * The gateway's side of the handoff endpoints (lib/core/handoff-protocol.ts): one POST per step to an upstream,
 * with the shared secret, a timeout, and a bound on what it reads back. Framework-free: the global `fetch`.
 */
import { HANDOFF_VERSION, type HandoffStep } from './handoff-protocol'
import type { ResolvedHandoff, ResolvedUpstream } from '../options'

/** What one step's answer was. */
export type StepAnswer =
  | { readonly ok: true, readonly status: number, readonly body: unknown }
  | { readonly ok: false, readonly status: number, readonly error: string }
  /** The upstream could not be reached, or did not answer in time. */
  | { readonly ok: false, readonly status: 0, readonly error: 'unreachable' | 'timeout' }

/** Sends handoff steps to upstreams. */
export class HandoffClient {
  readonly #settings: ResolvedHandoff

  /** @param settings - the resolved `handoff` option */
  constructor (settings: ResolvedHandoff) {
    this.#settings = settings
  }

  /** `export`: the session's state, frozen at `upstream` until commit, abort or `holdMs`. */
  async exportSession (upstream: ResolvedUpstream, session: string): Promise<StepAnswer> {
    return this.#post(upstream, 'export', { v: HANDOFF_VERSION, session, holdMs: this.#settings.holdMs })
  }

  /** `import`: the state handed to the session's new upstream. */
  async importSession (upstream: ResolvedUpstream, session: string, state: unknown): Promise<StepAnswer> {
    return this.#post(upstream, 'import', { v: HANDOFF_VERSION, session, state })
  }

  /** `commit` (the session now lives elsewhere) or `abort` (it stays): the old upstream's last step. */
  async finish (upstream: ResolvedUpstream, session: string, step: 'commit' | 'abort'): Promise<StepAnswer> {
    return this.#post(upstream, step, { v: HANDOFF_VERSION, session })
  }

  async #post (upstream: ResolvedUpstream, step: HandoffStep, message: object): Promise<StepAnswer> {
    const { secret, path, timeoutMs, maxStateBytes } = this.#settings
    let response: Response
    try {
      response = await fetch(`${upstream.url}${path}/${step}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
        body: JSON.stringify(message),
        // The upstream bounds its own waits by the same timeout: a second more here lets its answer (busy, failed) arrive.
        signal: AbortSignal.timeout(timeoutMs + 1000),
        redirect: 'manual'
      })
    } catch (error) {
      return { ok: false, status: 0, error: (error as Error).name === 'TimeoutError' ? 'timeout' : 'unreachable' }
    }
    // A state larger than we take is refused before it is read (a missing length is checked as it arrives).
    if (Number(response.headers.get('content-length') ?? 0) > maxStateBytes + 4096) {
      await response.body?.cancel()
      return { ok: false, status: response.status, error: 'too-large' }
    }
    let text: string
    try {
      text = await readLimited(response, maxStateBytes + 4096)
    } catch (error) {
      return { ok: false, status: response.status, error: (error as Error).message === 'too-large' ? 'too-large' : 'unreachable' }
    }
    let body: unknown = null
    try { body = text === '' ? null : JSON.parse(text) } catch { body = null }
    if (response.status >= 200 && response.status < 300) return { ok: true, status: response.status, body }
    const error = typeof (body as { error?: unknown } | null)?.error === 'string' && (body as { v?: unknown }).v === HANDOFF_VERSION
      ? (body as { error: string }).error
      // Not the protocol's answer: an app without fastify-sticky/upstream (its own 404), or something in between.
      : 'unsupported'
    return { ok: false, status: response.status, error }
  }
}

async function readLimited (response: Response, limit: number): Promise<string> {
  if (response.body === null) return ''
  const chunks: Uint8Array[] = []
  let size = 0
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
    size += chunk.byteLength
    if (size > limit) throw new Error('too-large')
    chunks.push(chunk)
  }
  return Buffer.concat(chunks, size).toString('utf8')
}
