import * as E from 'fp-ts/lib/Either.js'

import { isLocalHost, parseAuthority, parseHost, type Host } from './Host.js'
import { authEndpointKey, canonicalPath, lenientPaths, mergeSlashes, prefixCovers, type CanonicalPath } from './RequestPath.js'
import { miss, notAllowed, type RouteResolution } from './RouteResolution.js'
import { allows } from './RouteRules.js'
import { hostHasRoutes, isPassthroughHost, regexRoutesMatching, type Route, type RouteTable } from './RouteTable.js'

// -------------------------------------------------------------------------------------
// model
// -------------------------------------------------------------------------------------

/** What the transport knows about a request (docs/spec.md §4, §8). */
export interface RequestFacts {
  readonly scheme: string
  /** Where the transport will connect: the CONNECT authority's host for tunnelled requests. */
  readonly host: string
  readonly port: number
  /** The request target, query included. */
  readonly path: string
  readonly method: string
  readonly hostHeader?: string
  readonly sni?: string
  readonly absoluteUriHost?: string
  readonly dialedAddress?: string
  /**
   * The client the request belongs to (docs/spec.md §9): the one that opened its tunnel, or that
   * authenticated it on the proxy port. The guard picks that client's mode and routes; the core
   * resolves against the table it is given.
   */
  readonly client?: string
}

// -------------------------------------------------------------------------------------
// steps
// -------------------------------------------------------------------------------------

const isValidPort = (port: unknown): port is number => Number.isInteger(port) && (port as number) > 0 && (port as number) <= 65535

const namesOtherHost = (claimed: E.Either<unknown, { readonly host: Host }>, host: Host): boolean =>
  E.isLeft(claimed) || claimed.right.host !== host

// Step 2: every name the request carries must be the destination; an unreadable one is a mismatch.
const hasHostMismatch = (request: RequestFacts, host: Host): boolean =>
  (request.hostHeader !== undefined && namesOtherHost(parseAuthority(request.hostHeader), host)) ||
  (request.absoluteUriHost !== undefined && namesOtherHost(parseAuthority(request.absoluteUriHost), host)) ||
  (request.sni !== undefined && namesOtherHost(E.map((h: Host) => ({ host: h }))(parseHost(request.sni)), host))

// Step 6.
const unmatched = (table: RouteTable, host: Host): RouteResolution =>
  miss(isPassthroughHost(table, host) ? 'passthrough' : 'no_match')

// Step 5, auth endpoints: compared on the canonical path, and also on the readings of upstreams
// that merge repeated `/` before removing dot segments, decode separators or drop `;` parameters.
const authKeysOf = (target: string, path: CanonicalPath): ReadonlyArray<string> => {
  const keys = new Set([authEndpointKey(path.path)])
  if (path.mergedReading !== undefined) keys.add(authEndpointKey(path.mergedReading))
  for (const reading of lenientPaths(target)) keys.add(authEndpointKey(reading))
  return [...keys]
}

const hitsAuthPath = (route: Route, keys: ReadonlyArray<string>): boolean => keys.some((k) => route.authPaths.includes(k))

const NO_ROUTES: ReadonlyArray<Route> = []

// Step 7: longest prefix first, then exact over regex; a tie between different targets is ambiguous.
class Ranking {
  best: Route | undefined = undefined
  length = -1
  tie = false

  offer(route: Route, path: CanonicalPath): void {
    if (!routeCovers(route, path)) return
    const best = this.best
    const length = route.prefix.length
    if (best === undefined || length > this.length || (length === this.length && route._tag === 'ExactRoute' && best._tag === 'RegexRoute')) {
      this.best = route
      this.length = length
      this.tie = false
    } else if (length === this.length && route._tag === best._tag) {
      this.tie ||= route.provider !== best.provider || route.connection !== best.connection
    }
  }
}

// -------------------------------------------------------------------------------------
// resolution
// -------------------------------------------------------------------------------------

/** The check that ruled a route, or the whole request, out (`egress-guard explain`), in the order they are made. */
export type RuledOutBy = 'host' | 'destination' | 'host_mismatch' | 'scheme' | 'port' | 'path' | 'auth_endpoint' | 'precedence' | 'ambiguous' | 'rules'

/** A request as resolution reads it once steps 1–4 pass: the destination, port and canonical path. */
export interface Reading {
  readonly _tag: 'Reading'
  readonly host: Host
  readonly port: number
  readonly path: CanonicalPath
}

/** A request resolved before any route is compared (steps 1–4), with the check that decided it. */
export interface Unread {
  readonly _tag: 'Unread'
  readonly resolution: RouteResolution
  /** The parsed destination, when it could be read. */
  readonly host: Host | undefined
  readonly by: RuledOutBy
  readonly why: string
}

const unread = (resolution: RouteResolution, host: Host | undefined, by: RuledOutBy, why: string): Unread => ({ _tag: 'Unread', resolution, host, by, why })

