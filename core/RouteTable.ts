import type { Host } from './Host.js'
import type { HostPattern } from './HostPattern.js'
import type { PathPrefix } from './RequestPath.js'
import type { Matched } from './RouteResolution.js'
import type { AllowInput, RouteRules } from './RouteRules.js'
import { buildSuffixIndex, valuesWithSuffixOf, type SuffixIndex } from './SuffixIndex.js'

// The route table: what a policy compiles to (buildRouteTable.ts), and the questions resolution
// asks of it.

// -------------------------------------------------------------------------------------
// model
// -------------------------------------------------------------------------------------

/** One or several API URLs: `https://host[:port]/path`, bare `host[:port][/path]`, or `regex:<pattern>`. */
export type ApiUrls = string | ReadonlyArray<string>

/** The provider OAuth URLs whose paths are auth endpoints of the provider's routes. */
export interface OAuthUrls {
  readonly authorizationUrl?: string
  readonly tokenUrl?: string
  readonly revocationUrl?: string
  readonly deviceAuthorizationUrl?: string
}

/** What the route table is built from (docs/spec.md §8). */
export interface PolicyInput {
  readonly providers: ReadonlyArray<{ readonly name: string; readonly apiUrl?: ApiUrls; readonly oauth?: OAuthUrls }>
  readonly connections: ReadonlyArray<{
    readonly provider: string
    readonly name: string
    readonly isDefault?: boolean
    readonly apiUrl?: ApiUrls
    /** Where this connection's credential may be used (docs/spec.md §10); absent: wherever it is routed. */
    readonly allow?: AllowInput
  }>
  /** Hosts (exact, or `regex:`) allowed untouched in deny modes. */
  readonly passthrough?: ReadonlyArray<string>
}

/** Stable codes of route-table warnings. */
export type WarningCode =
  | 'invalid_pattern'
  | 'overbroad_pattern'
  | 'local_host'
  | 'conflicting_defaults'
  | 'ambiguous_routes'
  | 'shadowed_route'
  | 'invalid_url'
  | 'insecure_url'
  | 'unknown_provider'
  | 'duplicate_provider'
  | 'invalid_policy'
  | 'invalid_rule'

/**
 * What each warning code weighs, in one place: an `error` is something the policy says that cannot
 * be carried out (a policy file with one is refused); a `warning` deserves a second look.
 */
export const WARNING_SEVERITY: Readonly<Record<WarningCode, 'error' | 'warning'>> = {
  invalid_pattern: 'error',
  invalid_url: 'error',
  insecure_url: 'error',
  conflicting_defaults: 'error',
  unknown_provider: 'error',
  duplicate_provider: 'error',
  invalid_policy: 'error',
  invalid_rule: 'error',
  overbroad_pattern: 'warning',
  local_host: 'warning',
  ambiguous_routes: 'warning',
  shadowed_route: 'warning'
}

/** Something in the policy that was skipped or deserves a second look. */
export interface RouteWarning {
  readonly code: WarningCode
  readonly provider?: string
  readonly detail: string
}

interface RouteCommon {
  readonly provider: string
  readonly connection: string
  /** The API URL the route came from, without query or user info. */
  readonly source: string
  /** Auth endpoint paths (compared as `authEndpointKey`) on this route's host. */
  readonly authPaths: ReadonlyArray<string>
  /** The resolution this route yields, allocated once. */
  readonly matched: Matched
  /** Its connection's rules (docs/spec.md §10), or undefined when it has none. */
  readonly rules: RouteRules | undefined
}

/** A route for one host and port, optionally limited to a path prefix. */
export interface ExactRoute extends RouteCommon {
  readonly _tag: 'ExactRoute'
  readonly host: Host
  readonly port: number
  readonly prefix: PathPrefix
}

/** A route for every host a pattern fully matches, on port 443. */
export interface RegexRoute extends RouteCommon {
  readonly _tag: 'RegexRoute'
  readonly pattern: HostPattern
  readonly port: 443
  readonly prefix: PathPrefix
}

/** A compiled route. */
export type Route = ExactRoute | RegexRoute

/** The compiled route table: routes plus the indexes resolution uses. */
export interface RouteTable {
  readonly routes: ReadonlyArray<Route>
  readonly exact: ReadonlyMap<string, ReadonlyArray<ExactRoute>>
  readonly regex: SuffixIndex<RegexRoute>
  readonly passthroughHosts: ReadonlySet<string>
  readonly passthroughPatterns: ReadonlyArray<HostPattern>
}

/** A route table and what building it reported. */
export interface BuiltRouteTable {
  readonly table: RouteTable
  readonly warnings: ReadonlyArray<RouteWarning>
}

// -------------------------------------------------------------------------------------
// constructors and queries
// -------------------------------------------------------------------------------------

/** One-line description of a route, for warnings and explanations. */
export const describeRoute = (route: Route): string =>
  route._tag === 'ExactRoute'
    ? `${route.provider}/${route.connection} ${route.host}:${route.port}${route.prefix}`
    : `${route.provider}/${route.connection} regex:${route.pattern.source}`

/** A table with no routes. */
export const emptyRouteTable: RouteTable = {
  routes: [],
  exact: new Map(),
  regex: buildSuffixIndex([]),
  passthroughHosts: new Set(),
  passthroughPatterns: []
}

const NO_REGEX_ROUTES: ReadonlyArray<RegexRoute> = []

/** The regex routes whose pattern matches the host (any port), found through the suffix index. */
export const regexRoutesMatching = (table: RouteTable, host: Host): ReadonlyArray<RegexRoute> => {
  if (table.regex.size === 0) return NO_REGEX_ROUTES
  const candidates = valuesWithSuffixOf(table.regex, host)
  return candidates.length === 0 ? candidates : candidates.filter((route) => route.pattern.matches(host))
}

/** True when any route's host matches the host, on any port. */
export const hostHasRoutes = (table: RouteTable, host: Host): boolean =>
  table.exact.has(host) || regexRoutesMatching(table, host).length > 0

/** True when routes exist for the host on this port (exact routes on their port, regex routes on 443). */
export const hostHasRoutesOnPort = (table: RouteTable, host: Host, port: number): boolean =>
  (table.exact.get(host) ?? []).some((r) => r.port === port) || (port === 443 && regexRoutesMatching(table, host).length > 0)

/** True when the host is in the policy's passthrough list. */
export const isPassthroughHost = (table: RouteTable, host: Host): boolean =>
  table.passthroughHosts.has(host) || table.passthroughPatterns.some((p) => p.matches(host))
