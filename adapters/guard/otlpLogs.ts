import type { AuditEntry } from '../ports.js'

// Audit records as OTLP/HTTP JSON log records (docs/spec.md §14; the OpenTelemetry protocol's
// ExportLogsServiceRequest in its JSON encoding): one log record per audit record, its body the
// event, its fields attributes. 64-bit integers are decimal strings, as the encoding asks.

/** An OTLP attribute value. */
type AnyValue = { readonly stringValue: string } | { readonly intValue: string }

/** An OTLP key-value attribute. */
interface KeyValue {
  readonly key: string
  readonly value: AnyValue
}

/** The scope every record is logged under. */
export const OTLP_SCOPE = 'egress-guard'

// OTLP severity numbers: INFO and WARN.
const INFO = 9
const WARN = 13
/** A denial, or a decision that would have denied, is a warning; the rest is information. */
const severityOf = (event: AuditEntry['event']): number => (event === 'proxy_inject' || event === 'proxy_miss' ? INFO : WARN)

const text = (key: string, value: string | null | undefined): ReadonlyArray<KeyValue> => (value === null || value === undefined ? [] : [{ key, value: { stringValue: value } }])
const integer = (key: string, value: number | undefined): ReadonlyArray<KeyValue> => (value === undefined ? [] : [{ key, value: { intValue: String(Math.trunc(value)) } }])

/** Nanoseconds since the epoch, as a decimal string, of an ISO time. */
const nanos = (iso: string): string => (BigInt(Number.isNaN(Date.parse(iso)) ? 0 : Date.parse(iso)) * 1_000_000n).toString()

/** The record's fields as attributes: `egress_guard.<field>`, request fields under `egress_guard.request.`, metadata under `egress_guard.metadata.`. */
export const otlpAttributes = (entry: AuditEntry): ReadonlyArray<KeyValue> => [
  ...text('egress_guard.event', entry.event),
  ...text('egress_guard.decision_id', entry.decisionId),
  ...text('egress_guard.instance', entry.instance),
  ...text('egress_guard.mode', entry.mode),
  ...text('egress_guard.enforcement', entry.enforcement),
  ...text('egress_guard.client', entry.client),
  ...text('egress_guard.policy_hash', entry.policyHash),
  ...text('egress_guard.source', entry.source),
  ...text('egress_guard.provider', entry.provider),
  ...text('egress_guard.connection', entry.connection),
  ...text('egress_guard.request.scheme', entry.request?.scheme),
  ...text('egress_guard.request.host', entry.request?.host),
  ...integer('egress_guard.request.port', entry.request?.port),
  ...text('egress_guard.request.method', entry.request?.method),
  ...text('egress_guard.request.path', entry.request?.path),
  ...Object.entries(entry.metadata).flatMap(([key, value]) => text(`egress_guard.metadata.${key}`, value))
]

/** A batch of audit records as one OTLP/HTTP JSON ExportLogsServiceRequest, for the resource of this `service.instance.id`. */
export const otlpLogsBody = (batch: ReadonlyArray<AuditEntry>, version: string, observedAt: Date = new Date()): string => {
  const observed = nanos(observedAt.toISOString())
  return JSON.stringify({
    resourceLogs: [
      {
        resource: { attributes: [...text('service.name', 'egress-guard'), ...text('service.version', version), ...text('service.instance.id', batch[0]?.instance)] },
        scopeLogs: [
          {
            scope: { name: OTLP_SCOPE, version },
            logRecords: batch.map((entry) => ({
              timeUnixNano: nanos(entry.time),
              observedTimeUnixNano: observed,
              severityNumber: severityOf(entry.event),
              severityText: severityOf(entry.event) === INFO ? 'INFO' : 'WARN',
              body: { stringValue: entry.event },
              attributes: otlpAttributes(entry)
            }))
          }
        ]
      }
    ]
  })
}
