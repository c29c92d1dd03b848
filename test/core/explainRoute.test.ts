import { describe, expect, it } from 'vitest'

import { buildRouteTable, explainRoute, resolveRoute, type RequestFacts } from '../../core/index.js'

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
