import { describe, expect, it } from 'vitest'

import { buildRouteTable, describeRoute, type PolicyInput, type RouteWarning } from '../../core/index.js'

const codes = (warnings: ReadonlyArray<RouteWarning>) => warnings.map((w) => w.code)
const routesOf = (policy: PolicyInput, scope: 'connected' | 'configured' = 'configured') =>
  buildRouteTable(policy, scope).table.routes.map(describeRoute)

describe('buildRouteTable (docs/spec.md §3)', () => {
  it('routes only providers with a default connection under connected scope', () => {
    const policy: PolicyInput = {
      providers: [{ name: 'a', apiUrl: 'api.a.com' }, { name: 'b', apiUrl: 'api.b.com' }, { name: 'c', apiUrl: 'api.c.com' }],
      connections: [
        { provider: 'a', name: 'default' },
        { provider: 'b', name: 'work', isDefault: true },
        { provider: 'c', name: 'default', isDefault: false },
        { provider: 'c', name: 'personal' }
      ]
    }
    expect(routesOf(policy, 'connected')).toEqual(['a/default api.a.com:443', 'b/work api.b.com:443'])
    expect(routesOf(policy, 'configured')).toEqual(['a/default api.a.com:443', 'b/work api.b.com:443', 'c/default api.c.com:443'])
  })

  it('prefers the connection API URL, reads several, and keeps ports and prefixes', () => {
    const policy: PolicyInput = {
      providers: [{ name: 'a', apiUrl: ['https://API.A.com/v1/', 'api.a.com:8443/admin', 'https://a.com:443', 'regex:(?:[a-z]+\\.)?a\\.net'] }],
      connections: []
    }
    expect(routesOf(policy)).toEqual([
      'a/default api.a.com:443/v1',
      'a/default api.a.com:8443/admin',
      'a/default a.com:443',
      'a/default regex:(?:[a-z]+\\.)?a\\.net'
    ])
    const withConnection: PolicyInput = { ...policy, connections: [{ provider: 'a', name: 'eu', isDefault: true, apiUrl: 'eu.a.com/v2' }] }
    expect(routesOf(withConnection)).toEqual(['a/eu eu.a.com:443/v2'])
  })

  it('normalises IDN and trailing dots in API URLs', () => {
    expect(routesOf({ providers: [{ name: 'a', apiUrl: ['münchen.de.', 'https://EXAMPLE.com./x/../y'] }], connections: [] })).toEqual([
      'a/default xn--mnchen-3ya.de:443',
      'a/default example.com:443/y'
    ])
  })

  it('skips a provider with two default connections', () => {
    const built = buildRouteTable(
      {
        providers: [{ name: 'a', apiUrl: 'api.a.com' }, { name: 'b', apiUrl: 'api.b.com' }],
        connections: [
          { provider: 'a', name: 'default' },
          { provider: 'a', name: 'other', isDefault: true },
          { provider: 'b', name: 'default' }
        ]
      },
      'configured'
    )
    expect(built.table.routes.map((r) => r.provider)).toEqual(['b'])
    expect(built.warnings).toEqual([expect.objectContaining({ code: 'conflicting_defaults', provider: 'a' })])
  })

  it.each([
    ['regex:', 'invalid_pattern'],
    ['regex:[a-', 'invalid_pattern'],
    ['regex:(a+)+\\.com', 'invalid_pattern'],
    ['regex:(?=x)a', 'invalid_pattern'],
    ['http://api.a.com', 'insecure_url'],
    ['ftp://api.a.com', 'invalid_url'],
    ['https://user:hunter2@api.a.com/?key=sk-live', 'invalid_url'],
    ['https://exa mple.com', 'invalid_url'],
    ['localhost:8080', 'local_host'],
    ['https://127.1/v1', 'local_host'],
    ['https://[::ffff:7f00:1]', 'local_host'],
    ['169.254.169.254', 'local_host'],
    ['https://2130706433', 'local_host']
  ])('skips %s with %s and never throws', (apiUrl, code) => {
    const built = buildRouteTable({ providers: [{ name: 'a', apiUrl }], connections: [] }, 'configured')
    expect(built.table.routes).toEqual([])
    expect(codes(built.warnings)).toEqual([code])
    expect(JSON.stringify(built.warnings)).not.toMatch(/hunter2|sk-live/)
  })

  it('warns about an over-broad pattern but keeps its route', () => {
    const built = buildRouteTable({ providers: [{ name: 'gh', apiUrl: 'regex:.*githubusercontent\\.com$' }], connections: [] }, 'configured')
    expect(codes(built.warnings)).toEqual(['overbroad_pattern'])
    expect(built.warnings[0]?.detail).toContain('evilgithubusercontent.com')
    expect(built.table.routes).toHaveLength(1)
  })

  it('reports routes that can never be told apart', () => {
    const built = buildRouteTable(
      {
        providers: [
          { name: 'a', apiUrl: ['api.x.com/v1', 'regex:.*\\.y\\.com'] },
          { name: 'b', apiUrl: ['https://api.x.com:443/v1/', 'regex:.*\\.y\\.com'] }
        ],
        connections: []
      },
      'configured'
    )
    expect(codes(built.warnings)).toEqual(['ambiguous_routes', 'ambiguous_routes'])
  })

  it('reports a literal pattern that an exact route always wins over', () => {
    const built = buildRouteTable(
      { providers: [{ name: 'a', apiUrl: 'api.x.com' }, { name: 'b', apiUrl: 'regex:^api\\.x\\.com$' }], connections: [] },
      'configured'
    )
    expect(built.warnings).toEqual([expect.objectContaining({ code: 'shadowed_route', provider: 'b' })])
  })

  it('does not warn about one provider listing a host twice', () => {
    const built = buildRouteTable({ providers: [{ name: 'a', apiUrl: ['api.x.com', 'https://api.x.com/'] }], connections: [] }, 'configured')
    expect(built.warnings).toEqual([])
  })

  it('reports connections of unknown providers and malformed entries', () => {
    const built = buildRouteTable(
      { providers: [{ name: '' }, { name: 'a' }, { name: 'a' }], connections: [{ provider: 'ghost', name: 'default' }], passthrough: ['ok.com', 'bad/host', 'regex:('] },
      'configured'
    )
    expect(codes(built.warnings)).toEqual(['invalid_policy', 'duplicate_provider', 'unknown_provider', 'invalid_url', 'invalid_pattern'])
  })

  it('attaches OAuth endpoints on the route host, including those with a query string', () => {
    const built = buildRouteTable(
      {
        providers: [
          {
            name: 'gh',
            apiUrl: ['api.github.com', 'regex:(?:[a-z]+\\.)?github\\.com'],
            oauth: { tokenUrl: 'https://github.com/login/oauth/access_token?scope=x', authorizationUrl: 'https://api.github.com/authorize/' }
          }
        ],
        connections: []
      },
      'configured'
    )
    expect(built.table.routes.map((r) => r.authPaths)).toEqual([['/authorize'], ['/authorize', '/login/oauth/access_token']])
  })
})

