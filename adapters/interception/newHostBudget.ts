import { hostGroup } from './fairQueue.js'

// A flood of new hosts (a regex route matches any number of them) costs the proxy a leaf
// certificate, a TLS server context and a handshake each, about 10 ms of its one thread: 600 at
// once held every other first request for seconds. Each group of hosts (a parent domain) has a
// budget of new intercepted hosts, a token bucket; a CONNECT to a new host over it is refused at
// once (503, Retry-After), cheaply, before any of that work. Hosts already intercepted are never
// refused, and other domains are not affected.

/** How many new intercepted hosts a domain may bring. */
export interface NewHostBudgetOptions {
  /** New hosts a second, per group, in the long run. Default 20. */
  readonly perSecond?: number
  /** New hosts at once, per group. Default 40. */
  readonly burst?: number
  /** Groups remembered; the least recently used is forgotten (its bucket full again). Default 4,096. */
  readonly maxGroups?: number
  readonly now?: () => number
  /** Told when a group is first refused, and then at most every 10 s with how many were refused since. */
  readonly onRefused?: (group: string, refused: number) => void
}

/** The budget: `admit(host)` for a host not yet intercepted, false when its group is over budget. */
export interface NewHostBudget {
  readonly admit: (host: string) => boolean
}

/** Makes a budget of new intercepted hosts per group (token buckets, bounded in memory). */
export const newHostBudget = (options: NewHostBudgetOptions = {}): NewHostBudget => {
  const perSecond = options.perSecond ?? 20
  const burst = options.burst ?? 40
  const maxGroups = options.maxGroups ?? 4_096
  const now = options.now ?? Date.now
  if (!(perSecond > 0) || !(burst >= 1) || !Number.isInteger(maxGroups) || maxGroups < 1) {
    throw new Error(`new-host budget \`${perSecond}/s, burst ${burst}, ${maxGroups} groups\`: expected a positive rate, a burst of at least 1 and a whole number of groups`)
  }
  const buckets = new Map<string, { tokens: number; at: number; refused: number; toldAt: number }>()
  return {
    admit: (host) => {
      const group = hostGroup(host)
      const at = now()
      const bucket = buckets.get(group) ?? { tokens: burst, at, refused: 0, toldAt: -Infinity }
      buckets.delete(group)
      bucket.tokens = Math.min(burst, bucket.tokens + (Math.max(0, at - bucket.at) / 1_000) * perSecond)
      bucket.at = at
      buckets.set(group, bucket)
      if (buckets.size > maxGroups) buckets.delete(buckets.keys().next().value as string)
      if (bucket.tokens < 1) {
        bucket.refused++
        if (at - bucket.toldAt >= 10_000) {
          options.onRefused?.(group, bucket.refused)
          bucket.refused = 0
          bucket.toldAt = at
        }
        return false
      }
      bucket.tokens -= 1
      return true
    }
  }
}

/** The warning a proxy logs when a domain goes over its new-host budget. */
export const overBudgetWarning =
  (log: (level: 'warn', message: string) => void) =>
  (group: string, refused: number): void =>
    log('warn', `new intercepted hosts under \`${group}\` arrive faster than the new-host budget; refused ${refused} with 503 (Retry-After: 1)`)
