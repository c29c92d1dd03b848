// Rate limits (docs/spec.md §14): token buckets per client and per host. A bucket holds at most
// `requests` tokens and gains `requests / perSeconds` of them a second; a request takes one token
// from every bucket it counts against, or none when any of them is empty. The clock is the
// caller's (milliseconds); a clock that goes back refills nothing.

// -------------------------------------------------------------------------------------
// model
// -------------------------------------------------------------------------------------

/** So many requests per so many seconds: a bucket of `requests` tokens, refilled in `perSeconds`. */
export interface Rate {
  readonly requests: number
  readonly perSeconds: number
}

/** A policy's `limits`: either may be absent. */
export interface Limits {
  readonly perClient?: Rate
  readonly perHost?: Rate
}

/** A bucket's state: the tokens it held at `at` (ms). */
export interface Bucket {
  readonly tokens: number
  readonly at: number
}

/** One bucket a request counts against: its rate and its state (undefined: never used, so full). */
export interface Counted {
  readonly rate: Rate
  readonly bucket: Bucket | undefined
}

/** What taking a request's tokens did: the buckets' new states, in the order given. */
export type Take =
  | { readonly _tag: 'Taken'; readonly buckets: ReadonlyArray<Bucket> }
  /** A bucket was empty: no token was taken from any, and one is back in `retryAfterSeconds` (at least 1). */
  | { readonly _tag: 'Limited'; readonly retryAfterSeconds: number; readonly buckets: ReadonlyArray<Bucket> }

// -------------------------------------------------------------------------------------
// operations
// -------------------------------------------------------------------------------------

/** The bucket's state at `now`: refilled for the time gone by, never past `rate.requests`. */
export const refilled = (rate: Rate, bucket: Bucket | undefined, now: number): Bucket => {
  if (bucket === undefined) return { tokens: rate.requests, at: now }
  const elapsed = Math.max(0, now - bucket.at)
  return { tokens: Math.min(rate.requests, bucket.tokens + (elapsed * rate.requests) / (rate.perSeconds * 1000)), at: Math.max(now, bucket.at) }
}

/** True when the bucket is full at `now`: keeping it or forgetting it is the same. */
export const isFull = (rate: Rate, bucket: Bucket | undefined, now: number): boolean => refilled(rate, bucket, now).tokens >= rate.requests

/** Seconds until an empty bucket holds a whole token again, rounded up, at least 1. */
const secondsToToken = (rate: Rate, bucket: Bucket): number => Math.max(1, Math.ceil(((1 - bucket.tokens) * rate.perSeconds) / rate.requests))

/**
 * Takes one token from every bucket a request counts against, or none when one is empty: then the
 * request is limited, and told when to retry (the longest wait among the empty buckets).
 *
 * @example
 * takeTokens([{ rate: { requests: 1, perSeconds: 10 }, bucket: { tokens: 0, at: 0 } }], 5_000)
 * // => { _tag: 'Limited', retryAfterSeconds: 5, buckets: [{ tokens: 0.5, at: 5000 }] }
 */
export const takeTokens = (counted: ReadonlyArray<Counted>, now: number): Take => {
  const buckets = counted.map((c) => refilled(c.rate, c.bucket, now))
  let wait = 0
  for (const [i, bucket] of buckets.entries()) {
    const rate = counted[i]?.rate
    if (rate !== undefined && bucket.tokens < 1) wait = Math.max(wait, secondsToToken(rate, bucket))
  }
  if (wait > 0) return { _tag: 'Limited', retryAfterSeconds: wait, buckets }
  return { _tag: 'Taken', buckets: buckets.map((b) => ({ tokens: b.tokens - 1, at: b.at })) }
}
