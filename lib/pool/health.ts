/**
 * Upstream health, shared through the store so every gateway sees the same verdict within about a second:
 * passive detection (a failed connection marks the upstream down at once), optional active HTTP probes, and,
 * without probes, a reachability retry (TCP connect) after a cool-down.
 */
import http from 'node:http'
import https from 'node:https'
import net from 'node:net'
import type { CoreLogger } from '../core/logger'
import type { ResolvedUpstream } from '../options'
import type { BindingStore } from '../store/binding-store'
import type { UpstreamPool } from './upstream-pool'

/** How often shared upstream states are read from the store, and cool-downs checked. */
export const STATE_POLL_INTERVAL_MS = 1000

interface ProbeRecord {
  successes: number
  failures: number
  running: boolean
}

/** Watches the upstreams of every pool; one instance per plugin registration. */
export class HealthMonitor {
  readonly #store: BindingStore
  readonly #pools: ReadonlyMap<string, UpstreamPool>
  readonly #log: CoreLogger
  readonly #connectTimeoutMs: number
  readonly #probes = new Map<string, ProbeRecord>()
  readonly #timers: NodeJS.Timeout[] = []

  /**
   * @param connectTimeoutMs - timeout of a cool-down reachability retry
   */
  constructor (store: BindingStore, pools: ReadonlyMap<string, UpstreamPool>, log: CoreLogger, connectTimeoutMs: number) {
    this.#store = store
    this.#pools = pools
    this.#log = log
    this.#connectTimeoutMs = connectTimeoutMs
  }

  /** Reads the shared states once, then starts the timers (unref'd: they never keep a process alive). */
  async start (): Promise<void> {
    await this.refreshStates()
    const poll = setInterval(() => { void this.refreshStates().then(() => this.#retryCooledDown()) }, STATE_POLL_INTERVAL_MS)
    poll.unref()
    this.#timers.push(poll)
    for (const pool of this.#pools.values()) {
      const probe = pool.config.healthCheck
      if (probe === undefined) continue
      const timer = setInterval(() => { for (const u of pool.upstreams) void this.#probe(pool, u) }, probe.intervalMs)
      timer.unref()
      this.#timers.push(timer)
    }
  }

  /** Stops every timer. */
  stop (): void {
    for (const timer of this.#timers) clearInterval(timer)
    this.#timers.length = 0
  }

  /** Reads every pool's shared upstream states; a failing store keeps what is known. */
  async refreshStates (): Promise<void> {
    await Promise.all([...this.#pools.values()].map(async (pool) => {
      try {
        pool.applyStates(await this.#store.upstreamStates(pool.name))
      } catch {
        // Keep the last known states while the store is away; passive detection still works locally.
      }
    }))
  }

  /**
   * Marks an upstream down (or up) here at once and in the store for every other gateway.
   * @returns once the store has it (or failed to take it)
   */
  async setDown (pool: UpstreamPool, upstream: ResolvedUpstream, down: boolean, reason: string): Promise<void> {
    if ((pool.state(upstream.id) === 'down') === down) return
    pool.applyLocalChange(upstream.id, { down })
    this.#log[down ? 'warn' : 'info']({ pool: pool.name, upstream: upstream.id, reason }, down ? 'fastify-sticky: upstream down' : 'fastify-sticky: upstream up')
    try {
      await this.#store.setUpstreamState(pool.name, upstream.id, { down })
      pool.applyStates(await this.#store.upstreamStates(pool.name))
    } catch (error) {
      this.#log.debug({ err: error }, 'fastify-sticky: could not share an upstream state')
    }
  }

  /**
   * Whether an upstream accepts TCP connections now (used before blaming it for a reset connection).
   */
  isReachable (upstream: ResolvedUpstream): Promise<boolean> {
    const url = new URL(upstream.url)
    const port = Number(url.port !== '' ? url.port : url.protocol === 'https:' ? 443 : 80)
    return new Promise((resolve) => {
      const socket = net.connect({ host: url.hostname.replace(/^\[|\]$/g, ''), port })
      const done = (ok: boolean): void => {
        socket.destroy()
        resolve(ok)
      }
      socket.setTimeout(this.#connectTimeoutMs, () => done(false))
      socket.once('connect', () => done(true))
      socket.once('error', () => done(false))
    })
  }

  // Without active probes, a down upstream gets a reachability retry once its cool-down has passed.
  async #retryCooledDown (): Promise<void> {
    const now = Date.now()
    for (const pool of this.#pools.values()) {
      if (pool.config.healthCheck !== undefined) continue
      for (const upstream of pool.upstreams) {
        const status = pool.status(upstream.id)
        if (!status.down || now - status.changedAt < pool.config.cooldownMs) continue
        const record = this.#record(pool, upstream)
        if (record.running) continue
        record.running = true
        void this.isReachable(upstream).then(async (ok) => {
          if (ok) await this.setDown(pool, upstream, false, 'reachable again after cool-down')
        }).finally(() => { record.running = false })
      }
    }
  }

  #record (pool: UpstreamPool, upstream: ResolvedUpstream): ProbeRecord {
    const id = pool.name + '\0' + upstream.id
    let record = this.#probes.get(id)
    if (record === undefined) {
      record = { successes: 0, failures: 0, running: false }
      this.#probes.set(id, record)
    }
    return record
  }

  async #probe (pool: UpstreamPool, upstream: ResolvedUpstream): Promise<void> {
    const probe = pool.config.healthCheck
    const record = this.#record(pool, upstream)
    if (probe === undefined || record.running) return
    record.running = true
    const ok = await new Promise<boolean>((resolve) => {
      const client = upstream.url.startsWith('https:') ? https : http
      const request = client.get(upstream.url + probe.path, { timeout: probe.timeoutMs, agent: false }, (response) => {
        response.resume()
        resolve((response.statusCode ?? 500) < 400)
      })
      request.on('timeout', () => { request.destroy(new Error('probe timeout')) })
      request.on('error', () => resolve(false))
    })
    record.running = false
    if (ok) {
      record.failures = 0
      record.successes++
      if (record.successes >= probe.healthyThreshold && pool.state(upstream.id) === 'down') {
        await this.setDown(pool, upstream, false, `${record.successes} successful probes`)
      }
    } else {
      record.successes = 0
      record.failures++
      if (record.failures >= probe.unhealthyThreshold && pool.state(upstream.id) !== 'down') {
        await this.setDown(pool, upstream, true, `${record.failures} failed probes`)
      }
    }
  }
}
