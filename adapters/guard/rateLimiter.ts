import { isFull, takeTokens, type Bucket, type Limits, type Rate } from '../../core/index.js'

// The buckets of a policy's `limits` (docs/spec.md §14), kept in memory: one per client (a request
// without a client counts against the bucket of no client) and one per destination host. Hosts are
// the client's to choose, so the buckets are bounded, and bounded without forgetting a bucket in
// use (forgetting a spent bucket would refill it, and a flood of new names would buy the flooder
// new tokens): at MAX_BUCKETS, the least recently used bucket makes room only if it has refilled
// (the same as none); otherwise a new key shares one overflow bucket with every other new key until
// room is made. A flood of new names then limits new names, and leaves the buckets in use alone.

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

/** A bounded table of buckets for one rate, and the overflow bucket new keys share when it is full. */
interface Table {
  readonly rate: Rate
  readonly buckets: Map<string, Bucket>
  overflow: Bucket | undefined
}

/** The key under which no host or client can be named: the overflow bucket's. */
const OVERFLOW = '\u0001overflow'

/**
 * The key whose bucket a request counts against: its own when it has one or there is room (the
 * least recently used bucket, if refilled, makes room); else the overflow bucket.
 */
const slotOf = (table: Table, key: string, now: number): string => {
  if (table.buckets.has(key) || table.buckets.size < MAX_BUCKETS) return key
  const [oldest, bucket] = table.buckets.entries().next().value as [string, Bucket]
  if (!isFull(table.rate, bucket, now)) return OVERFLOW
  table.buckets.delete(oldest)
  return key
}

const bucketOf = (table: Table, slot: string): Bucket | undefined => (slot === OVERFLOW ? table.overflow : table.buckets.get(slot))

const store = (table: Table, key: string, bucket: Bucket | undefined, now: number): void => {
  if (key === OVERFLOW) {
    table.overflow = bucket
    return
  }
  table.buckets.delete(key)
  // A bucket that is full again is the same as none.
  if (bucket === undefined || isFull(table.rate, bucket, now)) return
  // INVARIANT: at most MAX_BUCKETS are kept (slotOf made room, or chose the overflow bucket).
  table.buckets.set(key, bucket)
}

/** The limiter for `limits`; undefined when the policy sets none. */
export const rateLimiter = (limits: Limits | undefined): RateLimiter | undefined => {
  if (limits?.perClient === undefined && limits?.perHost === undefined) return undefined
  const perClient: Table | undefined = limits.perClient === undefined ? undefined : { rate: limits.perClient, buckets: new Map(), overflow: undefined }
  const perHost: Table | undefined = limits.perHost === undefined ? undefined : { rate: limits.perHost, buckets: new Map(), overflow: undefined }
  return {
    take: (request, now) => {
      // The client of no name is keyed apart from every named client.
      const keyed: ReadonlyArray<readonly [Table, string]> = [
        ...(perClient === undefined ? [] : [[perClient, slotOf(perClient, request.client === undefined ? '\u0000' : `=${request.client}`, now)] as const]),
        ...(perHost === undefined ? [] : [[perHost, slotOf(perHost, `@${request.host}`, now)] as const])
      ]
      const take = takeTokens(keyed.map(([table, slot]) => ({ rate: table.rate, bucket: bucketOf(table, slot) })), now)
      for (const [i, [table, key]] of keyed.entries()) store(table, key, take.buckets[i], now)
      return take._tag === 'Limited' ? take.retryAfterSeconds : undefined
    },
    size: () => (perClient?.buckets.size ?? 0) + (perHost?.buckets.size ?? 0)
  }
}
