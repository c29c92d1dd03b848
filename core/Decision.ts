import * as E from 'fp-ts/lib/Either.js'

import { injectRecord, missRecord, noCredentialsRecord, denyRecord, exfiltrationRecord, type AuditedRequest, type AuditRecord } from './Audit.js'
import { unavailable, usableCredentials, type CredentialOutcome } from './Credentials.js'
import { isLocalHost, parseHost } from './Host.js'
import { unmatchedPolicyOf, type ProxyMode } from './Mode.js'
import { withoutQuery } from './RequestPath.js'
import type { RequestFacts } from './resolveRoute.js'
import { carriedSecret, compileSecrets, REDACTED, type Carried } from './Secrets.js'
import { MISS_REASONS, type DenyReason, type MissReason, type RouteResolution } from './RouteResolution.js'
import { hostHasRoutesOnPort, isPassthroughHost, type RouteTable } from './RouteTable.js'

// -------------------------------------------------------------------------------------
// model
// -------------------------------------------------------------------------------------


/** Forward the request with these credential headers set (replacing any of the same name). */
export interface Inject {
  readonly _tag: 'Inject'
  readonly headers: Readonly<Record<string, string>>
}

/** Forward the request untouched. */
export interface Pass {
  readonly _tag: 'Pass'
}

/** Answer 403 (429 for `rate_limited`) with the body, or close the tunnel when the request is a CONNECT. */
export interface Deny {
  readonly _tag: 'Deny'
  readonly reason: DenyReason
  readonly status: 403 | 429
  readonly body: string
  readonly closeTunnel: boolean
  /** For `rate_limited`: the seconds after which a retry can succeed (`Retry-After`). */
  readonly retryAfterSeconds?: number
}

/** What the proxy does with one request. */
export type Decision = Inject | Pass | Deny

/** Optional pointers for the `no_credentials` deny body. */
export interface DenyText {
  /** A command template such as `authsome login {provider}`. */
  readonly loginCommand?: string
  readonly dashboardUrl?: string
}

/** Everything `decide` looks at. */
export interface DecideInput {
  readonly mode: ProxyMode
  readonly request: RequestFacts
  readonly resolution: RouteResolution
  readonly credentials?: CredentialOutcome
  readonly denyText?: DenyText
}

/** A decision and the audit records it yields. */
export interface Decided {
  readonly decision: Decision
  readonly audit: ReadonlyArray<AuditRecord>
}

/** What the proxy does with a CONNECT before any TLS interception. */
export type TunnelDecision =
  | { readonly _tag: 'Intercept' }
  | { readonly _tag: 'Tunnel' }
  | { readonly _tag: 'Deny'; readonly reason: DenyReason; readonly retryAfterSeconds?: number }

/** Everything `decideTunnel` looks at. */
export interface DecideTunnelInput {
  readonly mode: ProxyMode
  readonly table: RouteTable
  readonly host: string
  readonly port: number
  /** Policy `inspect: all` (docs/spec.md §13): what an allow mode would tunnel untouched is intercepted, so the tripwire sees it. */
  readonly inspectAll?: boolean
}

/** A tunnel decision and the audit records it yields (none for an intercept). */
export interface TunnelDecided {
  readonly decision: TunnelDecision
  readonly audit: ReadonlyArray<AuditRecord>
}

// -------------------------------------------------------------------------------------
// deny bodies
// -------------------------------------------------------------------------------------

const withSlash = (url: string): string => (url.endsWith('/') ? url : `${url}/`)

/** The plain-text body of a 403 (docs/spec.md §5). */
export const denyBody = (reason: DenyReason, provider: string | null, denyText?: DenyText): string => {
  if (reason === 'rate_limited') return 'Too many requests: an egress-guard rate limit (docs/spec.md §14) is spent; retry after the seconds in Retry-After'
  if (reason !== 'no_credentials') return `Forbidden by egress-guard proxy policy (${reason})`
  const head = `Forbidden: provider '${provider ?? ''}' is configured but has no active connection.`
  const login = typeof denyText?.loginCommand === 'string' && denyText.loginCommand !== '' ? denyText.loginCommand : undefined
  const dashboard = typeof denyText?.dashboardUrl === 'string' && denyText.dashboardUrl !== '' ? denyText.dashboardUrl : undefined
  if (login !== undefined) {
    const command = login.split('{provider}').join(provider ?? '')
    return `${head} Run \`${command}\` to connect${dashboard === undefined ? '' : `, or open the dashboard at ${withSlash(dashboard)}`}.`
  }
  return dashboard === undefined ? head : `${head} Open the dashboard at ${withSlash(dashboard)}.`
}

// -------------------------------------------------------------------------------------
// constructors
// -------------------------------------------------------------------------------------

const PASS: Pass = { _tag: 'Pass' }
const isString = (value: unknown): value is string => typeof value === 'string'

