import type { AuditRecord } from './Audit.js'
import type { CredentialOutcome } from './Credentials.js'
import { decide, decideTunnel } from './Decision.js'
import type { ProxyMode } from './Mode.js'
import { resolveRoute, type RequestFacts } from './resolveRoute.js'
import type { RouteTable } from './RouteTable.js'

// Replay (docs/spec.md §12): a recorded decision's outcome read from its records, and the same
// request decided again under another table and mode, without any secret. Both are outcomes, so
// `was` and `now` compare field by field.

/** What a decision came to: its kind, and the reason and connection where it has them. */
export interface Outcome {
  readonly decision: 'inject' | 'pass' | 'deny' | 'tunnel' | 'intercept'
  readonly reason: string | null
  readonly provider: string | null
  readonly connection: string | null
}

/** A recorded request, as records carry it: the path has no query. */
export interface RecordedRequest {
  readonly scheme: string
  readonly host: string
  readonly port: number
  readonly method: string
  readonly path?: string
}

const outcome = (decision: Outcome['decision'], record: AuditRecord | undefined, reason: string | null): Outcome => ({
  decision,
  reason,
  provider: record?.provider ?? null,
  connection: record?.connection ?? null
})

/**
 * The outcome one decision's records show (a `proxy_would_deny` counts as the denial it records:
 * replay compares what the policy decides, not how it was enforced). Undefined for none.
 */
export const outcomeOf = (records: ReadonlyArray<AuditRecord>, tunnel: boolean): Outcome | undefined => {
  const last = records.at(-1)
  if (last === undefined) return undefined
  const reason = last.metadata['reason'] ?? null
  switch (last.event) {
    case 'proxy_inject':
      return outcome('inject', last, null)
    case 'proxy_deny':
    case 'proxy_would_deny':
      // A no_credentials denial names its connection in the record before it.
      return outcome('deny', last.provider === null ? records.find((r) => r.provider !== null) : last, reason)
    case 'proxy_no_credentials':
      return outcome('pass', last, 'no_credentials')
    case 'proxy_miss':
      return outcome(tunnel ? 'tunnel' : 'pass', last, reason)
  }
}

/**
 * True for an outcome decided on what records never hold: what the request carried (the tripwire,
 * docs/spec.md §13) or how many requests came before it (a rate limit, §14). Replay cannot decide
 * it again, and keeps it as it was.
 */
export const decidedOnContent = (outcome: Outcome): boolean => outcome.reason === 'credential_exfiltration' || outcome.reason === 'rate_limited'

/** True when two outcomes are the same decision, for the same reason and connection. */
export const sameOutcome = (a: Outcome, b: Outcome): boolean =>
  a.decision === b.decision && a.reason === b.reason && a.provider === b.provider && a.connection === b.connection

const STAND_IN: CredentialOutcome = { _tag: 'Available', headers: { Authorization: 'replay' } }
const NONE: CredentialOutcome = { _tag: 'Unavailable', error: 'replay: not available' }

/**
 * Decides a recorded request again under `table` and `mode`. A CONNECT (`method` CONNECT, no
 * path) is decided as a tunnel; any other request as a request, its connection's credentials
 * counted as there or not by `hasCredentials`, never resolved.
 */
export const replayRequest = (input: {
  readonly table: RouteTable
  readonly mode: ProxyMode
  readonly request: RecordedRequest
  readonly hasCredentials: (provider: string, connection: string) => boolean
}): Outcome => {
  const { table, mode, request } = input
  if (request.method === 'CONNECT' && request.path === undefined) {
    const decided = decideTunnel({ mode, table, host: request.host, port: request.port })
    if (decided.decision._tag === 'Intercept') return { decision: 'intercept', reason: null, provider: null, connection: null }
    return outcomeOf(decided.audit, true) ?? { decision: 'deny', reason: 'internal_error', provider: null, connection: null }
  }
  const facts: RequestFacts = { scheme: request.scheme, host: request.host, port: request.port, method: request.method, path: request.path ?? '/' }
  const resolution = resolveRoute(table, facts)
  const credentials = resolution._tag === 'Matched' ? (input.hasCredentials(resolution.provider, resolution.connection) ? STAND_IN : NONE) : undefined
  const decided = decide({ mode, request: facts, resolution, ...(credentials === undefined ? {} : { credentials }) })
  return outcomeOf(decided.audit, false) ?? { decision: 'deny', reason: 'internal_error', provider: null, connection: null }
}