describe('buildRouteTable with a client’s selection (docs/spec.md §9)', () => {
  const policy: PolicyInput = {
    providers: [
      { name: 'gh', apiUrl: 'https://api.github.test' },
      { name: 'oa', apiUrl: 'https://api.openai.test/v1' },
      { name: 'st', apiUrl: 'https://api.stripe.test' }
    ],
    connections: [
      { provider: 'gh', name: 'work', isDefault: true },
      { provider: 'gh', name: 'readonly', allow: { methods: ['GET'] } },
      { provider: 'oa', name: 'default' }
    ]
  }
  const pairs = (selection: ReadonlyMap<string, string> | undefined, scope: 'connected' | 'configured') =>
    buildRouteTable(policy, scope, selection).table.routes.map((r) => `${r.provider}/${r.connection}`)

  it('routes only the providers it names, each through the connection it names, in either scope', () => {
    const selection = new Map([['gh', 'readonly']])
    expect(pairs(selection, 'connected')).toEqual(['gh/readonly'])
    expect(pairs(selection, 'configured')).toEqual(['gh/readonly'])
    expect(buildRouteTable(policy, 'connected', selection).table.routes[0]?.rules?.methods).toEqual(new Set(['GET']))
  })

  it('routes every default connection without one, as before', () => {
    expect(pairs(undefined, 'connected')).toEqual(['gh/work', 'oa/default'])
    expect(pairs(undefined, 'configured')).toEqual(['gh/work', 'oa/default', 'st/default'])
  })

  it('skips, with a warning, a provider whose named connection does not exist', () => {
    const built = buildRouteTable(policy, 'connected', new Map([['gh', 'ghost']]))
    expect(built.table.routes).toEqual([])
    expect(built.warnings).toContainEqual({ code: 'invalid_policy', provider: 'gh', detail: 'provider `gh` has no connection `ghost`; a client names it' })
  })
})
