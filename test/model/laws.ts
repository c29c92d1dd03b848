// Named laws of the core, each a pure predicate over one decision and what led to it. A law
// returns true when it holds. laws.test.ts binds them to generated cases; the fuzzer runs them
// over millions of mutated ones.
import * as E from 'fp-ts/lib/Either.js'

import {
  isLocalHost,
  parseHost,
  resolveRoute,
  type CredentialOutcome,
  type Decided,
  type ProxyMode,
  type RequestFacts,
  type RouteResolution,
  type RouteTable
} from '../../core/index.js'
import { enforced } from '../../core/Enforcement.js'
import { unmatchedPolicyOf } from '../../core/Mode.js'
import { SECRET_PREFIX } from '../arbitraries/request.js'
import { modelAllows, modelCanonicalPath, modelReadings, segmentsCover } from './referenceResolver.js'

/** One decision with everything that led to it. */
export interface Case {
  readonly table: RouteTable
  readonly mode: ProxyMode
  readonly request: RequestFacts
  readonly resolution: RouteResolution
  readonly credentials: CredentialOutcome | undefined
  readonly decided: Decided
}

const secretsOf = (credentials: CredentialOutcome | undefined): ReadonlyArray<string> =>
  credentials?._tag === 'Available' ? Object.values(credentials.headers).map((v) => v.split(/[\r\n\u0000]/)[0] ?? v) : []

const requestText = (request: RequestFacts): string => JSON.stringify(request)

