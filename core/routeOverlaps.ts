import type { ExactRoute, RegexRoute, Route, RouteWarning } from './RouteTable.js'
import { describeRoute } from './RouteTable.js'

// Routes that overlap: the same place routed to two connections (ambiguous), and a regex route
// that only ever matches a host an exact route already wins (shadowed).

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

/** The warnings for routes that overlap: `ambiguous_routes` and `shadowed_route`. */
export const overlapWarnings = (routes: ReadonlyArray<Route>): Array<RouteWarning> => {
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
