// The reference model of docs/spec.md §4: a linear scan over every route with the plainest code that
// states the rules. It shares only host parsing with the core (tested on its own against the
// WHATWG URL parser); path canonicalisation, prefix matching, candidate choice and ranking are
// written again here, differently, so the differential tests compare two readings of the spec.
import * as E from 'fp-ts/lib/Either.js'

import { isLocalHost, parseAuthority, parseHost } from '../../core/Host.js'
import type { RequestFacts } from '../../core/resolveRoute.js'
import type { RouteResolution } from '../../core/RouteResolution.js'
import type { Route, RouteTable } from '../../core/RouteTable.js'
import type { RouteRules } from '../../core/RouteRules.js'

/** RFC 3986 §5.2.4, the input-buffer algorithm, on a path whose unreserved escapes are decoded. */
const removeDots = (path: string): string => {
  let input = path
  let output = ''
  const dropLast = () => {
    output = output.slice(0, Math.max(0, output.lastIndexOf('/')))
  }
  while (input.length > 0) {
    if (input.startsWith('/./')) input = input.slice(2)
    else if (input === '/.') input = '/'
    else if (input.startsWith('/../')) {
      input = input.slice(3)
      dropLast()
    } else if (input === '/..') {
      input = '/'
      dropLast()
    } else {
      const segment = /^\/[^/]*/.exec(input)?.[0] ?? input
      output += segment
      input = input.slice(segment.length)
    }
  }
  return output
}

const merged = (path: string): string => {
  let out = path
  while (out.includes('//')) out = out.split('//').join('/')
  return out
}

/**
 * The canonical path, and whether upstreams may read it differently: an encoded or backslash
 * separator, `;` on a dot segment or alone in one beside dot segments, or dot segments that land elsewhere once repeated `/` are
 * merged first (nginx, Go, most frameworks) than under RFC 3986 alone.
 */
