import type { Socket } from 'node:net'

import type { AuditRecord, CredentialOutcome, Enforcement, ProxyMode, RecordedRequest } from '../core/index.js'

/** Where credentials for a (provider, connection) come from. Never throws; failures are `Unavailable`. */
export interface CredentialSource {
  readonly resolve: (provider: string, connection: string, signal: AbortSignal) => Promise<CredentialOutcome>
}

/** An audit record as sinks write it: the core record plus when, under which mode and enforcement, for which client, and which decision. */
export interface AuditEntry extends AuditRecord {
  readonly time: string
  readonly mode: ProxyMode
  readonly enforcement: Enforcement
  /** The client the request belongs to (docs/spec.md §9); null when the policy lists no clients, or none authenticated. */
  readonly client: string | null
  readonly decisionId: string
  /** The instance that decided (docs/spec.md §14): `serve --instance`, or this host's name and process id. */
  readonly instance: string
  /** The SHA-256 of the policy that decided (docs/spec.md §12). */
  readonly policyHash: string
  /** What is needed to decide the request again (§12): the path without its query, none for a CONNECT; null when there is nothing to decide again (a request refused for want of proxy authentication). */
  readonly request: RecordedRequest | null
}

/** Somewhere audit entries go. `write` never blocks or throws; a full queue drops and counts. */
export interface AuditSink {
  readonly write: (entry: AuditEntry) => void
  /** Resolves once everything queued so far was delivered, or given up on. */
  readonly flush: () => Promise<void>
  readonly close: () => Promise<void>
  /** Entries dropped because the queue was full or delivery failed for good. */
  readonly dropped: () => number
  /** Entries waiting for delivery now. */
  readonly queued?: () => number
  /** False while the sink drops what it is given (its queue is full, or it failed for good): not ready (docs/spec.md §14). */
  readonly accepting?: () => boolean
}

/** What the proxy tells its metrics (docs/spec.md §14); every call is cheap and never throws. */
export interface Telemetry {
  /** A request was decided, in this many seconds (credential resolution included). */
  readonly decided: (seconds: number) => void
  /** An upstream's response head came this many seconds after the request was sent. */
  readonly answered: (seconds: number) => void
}

/** Telemetry that goes nowhere. */
export const NO_TELEMETRY: Telemetry = { decided: () => undefined, answered: () => undefined }

/** The time, injectable for tests. */
export interface Clock {
  readonly now: () => Date
}

/** The system clock. */
export const systemClock: Clock = { now: () => new Date() }

/** Operational messages (reloads, sink trouble). Never given a credential value. */
export type Logger = (level: 'info' | 'warn' | 'error', message: string) => void

/** Writes log lines to stderr. */
export const stderrLogger: Logger = (level, message) => {
  process.stderr.write(`egress-guard ${level}: ${message}\n`)
}

/** A running guarded proxy, whichever library it is built on. */
export interface RunningProxy {
  readonly url: string
  readonly port: number
  /** The CA certificate clients must trust to be intercepted (PEM file, and its text). */
  readonly caCertPath: string
  readonly caCertPem: string
  /** Serves a client connection accepted elsewhere (by the primary of `serve --workers`). */
  readonly accept: (socket: Socket) => void
  /** Client connections open now, and how many of them are CONNECT tunnels. */
  readonly open: () => { readonly connections: number; readonly tunnels: number }
  readonly close: () => Promise<void>
}