/** Laws over a request, its resolution and its decision. */
export const decisionLaws: Record<string, (c: Case) => boolean> = {
  injectImpliesHttpsAndMatchedAndAvailable: ({ request, resolution, credentials, decided }) =>
    decided.decision._tag !== 'Inject' ||
    (request.scheme.toLowerCase() === 'https' && resolution._tag === 'Matched' && credentials?._tag === 'Available'),
  injectNeverReachesAHostWithoutARouteOfThatProvider: ({ table, request, resolution, decided }) => {
    if (decided.decision._tag !== 'Inject' || resolution._tag !== 'Matched') return true
    const host = parseHost(request.host)
    return (
      E.isRight(host) &&
      !isLocalHost(host.right) &&
      table.routes.some(
        (r) =>
          r.provider === resolution.provider &&
          r.port === request.port &&
          (r._tag === 'ExactRoute' ? r.host === host.right : r.pattern.matches(host.right))
      )
    )
  },
  injectedHeadersAreExactlyTheCredentials: ({ credentials, decided }) =>
    decided.decision._tag !== 'Inject' ||
    (credentials?._tag === 'Available' && JSON.stringify(decided.decision.headers) === JSON.stringify(credentials.headers)),
  denyModesNeverPassUnmatched: ({ mode, resolution, decided }) =>
    unmatchedPolicyOf(mode) === 'allow' ||
    decided.decision._tag !== 'Pass' ||
    (resolution._tag === 'Miss' && (resolution.reason === 'auth_endpoint' || resolution.reason === 'passthrough')),
  allowModesNeverDeny: ({ mode, decided }) => unmatchedPolicyOf(mode) === 'deny' || decided.decision._tag !== 'Deny',
  auditNeverContainsSecret: ({ request, credentials, decided }) => {
    const text = JSON.stringify(decided.audit) + (decided.decision._tag === 'Deny' ? decided.decision.body : '')
    return secretsOf(credentials).every((s) => !text.includes(s) || requestText(request).includes(s)) && !text.includes(SECRET_PREFIX)
  },
  auditNeverShowsUserInfo: ({ decided }) => decided.audit.every((r) => !/^([a-z][a-z0-9+.-]*:\/\/)?[^/?#\\]*@/i.test(r.metadata['path'] ?? '/')),
  auditPathNeverHasQuery: ({ decided }) => decided.audit.every((r) => !(r.metadata['path'] ?? '').includes('?')),
  everyDecisionIsAudited: ({ decided }) => decided.audit.length >= 1,
  closeTunnelExactlyForConnect: ({ request, decided }) =>
    decided.decision._tag !== 'Deny' || decided.decision.closeTunnel === (request.method === 'CONNECT'),
  plainHttpNeverInjects: ({ request, decided }) => request.scheme.toLowerCase() === 'https' || decided.decision._tag !== 'Inject',
  localDestinationsNeverMatch: ({ request, resolution }) => {
    const host = parseHost(request.host)
    return resolution._tag !== 'Matched' || (E.isRight(host) && !isLocalHost(host.right))
  },
  // A law about names: an IPv6 literal (bracketed, or bare as a CONNECT authority gives it) has no
  // trailing dot in any notation, and `::.` is not a host (found by the ten-million-fact fuzz run).
  // Only hosts that parse as IPv6 are exempt; any other text with a colon still obeys it.
  hostCaseAndTrailingDotIrrelevant: ({ table, request, resolution }) => {
    const parsed = parseHost(request.host)
    if (E.isRight(parsed) && parsed.right.includes(':')) return true
    const varied = { ...request, host: `${request.host.toUpperCase()}${request.host.endsWith('.') ? '' : '.'}` }
    return JSON.stringify(resolveRoute(table, varied)) === JSON.stringify(resolution)
  },
  // A prefix route is judged by every reading an upstream may take of the path: `/v1//../v2` is
  // `/v1/v2` to RFC 3986 and `/v2` to nginx, so a `/v1` credential must not match it.
  matchHoldsUnderEveryReadingOfThePath: ({ table, request, resolution }) => {
    if (resolution._tag !== 'Matched') return true
    const host = parseHost(request.host)
    if (E.isLeft(host)) return false
    const own = table.routes.filter(
      (r) =>
        r.provider === resolution.provider &&
        r.connection === resolution.connection &&
        r.port === request.port &&
        (r._tag === 'ExactRoute' ? r.host === host.right : r.pattern.matches(host.right))
    )
    return modelReadings(request.path).every((reading) => own.some((r) => segmentsCover(r.prefix, reading)))
  },
  // ... and a repeated `/` never changes which credential a request gets: a server that merges it
  // must find the same route winning.
  // (A path whose readings differ in where its dot segments land is ambiguous, and only host-wide
  // routes may match it; that rule has a law of its own above.)
  matchIsTheSameWithRepeatedSlashesMerged: ({ table, request, resolution }) => {
    const canonical = modelCanonicalPath(request.path)
    if (resolution._tag !== 'Matched' || canonical.ambiguous) return true
    const merged = canonical.path.replace(/\/{2,}/g, '/')
    return JSON.stringify(resolveRoute(table, { ...request, path: merged })) === JSON.stringify(resolution)
  },
  // docs/spec.md §10: a credential is injected only where its connection's rules allow, whatever the
  // method, path or encoding.
  injectNeverOutsideTheConnectionsRules: ({ table, request, resolution, decided }) => {
    if (decided.decision._tag !== 'Inject' || resolution._tag !== 'Matched') return true
    const rules = table.routes.find((r) => r.provider === resolution.provider && r.connection === resolution.connection)?.rules
    return rules === undefined || modelAllows(rules, request.method, request.path)
  },
  // §11: report-only enforcement carries a verdict out without ever adding to it.
  reportNeverInjectsWhatEnforceWouldNot: ({ decided }) => {
    const reported = enforced('report', decided)
    return reported.decision._tag !== 'Inject' || JSON.stringify(reported.decision) === JSON.stringify(decided.decision)
  },
  reportDeniesOnlyWhatIsAlwaysEnforced: ({ decided }) => {
    const reported = enforced('report', decided).decision
    return reported._tag !== 'Deny' || reported.reason === 'unauthenticated'
  },
  reportRecordsWouldDenyExactlyWhereEnforceDenies: ({ decided }) => {
    const reported = enforced('report', decided)
    const events = (records: Decided['audit']) => records.map((r) => (r.event === 'proxy_would_deny' ? 'proxy_deny' : r.event))
    const metadata = (records: Decided['audit']) => JSON.stringify(records.map((r) => [r.provider, r.connection, r.metadata]))
    return (
      JSON.stringify(events(reported.audit)) === JSON.stringify(events(decided.audit)) &&
      metadata(reported.audit) === metadata(decided.audit) &&
      reported.audit.some((r) => r.event === 'proxy_would_deny') === (decided.decision._tag === 'Deny')
    )
  },
  enforceChangesNothing: ({ decided }) => enforced('enforce', decided) === decided,
  queryStringIrrelevant: ({ table, request, resolution }) =>
    request.path.includes('?') ||
    request.path.includes('#') ||
    JSON.stringify(resolveRoute(table, { ...request, path: `${request.path}?token=x&v=/../admin` })) === JSON.stringify(resolution)
}

