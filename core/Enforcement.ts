import * as E from 'fp-ts/lib/Either.js'

import type { AuditRecord } from './Audit.js'
import type { Decided, TunnelDecided } from './Decision.js'

// Report-only rollout (docs/spec.md §11): the policy decides as always, and a Deny is carried out
// as a pass without credentials, recorded as `proxy_would_deny`. Applied to a verdict after
// `decide` or `decideTunnel`, so it can only ever take a denial away, never add an injection.

/** How verdicts are carried out: `enforce` does what they say; `report` records denials and passes instead. */
export type Enforcement = 'enforce' | 'report'

/** The enforcement when the policy and the command line name none. */
export const DEFAULT_ENFORCEMENT: Enforcement = 'enforce'

/** An enforcement that is not one of the two. */
export interface EnforcementError {
  readonly _tag: 'UnknownEnforcement'
  readonly message: string
}

/** Parses an enforcement; anything but `enforce` or `report` is an error naming both. */
export const parseEnforcement = (input: unknown): E.Either<EnforcementError, Enforcement> =>
  input === 'enforce' || input === 'report'
    ? E.right(input)
    : E.left({ _tag: 'UnknownEnforcement', message: `unknown enforcement \`${String(typeof input === 'string' ? input.slice(0, 64) : typeof input)}\`: expected enforce or report` })

/**
 * Reasons enforced whatever the enforcement: a request that did not authenticate to the proxy, a
 * secret on its way to a host that does not own it, and a rate limit (an operator's bound on load
 * and cost, not a policy verdict to roll out).
 */
const ALWAYS_ENFORCED: ReadonlySet<string> = new Set(['unauthenticated', 'credential_exfiltration', 'rate_limited'])

const wouldDeny = (records: ReadonlyArray<AuditRecord>): ReadonlyArray<AuditRecord> =>
  records.map((record) => (record.event === 'proxy_deny' ? { ...record, event: 'proxy_would_deny' } : record))

/** A request's verdict carried out under `enforcement`: under `report`, a Deny becomes a pass without credentials. */
export const enforced = (enforcement: Enforcement, decided: Decided): Decided =>
  enforcement === 'report' && decided.decision._tag === 'Deny' && !ALWAYS_ENFORCED.has(decided.decision.reason)
    ? { decision: { _tag: 'Pass' }, audit: wouldDeny(decided.audit) }
    : decided

/**
 * A CONNECT's verdict carried out under `enforcement`: under `report`, a denied tunnel is opened
 * untouched, or intercepted when `inspectAll` (policy `inspect: all`, docs/spec.md §13) so that
 * the tripwire still sees what goes through it.
 */
export const enforcedTunnel = (enforcement: Enforcement, decided: TunnelDecided, inspectAll = false): TunnelDecided =>
  enforcement === 'report' && decided.decision._tag === 'Deny' && !ALWAYS_ENFORCED.has(decided.decision.reason)
    ? { decision: { _tag: inspectAll ? 'Intercept' : 'Tunnel' }, audit: wouldDeny(decided.audit) }
    : decided
