import * as E from 'fp-ts/lib/Either.js'

import { parseApiUrl, parseAuthEndpoint, patternProblem, redactUrl, shownPattern, type AuthEndpoint } from './ApiUrl.js'
import { parseHost } from './Host.js'
import { compileHostPattern, overbroadWitness, type HostPattern } from './HostPattern.js'
import type { Scope } from './Mode.js'
import type { PathPrefix } from './RequestPath.js'
import { matched } from './RouteResolution.js'
import { compileRules, type AllowInput } from './RouteRules.js'
import { overlapWarnings } from './routeOverlaps.js'
import { emptyRouteTable, type BuiltRouteTable, type ExactRoute, type PolicyInput, type RegexRoute, type Route, type RouteWarning } from './RouteTable.js'
import { buildSuffixIndex } from './SuffixIndex.js'

// A policy compiled into a route table (docs/spec.md §3). The policy is read defensively: its
// type is a promise the caller may not keep at run time, so every field is checked as it is read,
// and what cannot be used is skipped with a warning.

type Dict = Readonly<Record<string, unknown>>

const isDict = (value: unknown): value is Dict => typeof value === 'object' && value !== null && !Array.isArray(value)

const listOf = (value: unknown): ReadonlyArray<unknown> => (Array.isArray(value) ? value : [])

const isDefaultConnection = (connection: Dict): boolean =>
  connection['isDefault'] === true || (typeof connection['isDefault'] !== 'boolean' && connection['name'] === 'default')

const OAUTH_FIELDS = ['authorizationUrl', 'tokenUrl', 'revocationUrl', 'deviceAuthorizationUrl'] as const

const buildUnsafe = (policy: PolicyInput, scope: Scope, selection: ReadonlyMap<string, string> | undefined): BuiltRouteTable => {
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
    // A client's selection (docs/spec.md §9) routes only the providers it names, each through the
    // connection it names; without one, each provider's default connection is routed.
    const selected = selection?.get(name)
    if (selection !== undefined && selected === undefined) continue
    const defaults = (connectionsOf.get(name) ?? []).filter(selected === undefined ? isDefaultConnection : (c) => c['name'] === selected)
    if (selected !== undefined && defaults.length === 0) {
      warnings.push({ code: 'invalid_policy', provider: name, detail: `provider \`${name}\` has no connection \`${selected}\`; a client names it` })
      continue
    }
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

/**
 * Compiles a policy into a route table (docs/spec.md §3); never throws, reports what it skipped as
 * warnings. `selection` (provider → connection name) is a client's `connections` (§9): only those
 * providers are routed, each through the connection named, whatever the scope.
 */
export const buildRouteTable = (policy: PolicyInput, scope: Scope, selection?: ReadonlyMap<string, string>): BuiltRouteTable => {
  try {
    return buildUnsafe(policy, scope, selection)
  } catch {
    // INVARIANT: a policy we cannot read yields no routes, so nothing is ever injected from it.
    return { table: emptyRouteTable, warnings: [{ code: 'invalid_policy', detail: 'policy could not be read; no routes were built' }] }
  }
}