/** A host as records show it: normalised when it parses, else without anything up to its last `@` (user info), shortened. */
export const shownHost = (host: unknown): string => {
  const parsed = parseHost(host)
  if (E.isRight(parsed)) return parsed.right
  if (!isString(host)) return ''
  const bare = host.slice(host.lastIndexOf('@') + 1)
  return bare.length > 255 ? `${bare.slice(0, 255)}…` : bare
}

// INVARIANT: a record never shows user info. An origin-form path (`/…`) has none; any other
// target (absolute form, or text a transport could not make sense of) loses everything up to the
// `@` of its authority (`https://user:secret@host/x` is shown as `https://host/x`).
const USER_INFO = /^([a-z][a-z0-9+.-]*:\/\/)?[^/?#\\]*@/i
/** A path as records show it: without its query, and without user info when it is an absolute URI. */
export const shownPath = (path: string): string => {
  const bare = withoutQuery(path)
  return bare.startsWith('/') ? bare : bare.replace(USER_INFO, '$1')
}

// The request as records show it: normalised host when it parses, path without its query.
const audited = (request: unknown): AuditedRequest & { readonly path: string } => {
  const r = typeof request === 'object' && request !== null ? (request as Partial<Record<keyof RequestFacts, unknown>>) : {}
  return {
    host: shownHost(r.host),
    method: isString(r.method) ? r.method : '',
    path: isString(r.path) ? shownPath(r.path) : ''
  }
}

const isConnect = (request: AuditedRequest): boolean => request.method.toUpperCase() === 'CONNECT'

const deny = (reason: DenyReason, request: AuditedRequest, provider: string | null, denyText?: DenyText): Deny => ({
  _tag: 'Deny',
  reason,
  status: 403,
  body: denyBody(reason, provider, denyText),
  closeTunnel: isConnect(request)
})

/**
 * The verdict when the engine itself failed (a bug, a policy that could not load): deny modes
 * deny with `internal_error`, allow modes pass without injection.
 */
export const failClosed = (input: { readonly mode: ProxyMode; readonly request: unknown }): Decided => {
  const request = audited(input.request)
  return unmatchedPolicyOf(input.mode) === 'allow'
    ? { decision: PASS, audit: [missRecord('internal_error', request)] }
    : { decision: deny('internal_error', request, null), audit: [denyRecord(null, request.host, 'internal_error')] }
}

const decideUnsafe = ({ mode, request, resolution, credentials, denyText }: DecideInput): Decided => {
  const policy = unmatchedPolicyOf(mode)
  const shown = audited(request)
  const scheme = isString(request.scheme) ? request.scheme.toLowerCase() : ''
  // INVARIANT: a match over clear text is treated as `insecure_scheme`, whoever resolved it.
  const reason: MissReason | undefined =
    resolution._tag === 'Matched' ? (scheme === 'https' ? undefined : 'insecure_scheme')
    : MISS_REASONS.includes(resolution.reason) ? resolution.reason
    : 'internal_error'
  if (reason === undefined && resolution._tag === 'Matched') {
    const target = { provider: resolution.provider, connection: resolution.connection }
    // INVARIANT: TRACE and TRACK never carry credentials: an upstream that honours them echoes
    // the request, headers included, back to the client.
    const echoes = /^(TRACE|TRACK)$/i.test(shown.method)
    const outcome = echoes ? unavailable(`${shown.method.toUpperCase()} requests never receive credentials: the upstream would echo them back`) : usableCredentials(credentials)
    if (outcome._tag === 'Available') {
      return { decision: { _tag: 'Inject', headers: outcome.headers }, audit: [injectRecord(target, shown)] }
    }
    const noCredentials = noCredentialsRecord(target, shown.host, outcome.error)
    return policy === 'allow'
      ? { decision: PASS, audit: [noCredentials] }
      : {
          decision: deny('no_credentials', shown, target.provider, denyText),
          audit: [noCredentials, denyRecord(target, shown.host, 'no_credentials')]
        }
  }
  const why = reason ?? 'internal_error'
  // A `not_allowed` miss names the connection whose rules refused it (docs/spec.md §10); others name none.
  const target = why === 'not_allowed' && resolution._tag === 'Miss' && isTarget(resolution.target) ? resolution.target : null
  if (why === 'auth_endpoint' || why === 'passthrough' || policy === 'allow') {
    return { decision: PASS, audit: [missRecord(why, shown, target)] }
  }
  return { decision: deny(why, shown, null), audit: [denyRecord(target, shown.host, why)] }
}

const isTarget = (value: unknown): value is { readonly provider: string; readonly connection: string } =>
  typeof value === 'object' && value !== null && isString((value as { provider?: unknown }).provider) && isString((value as { connection?: unknown }).connection)

/**
 * Turns a resolution and its credentials into inject, pass or deny, with audit records
 * (docs/spec.md §5); never throws: an internal failure is the fail-closed verdict.
 *
 * @example
 * decide({ mode: 'connected_deny', resolution: { _tag: 'Miss', reason: 'no_match' },
 *   request: { scheme: 'https', host: 'example.net', port: 443, path: '/?q=1', method: 'GET' } })
 * // => { decision: { _tag: 'Deny', reason: 'no_match', status: 403, closeTunnel: false,
 * //        body: 'Forbidden by egress-guard proxy policy (no_match)' },
 * //      audit: [{ event: 'proxy_deny', source: 'external', provider: null, connection: null,
 * //        metadata: { host: 'example.net', reason: 'no_match' } }] }
 */
export const decide = (input: DecideInput): Decided => {
  try {
    return decideUnsafe(input)
  } catch {
    return failClosed({ mode: input?.mode, request: input?.request })
  }
}

const tunnelMiss = (reason: MissReason, host: string): TunnelDecided => ({
  decision: { _tag: 'Tunnel' },
  audit: [missRecord(reason, { host, method: 'CONNECT' })]
})

const tunnelDeny = (reason: DenyReason, host: string): TunnelDecided => ({
  decision: { _tag: 'Deny', reason },
  audit: [denyRecord(null, host, reason)]
})

const INTERCEPT: TunnelDecided = { decision: { _tag: 'Intercept' }, audit: [] }

const decideTunnelUnsafe = ({ mode, table, host, port, inspectAll }: DecideTunnelInput): TunnelDecided => {
  const allow = unmatchedPolicyOf(mode) === 'allow'
  const parsed = parseHost(host)
  const shown = shownHost(host)
  if (E.isLeft(parsed)) return allow ? tunnelMiss('no_match', shown) : tunnelDeny('no_match', shown)
  if (isLocalHost(parsed.right)) return !allow ? tunnelDeny('local_destination', shown) : inspectAll === true ? INTERCEPT : tunnelMiss('local_destination', shown)
  if (hostHasRoutesOnPort(table, parsed.right, port)) return INTERCEPT
  if (isPassthroughHost(table, parsed.right)) return tunnelMiss('passthrough', shown)
  return !allow ? tunnelDeny('no_match', shown) : inspectAll === true ? INTERCEPT : tunnelMiss('no_match', shown)
}

/**
 * Decides a CONNECT on its authority alone (docs/spec.md §5 Tunnels): intercept hosts with routes on
 * that port, tunnel passthrough hosts, and tunnel or deny the rest by the mode; never throws.
 */
export const decideTunnel = (input: DecideTunnelInput): TunnelDecided => {
  try {
    return decideTunnelUnsafe(input)
  } catch {
    const host = isString(input?.host) ? input.host : ''
    return unmatchedPolicyOf(input?.mode) === 'allow' ? tunnelMiss('internal_error', host) : tunnelDeny('internal_error', host)
  }
}

/**
 * The tripwire's verdict (docs/spec.md §13): a request that carries a secret to anywhere but a
 * route of a provider it belongs to is denied, in every mode (and under every enforcement, see
 * `enforced`); its record names the secret's provider and where the secret was, never the value.
 */
export const denyExfiltration = (carried: Carried, request: RequestFacts): Decided => {
  const shown = audited(request)
  return {
    decision: deny('credential_exfiltration', shown, null),
    audit: [exfiltrationRecord(carried.secret.owners[0] ?? '', shown.host, locationOf(carried))]
  }
}

// INVARIANT: a location never shows the secret: a header whose very name carries it is named `header`.
const locationOf = (carried: Carried): string =>
  carriedSecret(compileSecrets([carried.secret]), [{ location: '', text: carried.location }]) === undefined ? carried.location : 'header'

/** The tripwire's verdict on a CONNECT whose target names a secret: denied before the name is looked up, recorded without it. */
export const denyTunnelExfiltration = (carried: Carried): TunnelDecided => ({
  decision: { _tag: 'Deny', reason: 'credential_exfiltration' },
  audit: [exfiltrationRecord(carried.secret.owners[0] ?? '', REDACTED, 'host')]
})

/**
 * A request or CONNECT over a rate limit (docs/spec.md §14): 429 with `Retry-After`, decided before
 * any credential is resolved, and recorded as a `proxy_deny` with reason `rate_limited`.
 */
export const denyRateLimited = (request: RequestFacts | { readonly host: string; readonly method: string }, retryAfterSeconds: number): Decided => {
  const shown = audited(request)
  return {
    decision: { ...deny('rate_limited', shown, null), status: 429, retryAfterSeconds },
    audit: [denyRecord(null, shown.host, 'rate_limited')]
  }
}

/** A CONNECT over a rate limit: refused with 429 and `Retry-After`, recorded as `rate_limited`. */
export const denyTunnelRateLimited = (host: string, retryAfterSeconds: number): TunnelDecided => ({
  decision: { _tag: 'Deny', reason: 'rate_limited', retryAfterSeconds },
  audit: [denyRecord(null, shownHost(host), 'rate_limited')]
})
