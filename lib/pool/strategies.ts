/**
 * How a pool spreads new sessions and stateless requests: the selection strategies over candidates and their
 * effective weights, as pure functions of what the pool passes in (its counts and running weights stay its own).
 */
import type { ResolvedUpstream } from '../options'

// FNV-1a: a fast, well-spread 32-bit hash; rendezvous scores need spread, not secrecy.
function fnv1a (text: string): number {
  let hash = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i)
    hash = Math.imul(hash, 0x01000193)
  }
  return hash >>> 0
}

/** Weighted rendezvous score of an upstream for a key: the highest score wins (`-w / ln(u)`, u uniform in (0,1)). */
export function rendezvousScore (key: string, upstream: ResolvedUpstream, weight = upstream.weight): number {
  // Mixing the id in after the key and finalising again keeps similar ids from producing similar scores.
  let h = fnv1a(key + '\0' + upstream.id)
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0
  h = (h ^ (h >>> 16)) >>> 0
  return -weight / Math.log((h + 0.5) / 4294967296)
}

/**
 * Smooth weighted round robin, as nginx does it: over any window of `sum(weights)` picks each candidate is chosen in
 * proportion to its weight, interleaved.
 * @param state - the running current weights by id, kept by the caller between picks
 * @returns the pick, or `undefined` when there is no candidate
 */
export function smoothRoundRobin (candidates: readonly ResolvedUpstream[], weights: readonly number[], state: Map<string, number>): ResolvedUpstream | undefined {
  let best = -1
  let bestWeight = -Infinity
  let total = 0
  for (let i = 0; i < candidates.length; i++) {
    total += weights[i]
    const current = (state.get(candidates[i].id) ?? 0) + weights[i]
    state.set(candidates[i].id, current)
    if (current > bestWeight) {
      best = i
      bestWeight = current
    }
  }
  if (best < 0) return undefined
  state.set(candidates[best].id, bestWeight - total)
  return candidates[best]
}

/**
 * Power of two choices: two weighted random picks, the less loaded wins; nearly as even as least-sessions without
 * every gateway herding to the same minimum between count refreshes.
 * @param counts - live sessions by upstream id
 */
export function twoChoices (candidates: readonly ResolvedUpstream[], weights: readonly number[], counts: ReadonlyMap<string, number>): ResolvedUpstream {
  const total = weights.reduce((a, b) => a + b, 0)
  const draw = (): number => {
    let r = Math.random() * total
    for (let i = 0; i < weights.length; i++) {
      r -= weights[i]
      if (r < 0) return i
    }
    return weights.length - 1
  }
  const a = draw()
  let b = draw()
  if (candidates.length > 1) for (let tries = 0; b === a && tries < 4; tries++) b = draw()
  return loadOf(candidates[a], weights[a], counts) <= loadOf(candidates[b], weights[b], counts) ? candidates[a] : candidates[b]
}

/**
 * Consistent hashing with bounded loads, rendezvous style: candidates in the key's hash order, the first whose load
 * stays within `loadFactor` of the weighted mean takes the session.
 * @param counts - live sessions by upstream id
 */
export function boundedRendezvous (
candidates: readonly ResolvedUpstream[], weights: readonly number[], key: string, counts: ReadonlyMap<string, number>, loadFactor: number
): ResolvedUpstream {
  const order = candidates.map((u, i) => ({ u, w: weights[i], score: rendezvousScore(key, u, weights[i]) }))
    .sort((x, y) => y.score - x.score)
  let sessions = 0
  let weightSum = 0
  for (const { u, w } of order) {
    sessions += counts.get(u.id) ?? 0
    weightSum += w
  }
  // Rounded up, as consistent hashing with bounded loads does, so small pools are not diverted needlessly.
  const bound = Math.ceil(loadFactor * (sessions + 1) / weightSum)
  for (const { u, w } of order) if (loadOf(u, w, counts) <= bound) return u
  return order[0].u
}

/** @returns sessions per weight of an upstream with one more session: what least-sessions strategies compare */
export function loadOf (upstream: ResolvedUpstream, weight: number, counts: ReadonlyMap<string, number>): number {
  return ((counts.get(upstream.id) ?? 0) + 1) / weight
}
