import type { DenyReason, MissReason } from './RouteResolution.js'

// -------------------------------------------------------------------------------------
// model
// -------------------------------------------------------------------------------------

/** The audit events: the four of docs/spec.md §6, and `proxy_would_deny`, a denial carried out as a pass under report-only enforcement (§11). */
export type AuditEvent = 'proxy_inject' | 'proxy_miss' | 'proxy_no_credentials' | 'proxy_deny' | 'proxy_would_deny'

/** One audit record, in the shape of the daemon API this project grew from. */
export interface AuditRecord {
  readonly event: AuditEvent
  readonly source: 'external'
  readonly provider: string | null
  readonly connection: string | null
  readonly metadata: Readonly<Record<string, string>>
}

/** The request fields a record may show: the path is already without its query string. */
export interface AuditedRequest {
  readonly host: string
  readonly method: string
  readonly path?: string
}

/** The provider and connection a record is about. */
export interface AuditTarget {
  readonly provider: string
  readonly connection: string
}

// -------------------------------------------------------------------------------------
// constructors
// -------------------------------------------------------------------------------------

// INVARIANT: no constructor here takes a header value, so no record can hold a credential.

/** Credentials were injected into the request. */
export const injectRecord = (target: AuditTarget, request: AuditedRequest): AuditRecord => ({
  event: 'proxy_inject',
  source: 'external',
  provider: target.provider,
  connection: target.connection,
  metadata: request.path === undefined
    ? { host: request.host, method: request.method }
    : { host: request.host, method: request.method, path: request.path }
})

/** The request was passed (or tunnelled) without credentials; `target` when a connection's rules refused it. */
export const missRecord = (reason: MissReason, request: AuditedRequest, target: AuditTarget | null = null): AuditRecord => ({
  event: 'proxy_miss',
  source: 'external',
  provider: target?.provider ?? null,
  connection: target?.connection ?? null,
  metadata: request.path === undefined
    ? { host: request.host, reason, method: request.method }
    : { host: request.host, reason, method: request.method, path: request.path }
})

/** A matched request found no usable credentials. */
export const noCredentialsRecord = (target: AuditTarget, host: string, error: string): AuditRecord => ({
  event: 'proxy_no_credentials',
  source: 'external',
  provider: target.provider,
  connection: target.connection,
  metadata: { host, error }
})

/** The request (or tunnel) was denied. */
export const denyRecord = (target: AuditTarget | null, host: string, reason: DenyReason): AuditRecord => ({
  event: 'proxy_deny',
  source: 'external',
  provider: target?.provider ?? null,
  connection: target?.connection ?? null,
  metadata: { host, reason }
})

/**
 * A request carried a known secret towards a route of another provider (docs/spec.md §13): the
 * record names the provider whose secret it was and where it was found, never the value.
 */
export const exfiltrationRecord = (provider: string, host: string, location: string): AuditRecord => ({
  event: 'proxy_deny',
  source: 'external',
  provider,
  connection: null,
  metadata: { host, reason: 'credential_exfiltration', location }
})
