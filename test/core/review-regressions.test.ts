// Regressions for the findings of an independent review of the core against docs/spec.md.
import * as E from 'fp-ts/lib/Either.js'
import { describe, expect, it } from 'vitest'

import { buildRouteTable, compileHostPattern, decide, decideTunnel, redactUrl, resolveRoute, usableCredentials, type RequestFacts } from '../../core/index.js'
import { overbroadWitness } from '../../core/HostPattern.js'

const request = (host: string, path = '/', scheme = 'https'): RequestFacts => ({ scheme, host, port: 443, path, method: 'GET' })
const tableOf = (apiUrls: Record<string, string | ReadonlyArray<string>>, oauth: Record<string, string> = {}) =>
  buildRouteTable({ providers: Object.entries(apiUrls).map(([name, apiUrl]) => ({ name, apiUrl, ...(oauth[name] === undefined ? {} : { oauth: { tokenUrl: oauth[name] } }) })), connections: [] }, 'configured')

describe('regex escapes the literal-suffix index must not misread', () => {
  it.each(['.*\\x2eexample\\x2ecom', '.*\\056example\\056com', '[a-z]+\\.example\\.co\\x6d', '\\Q(\\E|evil\\.net|x\\.example\\.com', '(?:[a-z]+\\.)?example\\.c\\x{6f}m'])(
    '%s is found through the index',
    (pattern) => {
      const { table } = tableOf({ p: `regex:${pattern}` })
      const host = pattern.startsWith('\\Q') ? 'x.example.com' : 'a.example.com'
      expect(E.isRight(compileHostPattern(pattern))).toBe(true)
      expect(resolveRoute(table, request(host))).toEqual({ _tag: 'Matched', provider: 'p', connection: 'default' })
      expect(decideTunnel({ mode: 'connected_deny', table, host, port: 443 }).decision._tag).toBe('Intercept')
      expect(resolveRoute(table, request(host, '/', 'http'))).toEqual({ _tag: 'Miss', reason: 'insecure_scheme' })
    }
  )

  it('sees two providers on one host as ambiguous whatever the escapes', () => {
    const { table } = tableOf({ a: 'regex:.*\\.example\\.com', b: 'regex:.*\\x2eexample\\x2ecom' })
    expect(resolveRoute(table, request('x.example.com'))).toEqual({ _tag: 'Miss', reason: 'ambiguous' })
  })
})

describe('over-broad patterns the first probes missed', () => {
  it.each([
    ['.*(?:github|githubusercontent)\\.com', 'evilgithub.com'],
    ['.*(github)\\.com', 'evilgithub.com'],
    ['.*(?:\\.|-)githubusercontent\\.com', 'evil-githubusercontent.com'],
    ['.*\\.github\\.[a-z]+', 'x.github.evil'],
    ['.*\\.github\\..*', 'x.github.evil']
  ])('%s is flagged (%s)', (pattern, witness) => {
    const compiled = compileHostPattern(pattern)
    expect(E.isRight(compiled) && overbroadWitness(compiled.right)).toBe(witness)
  })

  it.each(['(?:[a-z0-9-]+\\.)?(?:github|githubusercontent)\\.com', '(?:.*\\.)?github\\.com', '[a-z0-9-]+\\.s3\\.amazonaws\\.com'])('%s is not flagged', (pattern) => {
    const compiled = compileHostPattern(pattern)
    expect(E.isRight(compiled) && overbroadWitness(compiled.right)).toBeUndefined()
  })
})

describe('what warnings show', () => {
  it.each([
    ['https://user:p@ss@api.example.com/v1?key=sk', 'https://api.example.com/v1'],
    ['https://user:pa/ss@api.example.com/v1', 'https://api.example.com/v1'],
    ['user:secret@api.example.com', 'api.example.com']
  ])('redacts the user info of %s', (url, shown) => {
    expect(redactUrl(url)).toBe(shown)
  })

  it('never shows a user-info password, even in an unparsable URL', () => {
    const { warnings } = tableOf({ p: ['https://user:pa/ss@api.example.com/v1', 'https://u:hunter2@exa mple.com'] }, { p: 'https://user:pa/ss@auth.example.com/token' })
    expect(warnings.length).toBeGreaterThan(0)
    expect(JSON.stringify(warnings)).not.toMatch(/pa\/ss|hunter2/)
  })

  it('shows regex patterns whole, `?` included', () => {
    const { warnings, table } = tableOf({ p: 'regex:(?:.*)github\\.com' })
    expect(warnings[0]?.detail).toContain('`(?:.*)github\\.com`')
    expect(table.routes[0]?.source).toBe('regex:(?:.*)github\\.com')
  })

  it('trims the pattern after `regex:`', () => {
    const { table } = tableOf({ p: 'regex: api\\.x\\.com ' })
    expect(resolveRoute(table, request('api.x.com'))._tag).toBe('Matched')
  })
})

