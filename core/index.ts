/**
 * egress-guard/core, which is also the package's root module: the pure policy engine
 * (docs/spec.md §8). Its surface: compile a policy into a route table, resolve and explain a
 * request, decide it. Every type is exported; internals (indexes, path helpers, audit
 * constructors) stay in their modules, out of the published surface. docs/design.md says why
 * the root module is the core.
 */
export type { AuditedRequest, AuditEvent, AuditRecord, AuditTarget } from './Audit.js'
export type { Available, CredentialOutcome, Unavailable } from './Credentials.js'
export type { Decided, DecideInput, DecideTunnelInput, Decision, Deny, DenyText, Inject, Pass, TunnelDecided, TunnelDecision } from './Decision.js'
export type { Enforcement, EnforcementError } from './Enforcement.js'
export type { Explanation, RouteExplanation } from './explainRoute.js'
export type { Authority, Host, HostError } from './Host.js'
export type { HostPattern, PatternError } from './HostPattern.js'
export type { ModeError, ProxyMode, Scope, UnmatchedPolicy } from './Mode.js'
export type { ProxyCredentials, Unauthenticated } from './ProxyAuthentication.js'
export type { CanonicalPath, PathPrefix } from './RequestPath.js'
export type { Reading, RequestFacts, RuledOutBy, Unread } from './resolveRoute.js'
export type { DenyReason, Matched, Miss, MissReason, RouteResolution } from './RouteResolution.js'
export type { Outcome, RecordedRequest } from './Replay.js'
export type { AllowInput, PathRule, RouteRules } from './RouteRules.js'
export type { BodyScan, BodyStep } from './BodyScan.js'
export type { Carried, CarriedText, KnownSecret, SecretMatcher, Swap } from './Secrets.js'
export type { ScrubRule, Scrubbed } from './Scrubbing.js'
export type { Bucket, Counted, Limits, Rate, Take } from './RateLimit.js'
export type { ApiUrls, BuiltRouteTable, ExactRoute, OAuthUrls, PolicyInput, RegexRoute, Route, RouteTable, RouteWarning, WarningCode } from './RouteTable.js'

// The route table: compile a policy, and show its routes.
export { buildRouteTable } from './buildRouteTable.js'
export { redactUrl } from './ApiUrl.js'
export { describeRoute, WARNING_SEVERITY } from './RouteTable.js'
export { compileRules } from './RouteRules.js'
export { compileHostPattern } from './HostPattern.js'
// A request: resolve it to a route, explain the resolution, decide.
export { resolveRoute } from './resolveRoute.js'
export { explainRoute } from './explainRoute.js'
export { decide, decideTunnel, denyExfiltration, denyRateLimited, denyTunnelExfiltration, denyTunnelRateLimited, failClosed } from './Decision.js'
// Rate limits: token buckets per client and per host.
export { isFull, refilled, takeTokens } from './RateLimit.js'
export { usableCredentials } from './Credentials.js'
// Modes and enforcement.
export { DEFAULT_MODE, parseMode, PROXY_MODES, scopeOf } from './Mode.js'
export { enforced, enforcedTunnel, parseEnforcement } from './Enforcement.js'
// Hosts and paths, as the core reads them.
export { isLocalHost, parseHost } from './Host.js'
export { canonicalPath } from './RequestPath.js'
// The secret in both directions: placeholders swapped, the tripwire, responses scrubbed.
export { carriedSecret, compileSecrets, REDACTED, secretParts, swapPlaceholders, withoutSecrets } from './Secrets.js'
export { pendingTail, scrub, scrubChunk, scrubRules } from './Scrubbing.js'
export { BODY_SCAN_START, scanBodyChunk } from './BodyScan.js'
// Proxy authentication.
export { parseProxyAuthorization, PROXY_AUTHENTICATE, refuseUnauthenticated } from './ProxyAuthentication.js'