export const modelCanonicalPath = (target: string): { path: string; ambiguous: boolean; opaque: boolean } => {
  const raw = target.split(/[?#]/)[0] ?? ''
  if (raw === '') return { path: '/', ambiguous: false, opaque: false }
  if (!raw.startsWith('/')) return { path: raw, ambiguous: false, opaque: true }
  const decoded = raw.replace(/%[0-9a-fA-F]{2}/g, (m) => {
    const c = String.fromCharCode(parseInt(m.slice(1), 16))
    return /[A-Za-z0-9._~-]/.test(c) ? c : m.toUpperCase()
  })
  const path = removeDots(decoded)
  const readingsDiffer = merged(path) !== removeDots(merged(decoded))
  // A segment of parameters alone is empty to an upstream that drops parameters: with a dot segment
  // anywhere in the path, its `..` may land elsewhere there.
  const emptiedSegment = /\/(;|%3b)/i.test(raw) && /\/\.|%2e/i.test(raw)
  const ambiguous = /%2f|%5c|\\/i.test(raw) || /(^|\/)(\.|%2e){1,2}(;|%3b)/i.test(raw) || emptiedSegment || readingsDiffer
  return { path, ambiguous, opaque: false }
}

/**
 * Every reading of a request path an upstream may take: RFC 3986, repeated `/` merged first, and
 * both again with encoded and backslash separators decoded and `;` parameters dropped.
 */
export const modelReadings = (target: string): ReadonlyArray<string> => {
  const raw = target.split(/[?#]/)[0] ?? ''
  const lenientRaw = raw.replace(/%2f|%5c|\\/gi, '/').replace(/%3b/gi, ';').replace(/;[^/]*/g, '')
  return [raw, merged(raw), lenientRaw, merged(lenientRaw)].map((r) => modelCanonicalPath(r).path)
}

/** True when a route prefix covers a path segment by segment. */
export const segmentsCover = (prefix: string, path: string): boolean => {
  if (prefix === '') return true
  const want = prefix.split('/')
  const have = path.split('/')
  return want.every((segment, i) => have[i] === segment)
}

const authKey = (path: string): string => {
  let key = path
  while (key.includes('//')) key = key.replace('//', '/')
  return key !== '/' && key.endsWith('/') ? key.slice(0, -1) : key
}

const hostMatches = (route: Route, host: string): boolean =>
  route._tag === 'ExactRoute' ? route.host === host : route.pattern.matches(host)

const portMatches = (route: Route, port: number): boolean => route.port === port

const sameHost = (text: string | undefined, host: string, withPort: boolean): boolean => {
  if (text === undefined) return true
  const parsed = withPort ? E.map((a: { host: string }) => a.host)(parseAuthority(text)) : parseHost(text)
  return E.isRight(parsed) && parsed.right === host
}

/** The expected resolution of a request, by linear scan. */
export const referenceResolve = (table: RouteTable, request: RequestFacts): RouteResolution => {
  const miss = (reason: Extract<RouteResolution, { _tag: 'Miss' }>['reason']): RouteResolution => ({ _tag: 'Miss', reason })
  const parsed = parseHost(request.host)
  if (E.isLeft(parsed)) return miss('no_match')
  const host = parsed.right
  if (isLocalHost(host)) return miss('local_destination')
  if (request.dialedAddress !== undefined) {
    const dialed = parseHost(request.dialedAddress)
    if (E.isLeft(dialed) || isLocalHost(dialed.right)) return miss('local_destination')
  }
  if (!sameHost(request.hostHeader, host, true) || !sameHost(request.sni, host, false) || !sameHost(request.absoluteUriHost, host, true)) {
    return miss('host_mismatch')
  }
  const path = modelCanonicalPath(request.path)
  const passOrMiss = () =>
    table.passthroughHosts.has(host) || table.passthroughPatterns.some((p) => p.matches(host)) ? miss('passthrough') : miss('no_match')
  const onHost = table.routes.filter((r) => hostMatches(r, host))
  if (request.scheme.toLowerCase() !== 'https') return onHost.length > 0 ? miss('insecure_scheme') : passOrMiss()
  if (path.opaque) return passOrMiss()
  const candidates = onHost.filter((r) => portMatches(r, request.port))
  const readings = modelReadings(request.path)
  const keys = readings.map(authKey)
  if (candidates.some((r) => keys.some((k) => r.authPaths.includes(k)))) return miss('auth_endpoint')
  const choose = (reading: string): RouteResolution => {
    const covering = candidates.filter((r) => r.prefix === '' || (!path.ambiguous && segmentsCover(r.prefix, reading)))
    if (covering.length === 0) return passOrMiss()
    const rank = (r: Route) => r.prefix.length * 2 + (r._tag === 'ExactRoute' ? 1 : 0)
    const top = Math.max(...covering.map(rank))
    const best = covering.filter((r) => rank(r) === top)
    const pairs = new Set(best.map((r) => `${r.provider}\u0000${r.connection}`))
    const first = best[0]
    if (pairs.size > 1 || first === undefined) return miss('ambiguous')
    return { _tag: 'Matched', provider: first.provider, connection: first.connection }
  }
  // A repeated `/` that changes the winner once merged (as nginx and Go do) is ambiguous.
  const chosen = choose(path.path)
  if (JSON.stringify(chosen) !== JSON.stringify(choose(merged(path.path)))) return miss('ambiguous')
  if (chosen._tag !== 'Matched') return chosen
  // §10: the winning connection's rules (every route of a connection carries the same ones).
  const rules = candidates.find((r) => r.provider === chosen.provider && r.connection === chosen.connection)?.rules
  if (rules === undefined || modelAllows(rules, request.method, request.path)) return chosen
  return { _tag: 'Miss', reason: 'not_allowed', target: { provider: chosen.provider, connection: chosen.connection } }
}

/** The rules of docs/spec.md §10 by regular expressions over the canonical path, written apart from the core. */
export const modelAllows = (rules: RouteRules, method: string, target: string): boolean => {
  if (rules.methods !== undefined && !rules.methods.has(method.toUpperCase())) return false
  if (rules.paths === undefined) return true
  const path = modelCanonicalPath(target)
  if (path.ambiguous || path.opaque || path.path.includes('//')) return false
  return rules.paths.some((rule) => {
    if (rule._tag === 'Prefix') return segmentsCover(rule.prefix, path.path)
    const escape = (segment: string) => segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
    const body = rule.segments.map((segment) => (segment === '*' ? '[^/]+' : escape(segment))).join('/')
    return new RegExp(`^/${body}${rule.rest ? '(?:/.*)?' : ''}/?$`).test(path.path) || (body === '' && rule.rest)
  })
}
