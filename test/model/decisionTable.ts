// docs/spec.md §5, written out as a literal: the expected outcome of every resolution in allow and
// deny modes. The tests enumerate every mode × resolution × credential outcome against it.
import type { AuditEvent } from '../../core/Audit.js'

/** What one cell of the table expects. */
export interface Expected {
  readonly decision: 'Inject' | 'Pass' | 'Deny'
  readonly reason?: string
  readonly events: ReadonlyArray<AuditEvent>
}

/** One row: a resolution, whether credentials are usable, and the two columns. */
export interface Row {
  readonly resolution: 'matched' | string
  readonly credentials: 'available' | 'unavailable' | 'none'
  readonly allow: Expected
  readonly deny: Expected
}

const passMiss: Expected = { decision: 'Pass', events: ['proxy_miss'] }
const denied = (reason: string): Expected => ({ decision: 'Deny', reason, events: ['proxy_deny'] })

export const DECISION_TABLE: ReadonlyArray<Row> = [
  { resolution: 'matched', credentials: 'available', allow: { decision: 'Inject', events: ['proxy_inject'] }, deny: { decision: 'Inject', events: ['proxy_inject'] } },
  {
    resolution: 'matched',
    credentials: 'unavailable',
    allow: { decision: 'Pass', events: ['proxy_no_credentials'] },
    deny: { decision: 'Deny', reason: 'no_credentials', events: ['proxy_no_credentials', 'proxy_deny'] }
  },
  { resolution: 'no_match', credentials: 'none', allow: passMiss, deny: denied('no_match') },
  { resolution: 'ambiguous', credentials: 'none', allow: passMiss, deny: denied('ambiguous') },
  { resolution: 'insecure_scheme', credentials: 'none', allow: passMiss, deny: denied('insecure_scheme') },
  { resolution: 'host_mismatch', credentials: 'none', allow: passMiss, deny: denied('host_mismatch') },
  { resolution: 'local_destination', credentials: 'none', allow: passMiss, deny: denied('local_destination') },
  { resolution: 'auth_endpoint', credentials: 'none', allow: passMiss, deny: passMiss },
  { resolution: 'passthrough', credentials: 'none', allow: passMiss, deny: passMiss },
  // §10: a route's connection whose rules refuse the request: as no_match, but the records name it.
  { resolution: 'not_allowed', credentials: 'none', allow: passMiss, deny: denied('not_allowed') },
  // §5: "If the engine itself fails … deny modes deny (internal_error) and allow modes pass".
  { resolution: 'internal_error', credentials: 'none', allow: passMiss, deny: denied('internal_error') }
]

/** The exact metadata keys of each event (docs/spec.md §6), in order. */
export const METADATA_KEYS: Readonly<Record<AuditEvent, ReadonlyArray<string>>> = {
  proxy_inject: ['host', 'method', 'path'],
  proxy_miss: ['host', 'reason', 'method', 'path'],
  proxy_no_credentials: ['host', 'error'],
  proxy_deny: ['host', 'reason'],
  // §11: the record a denial would have had, under report-only enforcement.
  proxy_would_deny: ['host', 'reason']
}
