/**
 * The open WebSocket tunnels of each session, so that a session moved to another upstream (a planned move, a
 * failover, an eviction: any change of its binding, on any gateway) does not stay connected to the old one: its
 * tunnels are closed with a close code that tells clients to reconnect, which then reaches the new upstream.
 * Framework-free.
 */
import type { BindingStore } from '../store/binding-store'
import type { StickyRequestState } from './request-state'

/** Ends one tunnel the reconnect-friendly way. */
export type GoAway = () => void

/** The tunnels by session, told of binding changes through the store's invalidations. */
export class TunnelSessions {
  readonly #bySession = new Map<string, Set<GoAway>>()
  readonly #stop: () => void

  /** @param store - whose invalidations (rebinds and deletes, from every gateway) close the session's tunnels */
  constructor (store: BindingStore) {
    this.#stop = store.onInvalidate(({ pool, keyId }) => { this.#moved(pool + '\0' + keyId) })
  }

  /**
   * Records an open tunnel of a session.
   * @returns a function that forgets it (when the tunnel closes)
   */
  add (pool: string, keyId: string, goAway: GoAway): () => void {
    const id = pool + '\0' + keyId
    let tunnels = this.#bySession.get(id)
    if (tunnels === undefined) {
      tunnels = new Set()
      this.#bySession.set(id, tunnels)
    }
    tunnels.add(goAway)
    return () => {
      const set = this.#bySession.get(id)
      if (set === undefined) return
      set.delete(goAway)
      if (set.size === 0) this.#bySession.delete(id)
    }
  }

  /**
   * What a front door hands the tunnel it opens for a request (its `onOpen`): the tunnel is then recorded under the
   * request's session. `undefined` for a request without a binding (nothing to follow).
   */
  onOpen (state: StickyRequestState): ((goAway: GoAway) => () => void) | undefined {
    const binding = state.binding
    return binding === undefined ? undefined : (goAway) => this.add(state.route.pool, binding.keyId, goAway)
  }

  /** @returns how many sessions have an open tunnel */
  get size (): number {
    return this.#bySession.size
  }

  /** Stops listening to the store. */
  close (): void {
    this.#stop()
  }

  #moved (id: string): void {
    const tunnels = this.#bySession.get(id)
    if (tunnels === undefined) return
    this.#bySession.delete(id)
    for (const goAway of tunnels) goAway()
  }
}
