import { isFull, takeTokens, type Bucket, type Limits, type Rate } from '../../core/index.js'

// The buckets of a policy's `limits` (docs/spec.md §14), kept in memory: one per client (a request
// without a client counts against the bucket of no client) and one per destination host. Hosts are
// the client's to choose, so the buckets are bounded: at MAX_BUCKETS, the least recently used is
// forgotten (in constant time: a flood of new names costs no sweep). A bucket that refilled is
// forgotten at its next use, so the table holds mostly buckets in use.

/** Buckets kept per kind at most. */
export const MAX_BUCKETS = 10_000

/** What a request is counted as. */
export interface Counting {
  readonly client: string | undefined
  readonly host: string
}

/** Counts requests against a policy's limits. */
export interface RateLimiter {
  /** Takes the request's tokens: undefined when it may go on, else the seconds to wait before a retry. */
  readonly take: (request: Counting, now: number) => number | undefined
  /** Buckets kept, per kind (a gauge of the memory used). */
  readonly size: () => number
}

/** A bounded table of buckets for one rate. */
interface Table {
  readonly rate: Rate
  readonly buckets: Map<string, Bucket>
}

const store = (table: Table, key: string, bucket: Bucket | undefined, now: number): void => {
  table.buckets.delete(key)
  // A bucket that is full again is the same as none.
  if (bucket === undefined || isFull(table.rate, bucket, now)) return
  // INVARIANT: at most MAX_BUCKETS are kept; the least recently used (first in the map) goes first.
  if (table.buckets.size >= MAX_BUCKETS) table.buckets.delete(table.buckets.keys().next().value as string)
  table.buckets.set(key, bucket)
}

/** The limiter for `limits`; undefined when the policy sets none. */
export const rateLimiter = (limits: Limits | undefined): RateLimiter | undefined => {
  if (limits?.perClient === undefined && limits?.perHost === undefined) return undefined
  const perClient: Table | undefined = limits.perClient === undefined ? undefined : { rate: limits.perClient, buckets: new Map() }
  const perHost: Table | undefined = limits.perHost === undefined ? undefined : { rate: limits.perHost, buckets: new Map() }
  return {
    take: (request, now) => {
      // The client of no name is keyed apart from every named client.
      const keyed: ReadonlyArray<readonly [Table, string]> = [
        ...(perClient === undefined ? [] : [[perClient, request.client === undefined ? '\u0000' : `=${request.client}`] as const]),
        ...(perHost === undefined ? [] : [[perHost, request.host] as const])
      ]
      const take = takeTokens(keyed.map(([table, key]) => ({ rate: table.rate, bucket: table.buckets.get(key) })), now)
      for (const [i, [table, key]] of keyed.entries()) store(table, key, take.buckets[i], now)
      return take._tag === 'Limited' ? take.retryAfterSeconds : undefined
    },
    size: () => (perClient?.buckets.size ?? 0) + (perHost?.buckets.size ?? 0)
  }
}
