import * as E from 'fp-ts/lib/Either.js'

import { parseHost } from './Host.js'
import { canonicalPath, prefixCovers } from './RequestPath.js'
import { resolveRoute, type RequestFacts } from './resolveRoute.js'
import type { RouteResolution } from './RouteResolution.js'
import { describeRoute, type Route, type RouteTable } from './RouteTable.js'

/** One route of the table and what it made of the request. */
export interface RouteExplanation {
  readonly route: string
  /** `undefined` for a route that matched the request; otherwise why it did not. */
  readonly ruledOut: string | undefined
}

/** A resolution with the reasoning behind it, for people (`egress-guard explain`). */
export interface Explanation {
  readonly resolution: RouteResolution
  readonly routes: ReadonlyArray<RouteExplanation>
}

const whyNot = (route: Route, request: RequestFacts): string | undefined => {
  const host = parseHost(request.host)
  if (E.isLeft(host)) return `\`${request.host}\` is not a valid host`
  if (route._tag === 'ExactRoute' && route.host !== host.right) return `host \`${host.right}\` is not \`${route.host}\``
  if (route._tag === 'RegexRoute' && !route.pattern.matches(host.right)) return `pattern does not match \`${host.right}\``
  if (String(request.scheme).toLowerCase() !== 'https') return `scheme is \`${request.scheme}\`: credentials only go over https`
  if (route.port !== request.port) return `port ${request.port} is not ${route.port}`
  const path = canonicalPath(request.path)
  if (path.opaque) return 'the request target is not a path'
  if (route.prefix !== '' && path.ambiguousSeparators) return 'the path has an encoded or backslash separator, which never matches a path prefix'
  if (!prefixCovers(route.prefix, path.path)) return `path \`${path.path}\` is not under \`${route.prefix}\``
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
      return { route: '(unreadable route)', ruledOut: 'could not be explained' }
    }
  }
  return { resolution: resolveRoute(table, request), routes: Array.isArray(table?.routes) ? table.routes.map(note) : [] }
}