/** Steps 1–4: the request's destination, names, scheme, port and path, read once for every route. */
export const readRequest = (table: RouteTable, request: RequestFacts): Reading | Unread => {
  // Step 1: the destination, and where the transport really dials.
  const parsed = parseHost(request.host)
  if (E.isLeft(parsed)) return unread(miss('no_match'), undefined, 'host', `\`${String(request.host)}\` is not a valid host`)
  const host = parsed.right
  if (isLocalHost(host)) return unread(miss('local_destination'), host, 'destination', `\`${host}\` is a local address: local destinations never receive credentials`)
  if (request.dialedAddress !== undefined) {
    const dialed = parseHost(request.dialedAddress)
    // INVARIANT: an address we cannot read counts as local, so it never receives credentials.
    if (E.isLeft(dialed) || isLocalHost(dialed.right)) return unread(miss('local_destination'), host, 'destination', 'the address dialled is local (or unreadable): local destinations never receive credentials')
  }
  // Step 2.
  if (hasHostMismatch(request, host)) return unread(miss('host_mismatch'), host, 'host_mismatch', `the Host header, TLS name or absolute URI names another host than \`${host}\``)
  // Step 3.
  const path = canonicalPath(request.path)
  // Step 4: credentials never go over clear text.
  const scheme = typeof request.scheme === 'string' ? request.scheme : ''
  if (scheme !== 'https' && scheme.toLowerCase() !== 'https') {
    return unread(hostHasRoutes(table, host) ? miss('insecure_scheme') : unmatched(table, host), host, 'scheme', `scheme is \`${scheme}\`: credentials only go over https`)
  }
  const port = request.port
  if (!isValidPort(port)) return unread(unmatched(table, host), host, 'port', `port ${String(port)} is not a port number`)
  if (path.opaque) return unread(unmatched(table, host), host, 'path', 'the request target is not a path')
  return { _tag: 'Reading', host, port, path }
}

/** Whether a route's prefix covers the path (a route without a prefix covers every path; an ambiguous path no prefix). */
export const routeCovers = (route: Route, path: CanonicalPath): boolean => route.prefix === '' || (!path.ambiguous && prefixCovers(route.prefix, path.path))

/** Steps 5–7 on a request read by `readRequest`. */
export const resolveReading = (table: RouteTable, reading: Reading, request: RequestFacts): RouteResolution => {
  const { host, port, path } = reading
  // Step 5: candidates on this host and port; auth endpoints first, then path prefixes.
  const exact = table.exact.get(host)
  const regex = port === 443 ? regexRoutesMatching(table, host) : NO_ROUTES
  let authKeys: ReadonlyArray<string> | undefined
  if (exact !== undefined) {
    for (const route of exact) {
      if (route.port === port && route.authPaths.length > 0 && hitsAuthPath(route, (authKeys ??= authKeysOf(request.path, path)))) return miss('auth_endpoint')
    }
  }
  for (const route of regex) {
    if (route.authPaths.length > 0 && hitsAuthPath(route, (authKeys ??= authKeysOf(request.path, path)))) return miss('auth_endpoint')
  }

  const rank = (reading: CanonicalPath): Ranking => {
    const ranking = new Ranking()
    if (exact !== undefined) for (const route of exact) if (route.port === port) ranking.offer(route, reading)
    for (const route of regex) ranking.offer(route, reading)
    return ranking
  }
  const ranking = rank(path)
  // INVARIANT: a repeated `/` must not change the winner: servers that merge it read `/v1//b/x`
  // as `/v1/b/x`, where a longer route (another credential) may be the one that applies.
  if (path.path.includes('//') && !sameOutcome(ranking, rank({ ...path, path: mergeSlashes(path.path) }))) return miss('ambiguous')

  // Steps 6 and 7.
  const best = ranking.best
  if (best === undefined) return unmatched(table, host)
  if (ranking.tie) return miss('ambiguous')
  // docs/spec.md §10: the matched connection's rules have the last word; outside them, no credentials.
  if (best.rules !== undefined && !allows(best.rules, typeof request.method === 'string' ? request.method : '', path)) return notAllowed(best.provider, best.connection)
  return best.matched
}

const resolveUnsafe = (table: RouteTable, request: RequestFacts): RouteResolution => {
  const reading = readRequest(table, request)
  return reading._tag === 'Unread' ? reading.resolution : resolveReading(table, reading, request)
}

const sameOutcome = (a: Ranking, b: Ranking): boolean =>
  a.tie === b.tie && a.best?.provider === b.best?.provider && a.best?.connection === b.best?.connection

/**
 * Resolves a request to a provider's connection or a reason it has none (docs/spec.md §4); never throws.
 *
 * @example
 * const { table } = buildRouteTable({ providers: [{ name: 'openai', apiUrl: 'https://api.openai.com/v1' }],
 *   connections: [{ provider: 'openai', name: 'default' }] }, 'connected')
 * resolveRoute(table, { scheme: 'https', host: 'API.OpenAI.com.', port: 443, path: '/v1/models', method: 'GET' })
 * // => { _tag: 'Matched', provider: 'openai', connection: 'default' }
 */
export const resolveRoute = (table: RouteTable, request: RequestFacts): RouteResolution => {
  try {
    return resolveUnsafe(table, request)
  } catch {
    return miss('internal_error')
  }
}
