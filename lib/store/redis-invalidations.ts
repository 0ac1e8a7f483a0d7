/**
 * The invalidation feed of the Redis store: a subscription to the invalidation channel, its messages handed to
 * listeners, and whether it is live.
 *
 * Invalidations travel over a subscriber connection of their own. On a Cluster it is a plain connection to one
 * node (classic PUBLISH reaches every node through the cluster bus), managed here rather than by ioredis' cluster
 * subscriber, so that a dropped subscription is always seen: {@link InvalidationFeed.live} turns false at once,
 * and a near cache stops trusting itself until it is back.
 */
import Redis, { Cluster, type RedisOptions } from 'ioredis'
import type { Invalidation } from './binding-store'
import { parseInvalidationMessage } from './redis-layout'

/**
 * Listeners of the invalidation channel. The subscriber connection is opened with the first listener (a store
 * nobody listens to needs none) and closed with the feed.
 */
export class InvalidationFeed {
  readonly #client: Redis | Cluster
  readonly #channel: string
  readonly #listeners = new Set<(change: Invalidation) => void>()
  readonly #liveListeners = new Set<(live: boolean) => void>()
  #subscriber: InvalidationSubscriber | undefined
  #closed = false

  /**
   * @param client - the store's client (a plain or Sentinel client is duplicated; a Cluster lends its nodes)
   * @param channel - the invalidation channel
   */
  constructor (client: Redis | Cluster, channel: string) {
    this.#client = client
    this.#channel = channel
  }

  /**
   * Listens for invalidations; the first listener opens the subscription (not after {@link InvalidationFeed.close}).
   * @returns a function that unsubscribes
   */
  onInvalidate (listener: (change: Invalidation) => void): () => void {
    this.#listeners.add(listener)
    if (this.#subscriber === undefined && !this.#closed) {
      this.#subscriber = new InvalidationSubscriber(this.#client, this.#channel, {
        message: (message) => {
          const change = parseInvalidationMessage(message)
          if (change === null) return
          for (const each of this.#listeners) each(change)
        },
        live: (live) => {
          for (const each of this.#liveListeners) each(live)
        }
      })
    }
    return () => { this.#listeners.delete(listener) }
  }

  /** `true` while the subscription is active; `false` before the first listener, while connecting and once dropped. */
  get live (): boolean {
    return this.#subscriber?.live ?? false
  }

  /**
   * Listens for changes of {@link InvalidationFeed.live}.
   * @returns a function that unsubscribes
   */
  onLive (listener: (live: boolean) => void): () => void {
    this.#liveListeners.add(listener)
    return () => { this.#liveListeners.delete(listener) }
  }

  /**
   * Resolves once the subscription is active.
   * @param timeoutMs - how long to wait
   * @throws Error when it is not active within `timeoutMs`, or nobody subscribed yet
   */
  async ready (timeoutMs: number): Promise<void> {
    if (this.#subscriber === undefined) throw new Error('fastify-sticky: no invalidation listener registered')
    if (this.live) return
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        stop()
        reject(new Error(`fastify-sticky: the invalidation subscription is not active after ${timeoutMs} ms`))
      }, timeoutMs)
      const stop = this.onLive((live) => {
        if (!live) return
        clearTimeout(timer)
        stop()
        resolve()
      })
    })
  }

  /** Forgets every listener (without telling them) and closes the subscriber connection; no new one is opened. */
  close (): void {
    this.#closed = true
    this.#listeners.clear()
    this.#liveListeners.clear()
    const subscriber = this.#subscriber
    this.#subscriber = undefined
    subscriber?.close()
  }
}

/** How many times a Cluster subscriber retries its node before moving to another one. */
const SUBSCRIBER_NODE_ATTEMPTS = 3

/**
 * The invalidation subscription: one connection in subscriber mode, re-subscribed after every reconnect, whose
 * state (`live`) is reported as it changes. A plain or Sentinel client gets a duplicate of itself (which follows
 * failovers like the original); a Cluster gets a plain connection to one of its nodes, moved to another node when
 * that one stays unreachable.
 */
class InvalidationSubscriber {
  #live = false
  #closed = false
  #connection: Redis | undefined
  #nodeCursor = 0
  readonly #client: Redis | Cluster
  readonly #channel: string
  readonly #on: { message: (message: string) => void, live: (live: boolean) => void }
  #waitForCluster: (() => void) | undefined

  constructor (client: Redis | Cluster, channel: string, on: { message: (message: string) => void, live: (live: boolean) => void }) {
    this.#client = client
    this.#channel = channel
    this.#on = on
    this.#open()
  }

  get live (): boolean {
    return this.#live
  }

  close (): void {
    this.#closed = true
    if (this.#waitForCluster !== undefined) this.#client.off('ready', this.#waitForCluster)
    this.#connection?.disconnect()
    this.#connection = undefined
    this.#setLive(false)
  }

  #setLive (live: boolean): void {
    if (this.#live === live) return
    this.#live = live
    this.#on.live(live)
  }

  #open (): void {
    if (this.#closed) return
    // Subscribed connections cannot run other commands, and must not give up while Redis is away: they queue their
    // SUBSCRIBE until connected and reconnect by themselves. Re-subscribing is done here, on every 'ready', so
    // `live` turns true only once Redis has confirmed the subscription.
    const overrides: RedisOptions = {
      lazyConnect: false,
      enableOfflineQueue: true,
      autoResubscribe: false,
      maxRetriesPerRequest: null,
      commandTimeout: 5000
    }
    let connection: Redis
    if (this.#client instanceof Cluster) {
      const nodes = this.#client.nodes('all')
      if (nodes.length === 0) {
        // Not connected yet: the node list comes with the cluster's first 'ready'.
        this.#waitForCluster = () => {
          this.#waitForCluster = undefined
          this.#open()
        }
        this.#client.once('ready', this.#waitForCluster)
        return
      }
      const node = nodes[this.#nodeCursor++ % nodes.length].options
      const { redisOptions } = this.#client.options
      connection = new Redis({
        ...redisOptions,
        ...overrides,
        host: node.host,
        port: node.port,
        // A node that stays away is left for another one (each node relays every classic PUBLISH).
        retryStrategy: (attempt) => attempt > SUBSCRIBER_NODE_ATTEMPTS ? null : 50 * 2 ** attempt
      })
      connection.once('end', () => {
        if (this.#connection === connection) this.#open()
      })
    } else {
      connection = this.#client.duplicate(overrides)
    }
    this.#connection = connection
    connection.on('error', () => {})
    connection.on('close', () => { if (this.#connection === connection) this.#setLive(false) })
    connection.on('ready', () => {
      connection.subscribe(this.#channel).then(() => {
        if (this.#connection === connection && connection.status === 'ready') this.#setLive(true)
      }, () => {
        // The connection dropped meanwhile (its next 'ready' subscribes again), or Redis refused: start over.
        if (this.#connection === connection && connection.status === 'ready') connection.disconnect(true)
      })
    })
    connection.on('message', (channel: string, message: string) => {
      if (channel === this.#channel) this.#on.message(message)
    })
  }
}
