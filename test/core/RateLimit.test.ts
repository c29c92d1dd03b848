import fc from 'fast-check'
import { describe, expect, it } from 'vitest'

import { denyRateLimited, denyTunnelRateLimited, enforced, enforcedTunnel, isFull, takeTokens, type Bucket, type Rate } from '../../core/index.js'

// The reference model of a token bucket (docs/spec.md §14): in any window of `d` seconds, a bucket
// of `requests` tokens refilled in `perSeconds` admits at most `requests + d · requests/perSeconds`
// requests; requests spaced a whole refill period apart are all admitted.

const rates = fc.record({ requests: fc.integer({ min: 1, max: 50 }), perSeconds: fc.integer({ min: 1, max: 120 }) })
/** Request times in ms, sorted, with repeats (requests at the same instant). */
const times = fc.array(fc.integer({ min: 0, max: 600_000 }), { minLength: 1, maxLength: 300 }).map((t) => [...t].sort((a, b) => a - b))

const admitted = (rate: Rate, at: ReadonlyArray<number>): ReadonlyArray<number> => {
  let bucket: Bucket | undefined
  const taken: Array<number> = []
  for (const now of at) {
    const take = takeTokens([{ rate, bucket }], now)
    bucket = take.buckets[0]
    if (take._tag === 'Taken') taken.push(now)
  }
  return taken
}

const laws = {
  'no window admits more than the bucket holds plus what it gains in the window': (rate: Rate, at: ReadonlyArray<number>) => {
    const taken = admitted(rate, at)
    return taken.every((start, i) => taken.slice(i).every((end, j) => j + 1 <= rate.requests + ((end - start) / 1000) * (rate.requests / rate.perSeconds) + 1e-9))
  },
  'requests a whole refill period apart are all admitted': (rate: Rate, at: ReadonlyArray<number>) => {
    const spaced = at.map((_, i) => i * Math.ceil((rate.perSeconds * 1000) / rate.requests))
    return admitted(rate, spaced).length === spaced.length
  },
  'a burst of the bucket’s size is admitted at once, and the next request is not': (rate: Rate, at: ReadonlyArray<number>) => {
    const now = at[0] ?? 0
    const burst = Array.from({ length: rate.requests + 1 }, () => now)
    return admitted(rate, burst).length === rate.requests
  },
  'a limited request takes no token from any bucket, and its Retry-After is long enough': (rate: Rate, at: ReadonlyArray<number>) => {
    const empty = { tokens: 0, at: 0 }
    const other = { tokens: 3, at: 0 }
    const take = takeTokens([{ rate: { requests: 10, perSeconds: 1 }, bucket: other }, { rate, bucket: empty }], 0)
    if (take._tag !== 'Limited' || take.buckets[0]?.tokens !== 3) return false
    const retry = takeTokens([{ rate, bucket: take.buckets[1] }], take.retryAfterSeconds * 1000)
    return take.retryAfterSeconds >= 1 && retry._tag === 'Taken' && at.length > 0
  }
}

describe('token buckets (docs/spec.md §14)', () => {
  for (const [name, law] of Object.entries(laws)) it(name, () => fc.assert(fc.property(rates, times, law), { numRuns: 300 }))

  it('refills nothing when the clock goes back, and never above the bucket’s size', () => {
    const rate = { requests: 2, perSeconds: 10 }
    const spent = takeTokens([{ rate, bucket: { tokens: 0, at: 10_000 } }], 5_000)
    expect(spent).toMatchObject({ _tag: 'Limited', buckets: [{ tokens: 0, at: 10_000 }] })
    expect(isFull(rate, { tokens: 0, at: 0 }, 10_000)).toBe(true)
    expect(isFull(rate, { tokens: 0, at: 0 }, 9_999)).toBe(false)
    expect(isFull(rate, undefined, 0)).toBe(true)
  })

  it('answers a limited request 429 with Retry-After, recorded as proxy_deny rate_limited', () => {
    const decided = denyRateLimited({ scheme: 'https', host: 'API.Alpha.test', port: 443, method: 'POST', path: '/v1/x?key=1' }, 7)
    expect(decided.decision).toMatchObject({ _tag: 'Deny', reason: 'rate_limited', status: 429, retryAfterSeconds: 7, closeTunnel: false })
    expect(decided.audit).toEqual([{ event: 'proxy_deny', source: 'external', provider: null, connection: null, metadata: { host: 'api.alpha.test', reason: 'rate_limited' } }])
  })

  it('is enforced under report-only enforcement too: a limit is not a policy verdict to roll out', () => {
    const decided = denyRateLimited({ host: 'api.alpha.test', method: 'GET' }, 1)
    expect(enforced('report', decided)).toBe(decided)
    const tunnel = denyTunnelRateLimited('api.alpha.test', 2)
    expect(enforcedTunnel('report', tunnel)).toBe(tunnel)
    expect(tunnel.decision).toEqual({ _tag: 'Deny', reason: 'rate_limited', retryAfterSeconds: 2 })
  })
})
