import fc from 'fast-check'
import { describe, expect, it } from 'vitest'

import { buildRouteTable, explainRoute, resolveRoute, type RequestFacts } from '../../core/index.js'
import { policyArb } from '../arbitraries/policy.js'
import { requestNear } from '../arbitraries/request.js'

const { table } = buildRouteTable(
  { providers: [{ name: 'a', apiUrl: ['api.a.com/v1', 'api.a.com:8443/v1', 'regex:(?:[a-z]+\\.)?b\\.com'] }], connections: [] },
  'configured'
)
const request = (facts: Partial<RequestFacts>): RequestFacts => ({ scheme: 'https', host: 'api.a.com', port: 443, path: '/v1/x', method: 'GET', ...facts })

describe('explainRoute', () => {
  it('gives resolveRoute’s resolution and, per route, the check that ruled it out', () => {
    const explained = explainRoute(table, request({ path: '/v2/x' }))
    expect(explained.resolution).toEqual(resolveRoute(table, request({ path: '/v2/x' })))
    expect(explained.routes.map((r) => [r.route, r.ruledOut?.by])).toEqual([
      ['a/default api.a.com:443/v1', 'path'],
      ['a/default api.a.com:8443/v1', 'port'],
      ['a/default regex:(?:[a-z]+\\.)?b\\.com', 'host']
    ])
    expect(explained.routes[0]?.ruledOut?.why).toBe('path `/v2/x` is not under `/v1`')
  })

  it('marks the routes that match', () => {
    expect(explainRoute(table, request({})).routes[0]?.ruledOut).toBeUndefined()
  })

  it.each<[Partial<RequestFacts>, string]>([
    [{ scheme: 'http' }, 'scheme'],
    [{ path: '/v1%2fx' }, 'path'],
    [{ path: '*' }, 'path'],
    [{ host: 'a b' }, 'host']
  ])('names the failing check for %j', (facts, by) => {
    expect(explainRoute(table, request(facts)).routes[0]?.ruledOut?.by).toBe(by)
  })
})

// `explain` must never tell a different story from the proxy: it runs resolveRoute's own steps.
describe('explainRoute against resolveRoute, on generated policies and near-miss requests', () => {
  const tableWithRequests = fc
    .tuple(policyArb, fc.constantFrom('connected' as const, 'configured' as const))
    .map(([policy, scope]) => buildRouteTable(policy, scope).table)
    .chain((generated) => fc.record({ table: fc.constant(generated), requests: fc.array(requestNear(generated), { minLength: 1, maxLength: 20 }) }))

  it('gives the same resolution, and marks a route as applying exactly when the request resolved to its connection', () => {
    fc.assert(
      fc.property(tableWithRequests, ({ table: generated, requests }) => {
        for (const facts of requests) {
          const explained = explainRoute(generated, facts)
          const resolution = resolveRoute(generated, facts)
          expect(explained.resolution, JSON.stringify(facts)).toEqual(resolution)
          expect(explained.routes).toHaveLength(generated.routes.length)
          const applying = generated.routes.filter((_, i) => explained.routes[i]?.ruledOut === undefined)
          if (resolution._tag === 'Matched') {
            expect(applying.length, JSON.stringify(facts)).toBeGreaterThan(0)
            for (const route of applying) expect([route.provider, route.connection]).toEqual([resolution.provider, resolution.connection])
          } else {
            expect(applying, JSON.stringify(facts)).toEqual([])
          }
        }
      }),
      { numRuns: 1000 }
    )
  })
})
