import * as E from 'fp-ts/lib/Either.js'

import { parseHost } from './Host.js'
import { canonicalPath, prefixCovers } from './RequestPath.js'
import { resolveRoute, type RequestFacts } from './resolveRoute.js'
import type { RouteResolution } from './RouteResolution.js'
import { describeRoute, type Route, type RouteTable } from './RouteTable.js'

/** The check that ruled a route out, in the order they are made. */
export type RuledOutBy = 'host' | 'scheme' | 'port' | 'path'

/** One route of the table and what it made of the request. */
export interface RouteExplanation {
  readonly route: string
  /** `undefined` for a route that matched the request; otherwise which check failed, and why. */
  readonly ruledOut: { readonly by: RuledOutBy; readonly why: string } | undefined
}

/** A resolution with the reasoning behind it, for people (`egress-guard explain`). */
export interface Explanation {
  readonly resolution: RouteResolution
  readonly routes: ReadonlyArray<RouteExplanation>
}

const whyNot = (route: Route, request: RequestFacts): RouteExplanation['ruledOut'] => {
  const host = parseHost(request.host)
  if (E.isLeft(host)) return { by: 'host', why: `\`${request.host}\` is not a valid host` }
  if (route._tag === 'ExactRoute' && route.host !== host.right) return { by: 'host', why: `host \`${host.right}\` is not \`${route.host}\`` }
  if (route._tag === 'RegexRoute' && !route.pattern.matches(host.right)) return { by: 'host', why: `pattern does not match \`${host.right}\`` }
  if (String(request.scheme).toLowerCase() !== 'https') return { by: 'scheme', why: `scheme is \`${request.scheme}\`: credentials only go over https` }
  if (route.port !== request.port) return { by: 'port', why: `port ${request.port} is not ${route.port}` }
  const path = canonicalPath(request.path)
  if (path.opaque) return { by: 'path', why: 'the request target is not a path' }
  if (route.prefix !== '' && path.ambiguous) return { by: 'path', why: 'upstreams may read the path differently (an encoded or backslash separator, or dot segments after a repeated `/`), so it never matches a path prefix' }
  if (!prefixCovers(route.prefix, path.path)) return { by: 'path', why: `path \`${path.path}\` is not under \`${route.prefix}\`` }
  return undefined
}

/**
 * Resolves a request and says, route by route, what ruled each out. The resolution is always
 * `resolveRoute`'s; the route notes only explain it.
 */
export const explainRoute = (table: RouteTable, request: RequestFacts): Explanation => {
  const note = (route: Route): RouteExplanation => {
    try {
      return { route: describeRoute(route), ruledOut: whyNot(route, request) }
    } catch {
      return { route: '(unreadable route)', ruledOut: { by: 'host', why: 'could not be explained' } }
    }
  }
  return { resolution: resolveRoute(table, request), routes: Array.isArray(table?.routes) ? table.routes.map(note) : [] }
}
