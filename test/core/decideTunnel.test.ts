import { describe, expect, it } from 'vitest'

import { buildRouteTable, decideTunnel, PROXY_MODES, type ProxyMode } from '../../core/index.js'

const { table } = buildRouteTable(
  {
    providers: [
      { name: 'openai', apiUrl: 'api.openai.com/v1' },
      { name: 'alt', apiUrl: 'alt.example.com:8443' },
      { name: 'gh', apiUrl: 'regex:(?:[a-z]+\\.)?githubusercontent\\.com' }
    ],
    connections: [],
    passthrough: ['pypi.org']
  },
  'configured'
)

const verdict = (mode: ProxyMode, host: string, port = 443) => {
  const { decision, audit } = decideTunnel({ mode, table, host, port })
  return { decision: decision._tag === 'Deny' ? `Deny:${decision.reason}` : decision._tag, audit }
}

describe('decideTunnel (docs/spec.md §5 Tunnels)', () => {
  const cases: ReadonlyArray<[string, string, number, string, string]> = [
    // what, host, port, allow modes, deny modes
    ['a routed host is intercepted', 'api.openai.com', 443, 'Intercept', 'Intercept'],
    ['a routed host in another spelling', 'API.OpenAI.com.', 443, 'Intercept', 'Intercept'],
    ['a regex-routed host', 'raw.githubusercontent.com', 443, 'Intercept', 'Intercept'],
    ['a declared port', 'alt.example.com', 8443, 'Intercept', 'Intercept'],
    ['a routed host on a port without routes', 'api.openai.com', 8443, 'Tunnel', 'Deny:no_match'],
    ['a regex-routed host off 443', 'raw.githubusercontent.com', 8443, 'Tunnel', 'Deny:no_match'],
    ['a passthrough host is tunnelled untouched', 'pypi.org', 443, 'Tunnel', 'Tunnel'],
    ['an unknown host', 'example.org', 443, 'Tunnel', 'Deny:no_match'],
    ['a look-alike host', 'evilgithubusercontent.com', 443, 'Tunnel', 'Deny:no_match'],
    ['loopback', '127.0.0.1', 443, 'Tunnel', 'Deny:local_destination'],
    ['loopback in another notation', '0x7f.1', 443, 'Tunnel', 'Deny:local_destination'],
    ['cloud metadata', '169.254.169.254', 80, 'Tunnel', 'Deny:local_destination'],
    ['an unreadable host', 'a b', 443, 'Tunnel', 'Deny:no_match']
  ]
  for (const mode of PROXY_MODES) {
    for (const [what, host, port, allow, deny] of cases) {
      it(`${mode}: ${what}`, () => {
        const { decision, audit } = verdict(mode, host, port)
        const expected = mode.endsWith('allow') ? allow : deny
        expect(decision).toBe(expected)
        if (expected === 'Intercept') expect(audit).toEqual([])
        else if (expected === 'Tunnel') {
          expect(audit).toHaveLength(1)
          expect(audit[0]?.event).toBe('proxy_miss')
          expect(Object.keys(audit[0]?.metadata ?? {})).toEqual(['host', 'reason', 'method'])
          expect(audit[0]?.metadata['method']).toBe('CONNECT')
        } else {
          expect(audit).toEqual([
            { event: 'proxy_deny', source: 'external', provider: null, connection: null, metadata: { host: expect.any(String), reason: expected.slice(5) } }
          ])
        }
      })
    }
  }
})

describe('decideTunnel under `inspect: all` (docs/spec.md §13)', () => {
  const inspected = (mode: ProxyMode, host: string, port = 443) => decideTunnel({ mode, table, host, port, inspectAll: true }).decision._tag
  it('intercepts in an allow mode what would have been tunnelled untouched, but never a passthrough host', () => {
    for (const mode of PROXY_MODES.filter((m) => m.endsWith('allow'))) {
      expect(inspected(mode, 'example.org')).toBe('Intercept')
      expect(inspected(mode, 'api.openai.com', 8443)).toBe('Intercept')
      expect(inspected(mode, '127.0.0.1')).toBe('Intercept')
      expect(inspected(mode, 'pypi.org')).toBe('Tunnel')
      expect(inspected(mode, 'a b')).toBe('Tunnel')
    }
  })

  it('denies in a deny mode what it denied before', () => {
    for (const mode of PROXY_MODES.filter((m) => m.endsWith('deny'))) {
      expect(inspected(mode, 'example.org')).toBe('Deny')
      expect(inspected(mode, '127.0.0.1')).toBe('Deny')
      expect(inspected(mode, 'pypi.org')).toBe('Tunnel')
    }
  })
})
