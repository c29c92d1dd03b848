import * as E from 'fp-ts/lib/Either.js'

import { parseHost, type CredentialOutcome, type Limits } from '../../core/index.js'
import type { GuardStats } from './Guard.js'
import { rateLimiter, type RateLimiter } from './rateLimiter.js'

// What the guard counts across policy changes (docs/spec.md §14): its rate limiter (kept while the
// policy's `limits` stay the same), the intercepted hosts, and the credential cache's lookups (a
// policy change makes a new cache; the counts go on).

/** Intercepted hosts counted at most (the metric stops growing there rather than hold every name). */
const MAX_COUNTED_HOSTS = 65_536

/** A host as buckets and counts key it: normalised when it parses. */
const normalised = (host: string): string => {
  const parsed = parseHost(host)
  return E.isRight(parsed) ? parsed.right : host.toLowerCase()
}

/** The guard's meters. */
export interface GuardMeters {
  /** A policy came into force: a new limiter when its `limits` differ, the same buckets otherwise. */
  readonly follow: (limits: Limits | undefined) => void
  /** Takes a request's tokens: undefined when it may go on, else the seconds to wait (rateLimiter.ts). The clock is read only when the policy sets limits. */
  readonly take: (client: string | undefined, host: string, now: () => number) => number | undefined
  /** A CONNECT to `host` was intercepted. */
  readonly intercepted: (host: string) => void
  /** A decision's credentials came from the cache. */
  readonly cacheHit: () => void
  /** A credential resolution ended with `outcome`. */
  readonly resolved: (outcome: CredentialOutcome) => void
  /** The counts, with what only the guard knows. */
  readonly stats: (instance: string, cacheEntries: number, audit: GuardStats['audit']) => GuardStats
}

/** Meters for a guard whose first policy sets `limits`. */
export const guardMeters = (limits: Limits | undefined): GuardMeters => {
  let limiter: RateLimiter | undefined = rateLimiter(limits)
  let key = JSON.stringify(limits ?? null)
  const counts = { hits: 0, resolutions: 0, failures: 0 }
  const hosts = new Set<string>()
  return {
    follow: (next) => {
      if (JSON.stringify(next ?? null) === key) return
      key = JSON.stringify(next ?? null)
      limiter = rateLimiter(next)
    },
    take: (client, host, now) => limiter?.take({ client, host: normalised(host) }, now()),
    intercepted: (host) => {
      if (hosts.size < MAX_COUNTED_HOSTS) hosts.add(normalised(host))
    },
    cacheHit: () => {
      counts.hits++
    },
    resolved: (outcome) => {
      counts.resolutions++
      if (outcome._tag !== 'Available') counts.failures++
    },
    stats: (instance, cacheEntries, audit) => ({
      instance,
      credentials: { entries: cacheEntries, ...counts },
      audit,
      rateLimitBuckets: limiter?.size() ?? 0,
      interceptedHosts: hosts.size
    })
  }
}
