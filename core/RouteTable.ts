import * as E from 'fp-ts/lib/Either.js'

import { isLocalHost, parseHost, type Host } from './Host.js'
import { compileHostPattern, overbroadWitness, type HostPattern, type PatternError } from './HostPattern.js'
import type { Scope } from './Mode.js'
import { authEndpointKey, canonicalPath, pathPrefixOf, type PathPrefix } from './RequestPath.js'
import { matched, type Matched } from './RouteResolution.js'
import { compileRules, type AllowInput, type RouteRules } from './RouteRules.js'
import { buildSuffixIndex, valuesWithSuffixOf, type SuffixIndex } from './SuffixIndex.js'

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
// API URL parsing
// -------------------------------------------------------------------------------------

type RouteTarget =
  | { readonly _tag: 'Exact'; readonly host: Host; readonly port: number; readonly prefix: PathPrefix }
  | { readonly _tag: 'Regex'; readonly pattern: HostPattern }

interface Problem {
  readonly code: WarningCode
  readonly detail: string
}

/** An API URL as it may be shown: no user info, no query, no fragment, at most 120 characters. */
export const redactUrl = (url: string): string => {
  // User info ends at the last `@` (a password may hold `@` or `/`); query and fragment go too.
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(url)?.[0] ?? ''
  const at = url.lastIndexOf('@')
  const rest = at >= 0 ? url.slice(at + 1) : url.slice(scheme.length)
  const cut = `${scheme}${rest}`.replace(/[?#].*$/s, '')
  return cut.length > 120 ? `${cut.slice(0, 120)}…` : cut
}

/** A `regex:` source as it may be shown: patterns hold `?` and `#`, so they are only shortened. */
const shownPattern = (source: string): string => (source.length > 120 ? `${source.slice(0, 120)}…` : source)

const patternProblem = (source: string, error: PatternError): Problem => {
  const shown = shownPattern(source)
  switch (error._tag) {
    case 'EmptyPattern':
      return { code: 'invalid_pattern', detail: 'empty `regex:` pattern skipped: write a host regex after `regex:`' }
    case 'InvalidPattern':
      return { code: 'invalid_pattern', detail: `pattern \`${shown}\` skipped: ${error.message}` }
    case 'CatastrophicPattern':
      return {
        code: 'invalid_pattern',
        detail: `pattern \`${shown}\` skipped: it can backtrack catastrophically; avoid nesting repetition, e.g. use \`(?:[a-z0-9-]+\\.)?\` rather than \`(.*\\.)*\``
      }
  }
}

const SCHEME = /^([a-z][a-z0-9+.-]*):\/\//i

const parseApiUrl = (value: unknown): E.Either<Problem, RouteTarget> => {
  if (typeof value !== 'string') return E.left({ code: 'invalid_url', detail: 'API URL skipped: it is not a string' })
  const text = value.trim()
  if (text.startsWith('regex:')) {
    const source = text.slice('regex:'.length).trim()
    const compiled = compileHostPattern(source)
    return E.isLeft(compiled) ? E.left(patternProblem(source, compiled.left)) : E.right({ _tag: 'Regex', pattern: compiled.right })
  }
  const shown = redactUrl(text)
  const scheme = SCHEME.exec(text)?.[1]?.toLowerCase()
  if (scheme === 'http') {
    return E.left({ code: 'insecure_url', detail: `API URL \`${shown}\` skipped: credentials are only sent over https` })
  }
  if (scheme !== undefined && scheme !== 'https') {
    return E.left({ code: 'invalid_url', detail: `API URL \`${shown}\` skipped: the scheme must be https` })
  }
  let url: URL
  try {
    url = new URL(scheme === undefined ? `https://${text}` : text)
  } catch {
    return E.left({ code: 'invalid_url', detail: `API URL \`${shown}\` skipped: it is not a URL or host[:port][/path]` })
  }
  if (url.username !== '' || url.password !== '') {
    return E.left({ code: 'invalid_url', detail: `API URL \`${shown}\` skipped: remove the user info; credentials belong in connections` })
  }
  const host = parseHost(url.hostname)
  if (E.isLeft(host)) return E.left({ code: 'invalid_url', detail: `API URL \`${shown}\` skipped: its host is not valid` })
  if (isLocalHost(host.right)) {
    return E.left({ code: 'local_host', detail: `API URL \`${shown}\` skipped: local hosts never receive credentials` })
  }
  return E.right({ _tag: 'Exact', host: host.right, port: url.port === '' ? 443 : Number(url.port), prefix: pathPrefixOf(url.pathname) })
}

interface AuthEndpoint {
  readonly host: Host
  readonly key: string
}

const parseAuthEndpoint = (value: unknown): E.Either<Problem, AuthEndpoint> => {
  const shown = typeof value === 'string' ? redactUrl(value) : String(typeof value)
  const problem: Problem = { code: 'invalid_url', detail: `OAuth URL \`${shown}\` ignored: it must be an absolute URL` }
  if (typeof value !== 'string') return E.left(problem)
  let url: URL
  try {
    url = new URL(value)
  } catch {
    return E.left(problem)
  }
  const host = parseHost(url.hostname)
  return E.isLeft(host) ? E.left(problem) : E.right({ host: host.right, key: authEndpointKey(canonicalPath(url.pathname).path) })
}

// -------------------------------------------------------------------------------------
// policy reading (defensive: the input may not match its type at run time)
// -------------------------------------------------------------------------------------

type Dict = Readonly<Record<string, unknown>>

const isDict = (value: unknown): value is Dict => typeof value === 'object' && value !== null && !Array.isArray(value)

const listOf = (value: unknown): ReadonlyArray<unknown> => (Array.isArray(value) ? value : [])

const isDefaultConnection = (connection: Dict): boolean =>
  connection['isDefault'] === true || (typeof connection['isDefault'] !== 'boolean' && connection['name'] === 'default')

const OAUTH_FIELDS = ['authorizationUrl', 'tokenUrl', 'revocationUrl', 'deviceAuthorizationUrl'] as const

/** One-line description of a route, for warnings and explanations. */
export const describeRoute = (route: Route): string =>
  route._tag === 'ExactRoute'
    ? `${route.provider}/${route.connection} ${route.host}:${route.port}${route.prefix}`
    : `${route.provider}/${route.connection} regex:${route.pattern.source}`

// -------------------------------------------------------------------------------------
// analysis
// -------------------------------------------------------------------------------------

const pairOf = (route: Route): string => `${route.provider}/${route.connection}`

const groupBy = <A>(items: ReadonlyArray<A>, key: (a: A) => string | undefined): Map<string, Array<A>> => {
  const groups = new Map<string, Array<A>>()
  for (const item of items) {
    const k = key(item)
    if (k === undefined) continue
    const group = groups.get(k)
    if (group === undefined) groups.set(k, [item])
    else group.push(item)
  }
  return groups
}

const exactKey = (host: string, port: number, prefix: string): string => `${host}:${port}${prefix}`

const overlapWarnings = (routes: ReadonlyArray<Route>): Array<RouteWarning> => {
  const warnings: Array<RouteWarning> = []
  const exactRoutes = routes.filter((r): r is ExactRoute => r._tag === 'ExactRoute')
  const regexRoutes = routes.filter((r): r is RegexRoute => r._tag === 'RegexRoute')
  const ambiguous = (where: string, group: ReadonlyArray<Route>): void => {
    const pairs = [...new Set(group.map(pairOf))]
    if (pairs.length > 1) {
      warnings.push({
        code: 'ambiguous_routes',
        detail: `${where} is routed to ${pairs.join(' and ')}: requests there resolve as ambiguous; keep one`
      })
    }
  }
  const exactGroups = groupBy(exactRoutes, (r) => exactKey(r.host, r.port, r.prefix))
  for (const [where, group] of exactGroups) ambiguous(`\`${where}\``, group)
  for (const [source, group] of groupBy(regexRoutes, (r) => r.pattern.source.toLowerCase())) {
    ambiguous(`\`regex:${source}\``, group)
  }
  const literalRegexes = regexRoutes.filter((r) => r.pattern.literalHost !== undefined)
  for (const route of literalRegexes) {
    const winner = exactGroups.get(exactKey(route.pattern.literalHost ?? '', 443, ''))?.[0]
    if (winner !== undefined) {
      warnings.push({
        code: 'shadowed_route',
        provider: route.provider,
        detail: `\`regex:${route.pattern.source}\` only matches \`${route.pattern.literalHost}\`, where the exact route ${describeRoute(winner)} always wins; remove it`
      })
    }
  }
  const unshadowed = literalRegexes.filter((r) => !exactGroups.has(exactKey(r.pattern.literalHost ?? '', 443, '')))
  for (const [host, group] of groupBy(unshadowed, (r) => r.pattern.literalHost)) {
    if (new Set(group.map((r) => r.pattern.source.toLowerCase())).size > 1) ambiguous(`\`${host}\``, group)
  }
  return warnings
}

// -------------------------------------------------------------------------------------
// constructors
// -------------------------------------------------------------------------------------

const buildUnsafe = (policy: PolicyInput, scope: Scope): BuiltRouteTable => {
  const warnings: Array<RouteWarning> = []
  const input: unknown = policy
  const providers = listOf(isDict(input) ? input['providers'] : undefined)
  const connections = listOf(isDict(input) ? input['connections'] : undefined)
  const connectionsOf = new Map<string, Array<Dict>>()
  for (const [i, connection] of connections.entries()) {
    if (!isDict(connection) || typeof connection['provider'] !== 'string' || typeof connection['name'] !== 'string') {
      warnings.push({ code: 'invalid_policy', detail: `connection #${i} skipped: it needs a string \`provider\` and \`name\`` })
      continue
    }
    const list = connectionsOf.get(connection['provider']) ?? []
    list.push(connection)
    connectionsOf.set(connection['provider'], list)
  }

  const routes: Array<Route> = []
  const seen = new Set<string>()
  for (const [i, provider] of providers.entries()) {
    const name = isDict(provider) ? provider['name'] : undefined
    if (!isDict(provider) || typeof name !== 'string' || name === '') {
      warnings.push({ code: 'invalid_policy', detail: `provider #${i} skipped: it needs a non-empty string \`name\`` })
      continue
    }
    if (seen.has(name)) {
      warnings.push({ code: 'duplicate_provider', provider: name, detail: `provider \`${name}\` is configured twice; the first one is used` })
      continue
    }
    seen.add(name)
    const defaults = (connectionsOf.get(name) ?? []).filter(isDefaultConnection)
    if (defaults.length > 1) {
      warnings.push({
        code: 'conflicting_defaults',
        provider: name,
        detail: `provider \`${name}\` skipped: connections ${defaults.map((c) => `\`${String(c['name'])}\``).join(', ')} are all marked default; keep one`
      })
      continue
    }
    const connection = defaults[0]
    if (connection === undefined && scope !== 'configured') continue
    const connectionName = typeof connection?.['name'] === 'string' ? connection['name'] : 'default'
    const allow = connection?.['allow']
    const rules = allow === undefined ? E.right(undefined) : isDict(allow) ? compileRules(allow as AllowInput) : E.left('write `allow: {methods: [...], paths: [...]}`')
    if (E.isLeft(rules)) {
      // INVARIANT: a connection whose rules cannot be read gets no routes at all, never unrestricted ones.
      warnings.push({ code: 'invalid_rule', provider: name, detail: `provider \`${name}\` skipped: connection \`${connectionName}\` allow: ${rules.left}` })
      continue
    }
    const apiUrl = connection !== undefined && connection['apiUrl'] !== undefined ? connection['apiUrl'] : provider['apiUrl']
    const urls = apiUrl === undefined ? [] : Array.isArray(apiUrl) ? apiUrl : [apiUrl]

    const endpoints: Array<AuthEndpoint> = []
    const oauth = provider['oauth']
    if (isDict(oauth)) {
      for (const field of OAUTH_FIELDS) {
        if (oauth[field] === undefined) continue
        const endpoint = parseAuthEndpoint(oauth[field])
        if (E.isRight(endpoint)) endpoints.push(endpoint.right)
        else warnings.push({ ...endpoint.left, provider: name })
      }
    }

    const target = matched(name, connectionName)
    for (const url of urls) {
      const parsed = parseApiUrl(url)
      if (E.isLeft(parsed)) {
        warnings.push({ ...parsed.left, provider: name })
        continue
      }
      const text = String(url).trim()
      const common = { provider: name, connection: connectionName, source: text.startsWith('regex:') ? shownPattern(text) : redactUrl(text), matched: target, rules: rules.right }
      if (parsed.right._tag === 'Exact') {
        const { host, port, prefix } = parsed.right
        const authPaths = endpoints.filter((e) => e.host === host).map((e) => e.key)
        routes.push({ _tag: 'ExactRoute', ...common, host, port, prefix, authPaths })
      } else {
        const { pattern } = parsed.right
        const witness = overbroadWitness(pattern)
        if (witness !== undefined) {
          warnings.push({
            code: 'overbroad_pattern',
            provider: name,
            detail: `pattern \`${shownPattern(pattern.source)}\` also matches the look-alike host \`${witness}\`; anchor it, e.g. \`(?:[a-z0-9-]+\\.)?example\\.com\``
          })
        }
        const authPaths = endpoints.filter((e) => pattern.matches(e.host)).map((e) => e.key)
        routes.push({ _tag: 'RegexRoute', ...common, pattern, port: 443, prefix: '' as PathPrefix, authPaths })
      }
    }
  }

  for (const [provider, list] of connectionsOf) {
    if (!seen.has(provider)) {
      warnings.push({
        code: 'unknown_provider',
        provider,
        detail: `connection${list.length > 1 ? 's' : ''} ${list.map((c) => `\`${String(c['name'])}\``).join(', ')} name provider \`${provider}\`, which is not configured; ignored`
      })
    }
  }

  const passthroughHosts = new Set<string>()
  const passthroughPatterns: Array<HostPattern> = []
  const passthrough = isDict(input) ? input['passthrough'] : undefined
  for (const entry of listOf(passthrough)) {
    if (typeof entry === 'string' && entry.trim().startsWith('regex:')) {
      const source = entry.trim().slice('regex:'.length).trim()
      const compiled = compileHostPattern(source)
      if (E.isRight(compiled)) passthroughPatterns.push(compiled.right)
      else warnings.push(patternProblem(source, compiled.left))
      continue
    }
    const host = parseHost(entry)
    if (E.isRight(host)) passthroughHosts.add(host.right)
    else {
      warnings.push({
        code: 'invalid_url',
        detail: `passthrough entry \`${typeof entry === 'string' ? redactUrl(entry) : typeof entry}\` skipped: write a bare host name or \`regex:<pattern>\``
      })
    }
  }
  if (passthrough !== undefined && !Array.isArray(passthrough)) {
    warnings.push({ code: 'invalid_policy', detail: '`passthrough` ignored: it must be a list of hosts' })
  }

  warnings.push(...overlapWarnings(routes))

  const exact = new Map<string, Array<ExactRoute>>()
  for (const route of routes) {
    if (route._tag !== 'ExactRoute') continue
    const list = exact.get(route.host) ?? []
    list.push(route)
    exact.set(route.host, list)
  }
  const regex = buildSuffixIndex(
    routes.filter((r): r is RegexRoute => r._tag === 'RegexRoute').map((r) => [r.pattern.literalSuffix, r] as const)
  )
  return { table: { routes, exact, regex, passthroughHosts, passthroughPatterns }, warnings }
}

/** A table with no routes. */
export const emptyRouteTable: RouteTable = {
  routes: [],
  exact: new Map(),
  regex: buildSuffixIndex([]),
  passthroughHosts: new Set(),
  passthroughPatterns: []
}

/** Compiles a policy into a route table (docs/spec.md §3); never throws, reports what it skipped as warnings. */
export const buildRouteTable = (policy: PolicyInput, scope: Scope): BuiltRouteTable => {
  try {
    return buildUnsafe(policy, scope)
  } catch {
    // INVARIANT: a policy we cannot read yields no routes, so nothing is ever injected from it.
    return { table: emptyRouteTable, warnings: [{ code: 'invalid_policy', detail: 'policy could not be read; no routes were built' }] }
  }
}

// -------------------------------------------------------------------------------------
// destructors
// -------------------------------------------------------------------------------------

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