describe('credentials are checked and injected as one copy', () => {
  it('injects the value that was checked, not a later read of the same object', () => {
    let reads = 0
    const headers = {
      get Authorization() {
        reads++
        return reads === 1 ? 'Bearer ok' : 'Bearer x\r\nHost: evil.com'
      }
    }
    const { decision } = decide({
      mode: 'connected_deny',
      request: request('api.x.com'),
      resolution: { _tag: 'Matched', provider: 'p', connection: 'default' },
      credentials: { _tag: 'Available', headers }
    })
    expect(decision).toEqual({ _tag: 'Inject', headers: { Authorization: 'Bearer ok' } })
    expect(Object.isFrozen(decision._tag === 'Inject' ? decision.headers : {})).toBe(true)
  })
})

describe('a checked outcome is checked once', () => {
  it('returns its own frozen result unchanged, and checks anything else again', () => {
    const checked = usableCredentials({ _tag: 'Available', headers: { Authorization: 'Bearer ok' } })
    expect(Object.isFrozen(checked)).toBe(true)
    expect(usableCredentials(checked)).toBe(checked)
    // A copy made from the checked one, with a bad value, is not trusted for having been built from it.
    const tampered = { ...checked, headers: { ...(checked._tag === 'Available' ? checked.headers : {}), 'X-Evil': 'a\r\nb' } }
    expect(usableCredentials(tampered)._tag).toBe('Unavailable')
    expect(decide({ mode: 'connected_deny', request: request('api.x.com'), resolution: { _tag: 'Matched', provider: 'p', connection: 'default' }, credentials: tampered }).decision._tag).toBe('Deny')
  })
})

describe('a credential expiry must be a valid Date', () => {
  it.each<[string, unknown]>([
    ['an ISO string', '2026-01-01T00:10:00Z'],
    ['a number', 1_767_226_200_000],
    ['an invalid Date', new Date(Number.NaN)],
    ['null', null]
  ])('%s is refused: no credential is injected without a usable expiry', (_, expiresAt) => {
    const outcome = { _tag: 'Available', headers: { Authorization: 'Bearer ok' }, expiresAt }
    expect(usableCredentials(outcome)).toEqual({ _tag: 'Unavailable', error: 'credential expiresAt is not a valid Date' })
    expect(decide({ mode: 'connected_allow', request: request('api.x.com'), resolution: { _tag: 'Matched', provider: 'p', connection: 'default' }, credentials: outcome as never }).decision._tag).not.toBe('Inject')
  })

  it('a valid Date is kept', () => {
    const expiresAt = new Date('2026-01-01T00:10:00Z')
    expect(usableCredentials({ _tag: 'Available', headers: { Authorization: 'Bearer ok' }, expiresAt })).toEqual({ _tag: 'Available', headers: { Authorization: 'Bearer ok' }, expiresAt })
  })
})

describe('IPv6 literals take no trailing dot', () => {
  it.each(['::.', '::1.', '[::1].', 'fe80::1.'])('%s is not a host: no_match, never a route', (host) => {
    const { table } = tableOf({ p: 'api.x.com' })
    expect(resolveRoute(table, request(host))).toEqual({ _tag: 'Miss', reason: 'no_match' })
    expect(decideTunnel({ mode: 'connected_deny', table, host, port: 443 }).decision).toEqual({ _tag: 'Deny', reason: 'no_match' })
  })
})

describe('hosts with more than one trailing dot', () => {
  it.each(['localhost..', 'foo.localhost..', '127.0.0.1..', 'api.x.com..'])('%s is not a host: never routed, never matched', (host) => {
    const { table, warnings } = tableOf({ p: [`https://${host}/v1`, 'api.x.com'] })
    expect(warnings.map((w) => w.code)).toEqual(['invalid_url'])
    expect(resolveRoute(table, request(host, '/v1'))).toEqual({ _tag: 'Miss', reason: 'no_match' })
  })
})

describe('`;` path parameters', () => {
  const { table } = tableOf({ p: 'api.x.com/v1', q: 'auth.x.com' }, { q: 'https://auth.x.com/oauth/token' })
  it.each(['/v1/..;/admin', '/v1/%2e%2e%3b/admin', '/v1/.;/x'])('%s never matches a prefix', (path) => {
    expect(resolveRoute(table, request('api.x.com', path))).toEqual({ _tag: 'Miss', reason: 'no_match' })
  })
  it.each(['/oauth/token;x', '/oauth/token%3Bjsessionid=1', '/oauth/token/..;/token', '/oauth;a/token'])('%s is the auth endpoint', (path) => {
    expect(resolveRoute(table, request('auth.x.com', path))).toEqual({ _tag: 'Miss', reason: 'auth_endpoint' })
  })
  it('a parameter on an ordinary segment still matches', () => {
    expect(resolveRoute(table, request('api.x.com', '/v1/models;v=2'))._tag).toBe('Matched')
  })
})

describe('API URL paths', () => {
  it('drops every trailing slash of a prefix', () => {
    const { table } = tableOf({ p: 'https://api.y.com/v1//' })
    expect(resolveRoute(table, request('api.y.com', '/v1/models'))._tag).toBe('Matched')
  })
})

describe('audit records of hosts that do not parse', () => {
  it('show no user info', () => {
    const { audit } = decide({ mode: 'connected_deny', request: request('user:sk-SECRET@api.x.com'), resolution: { _tag: 'Miss', reason: 'no_match' } })
    expect(JSON.stringify(audit)).not.toContain('sk-SECRET')
    expect(audit[0]?.metadata['host']).toBe('api.x.com')
  })
})
