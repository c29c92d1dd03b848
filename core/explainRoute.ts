import type { Host } from './Host.js'
import { readRequest, resolveReading, routeCovers, type Reading, type RequestFacts, type RuledOutBy } from './resolveRoute.js'
import { miss, type RouteResolution } from './RouteResolution.js'
import { describeRoute, type Route, type RouteTable } from './RouteTable.js'

// `egress-guard explain`: a resolution with its reasons, route by route. It runs resolveRoute's
// own steps (readRequest, then resolveReading) and reads each route against their outcome, so a
// route is marked as applying exactly when the resolution is that route's connection.

/** One route of the table and what it made of the request. */
export interface RouteExplanation {
  readonly route: string
  /** `undefined` for a route whose connection the request resolved to; otherwise which check ruled it out, and why. */
  readonly ruledOut: { readonly by: RuledOutBy; readonly why: string } | undefined
}

/** A resolution with the reasoning behind it, for people (`egress-guard explain`). */
export interface Explanation {
  readonly resolution: RouteResolution
  readonly routes: ReadonlyArray<RouteExplanation>
}

const onHost = (route: Route, host: Host): boolean => (route._tag === 'ExactRoute' ? route.host === host : route.pattern.matches(host))

const hostNote = (route: Route, host: Host): RouteExplanation['ruledOut'] =>
  route._tag === 'ExactRoute' ? { by: 'host', why: `host \`${host}\` is not \`${route.host}\`` } : { by: 'host', why: `pattern does not match \`${host}\`` }

const samePair = (route: Route, pair: { readonly provider: string; readonly connection: string } | undefined): boolean =>
  pair !== undefined && route.provider === pair.provider && route.connection === pair.connection

/** What a route made of a request that steps 1–4 let through, given where resolution ended. */
const routeNote = (route: Route, reading: Reading, resolution: RouteResolution): RouteExplanation['ruledOut'] => {
  if (!onHost(route, reading.host)) return hostNote(route, reading.host)
  if (route.port !== reading.port) return { by: 'port', why: `port ${reading.port} is not ${route.port}` }
  if (resolution._tag === 'Miss' && resolution.reason === 'auth_endpoint') return { by: 'auth_endpoint', why: 'the path is an OAuth endpoint of a route on this host: it passes untouched' }
  if (!routeCovers(route, reading.path)) {
    return reading.path.ambiguous
      ? { by: 'path', why: 'upstreams may read the path differently (an encoded or backslash separator, or dot segments after a repeated `/`), so it never matches a path prefix' }
      : { by: 'path', why: `path \`${reading.path.path}\` is not under \`${route.prefix}\`` }
  }
  if (resolution._tag === 'Matched') {
    return samePair(route, resolution) ? undefined : { by: 'precedence', why: `a longer prefix, or an exact route over a pattern, wins: ${resolution.provider}/${resolution.connection}` }
  }
  switch (resolution.reason) {
    case 'not_allowed':
      return samePair(route, resolution.target)
        ? { by: 'rules', why: "the connection's `allow` rules do not cover this method and path: no credentials" }
        : { by: 'precedence', why: `a longer prefix, or an exact route over a pattern, wins: ${resolution.target?.provider ?? ''}/${resolution.target?.connection ?? ''}` }
    case 'ambiguous':
      return { by: 'ambiguous', why: 'routes of two connections apply equally (or a repeated `/` would change which one): none is used' }
    default:
      return { by: 'precedence', why: `the request resolves to ${resolution.reason}` }
  }
}

/**
 * Resolves a request and says, route by route, what ruled each out. The resolution is always
 * `resolveRoute`'s; a route is marked as applying (`ruledOut` undefined) only when the request
 * resolved to its connection.
 */
export const explainRoute = (table: RouteTable, request: RequestFacts): Explanation => {
  let resolution: RouteResolution
  let note: (route: Route) => RouteExplanation['ruledOut']
  try {
    const reading = readRequest(table, request)
    if (reading._tag === 'Unread') {
      resolution = reading.resolution
      const { host } = reading
      note = (route) => (host !== undefined && !onHost(route, host) ? hostNote(route, host) : { by: reading.by, why: reading.why })
    } else {
      const resolved = resolveReading(table, reading, request)
      resolution = resolved
      note = (route) => routeNote(route, reading, resolved)
    }
  } catch {
    resolution = miss('internal_error')
    note = () => ({ by: 'host', why: 'could not be explained' })
  }
  const explainOne = (route: Route): RouteExplanation => {
    try {
      return { route: describeRoute(route), ruledOut: note(route) }
    } catch {
      return { route: '(unreadable route)', ruledOut: { by: 'host', why: 'could not be explained' } }
    }
  }
  return { resolution, routes: Array.isArray(table?.routes) ? table.routes.map(explainOne) : [] }
}
