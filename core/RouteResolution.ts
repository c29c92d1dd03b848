// -------------------------------------------------------------------------------------
// model
// -------------------------------------------------------------------------------------

/** Why a request resolved to no provider (docs/spec.md §4). */
export type MissReason =
  | 'no_match'
  | 'ambiguous'
  | 'insecure_scheme'
  | 'host_mismatch'
  | 'local_destination'
  | 'auth_endpoint'
  | 'passthrough'
  | 'not_allowed'
  | 'internal_error'

/** Why a request or tunnel was denied. */
export type DenyReason = 'no_credentials' | 'unauthenticated' | 'credential_exfiltration' | 'rate_limited' | Exclude<MissReason, 'auth_endpoint' | 'passthrough'>

/** The request belongs to this provider's connection. */
export interface Matched {
  readonly _tag: 'Matched'
  readonly provider: string
  readonly connection: string
}

/** The request belongs to no provider, and why. */
export interface Miss {
  readonly _tag: 'Miss'
  readonly reason: MissReason
  /** For `not_allowed`: the connection whose route matched but whose rules (docs/spec.md §10) do not allow the request. */
  readonly target?: { readonly provider: string; readonly connection: string }
}

/** The outcome of resolving a request against a route table. */
export type RouteResolution = Matched | Miss

// -------------------------------------------------------------------------------------
// constructors
// -------------------------------------------------------------------------------------

/** Every miss reason, for enumerations and decoders. */
export const MISS_REASONS: ReadonlyArray<MissReason> = [
  'no_match',
  'ambiguous',
  'insecure_scheme',
  'host_mismatch',
  'local_destination',
  'auth_endpoint',
  'passthrough',
  'not_allowed',
  'internal_error'
]

/** A request a connection's route matched but its rules do not allow: no credentials for it. */
export const notAllowed = (provider: string, connection: string): Miss => ({ _tag: 'Miss', reason: 'not_allowed', target: { provider, connection } })

/** A match for a provider's connection. */
export const matched = (provider: string, connection: string): Matched => ({ _tag: 'Matched', provider, connection })

const MISSES = Object.fromEntries(
  MISS_REASONS.map((reason) => [reason, Object.freeze({ _tag: 'Miss', reason })])
) as Record<MissReason, Miss>

/** A miss for a reason (shared, immutable instances). */
export const miss = (reason: MissReason): Miss => MISSES[reason]
