// Table tests for every adversarial case of docs/spec.md §3–§4 and the seed behaviour of the
// Python add-on this project replaces.
import { describe, expect, it } from 'vitest'

import { buildRouteTable, resolveRoute, type PolicyInput, type RequestFacts, type RouteResolution } from '../../core/index.js'

const policy: PolicyInput = {
  providers: [
    { name: 'openai', apiUrl: 'https://api.openai.com/v1' },
    {
      name: 'github',
      apiUrl: ['https://api.github.com', 'regex:(?:[a-z0-9-]+\\.)?githubusercontent\\.com'],
      oauth: { tokenUrl: 'https://github.com/login/oauth/access_token', authorizationUrl: 'https://github.com/login/oauth/authorize' }
    },
    { name: 'github-web', apiUrl: 'https://github.com', oauth: { tokenUrl: 'https://github.com/login/oauth/access_token' } },
    { name: 'anthropic', apiUrl: ['api.anthropic.com/v1', 'api.anthropic.com/v1/messages/batches'], oauth: { tokenUrl: 'https://api.anthropic.com/oauth/token?x=1' } },
    { name: 'aws', apiUrl: ['regex:[a-z0-9-]+\\.amazonaws\\.com', 's3.amazonaws.com'] },
    { name: 'tie-a', apiUrl: 'shared.example.com/api' },
    { name: 'tie-b', apiUrl: 'shared.example.com/api' },
    { name: 'regex-tie-a', apiUrl: 'regex:.*\\.tie\\.example' },
    { name: 'regex-tie-b', apiUrl: 'regex:(?:[a-z]+\\.)+tie\\.example' },
    { name: 'alt-port', apiUrl: 'https://alt.example.com:8443/' },
    { name: 'idn', apiUrl: 'https://bücher.example/' },
    { name: 'named-only' , apiUrl: 'named.example.com' }
  ],
  connections: [
    { provider: 'openai', name: 'default' },
    { provider: 'github', name: 'default' },
    { provider: 'github-web', name: 'default' },
    { provider: 'anthropic', name: 'default' },
    { provider: 'aws', name: 'prod', isDefault: true },
    { provider: 'tie-a', name: 'default' },
    { provider: 'tie-b', name: 'default' },
    { provider: 'regex-tie-a', name: 'default' },
    { provider: 'regex-tie-b', name: 'default' },
    { provider: 'alt-port', name: 'default' },
    { provider: 'idn', name: 'default' },
    { provider: 'named-only', name: 'work' }
  ],
  passthrough: ['pypi.org', 'regex:(?:[a-z]+\\.)?pythonhosted\\.org']
}

const { table } = buildRouteTable(policy, 'connected')
const resolve = (facts: Partial<RequestFacts>): RouteResolution =>
  resolveRoute(table, { scheme: 'https', host: 'api.openai.com', port: 443, path: '/v1/models', method: 'GET', ...facts })
const matched = (provider: string, connection = 'default') => ({ _tag: 'Matched', provider, connection })
const missed = (reason: string) => ({ _tag: 'Miss', reason })

describe('seed behaviour', () => {
  it.each<[string, Partial<RequestFacts>, object]>([
    ['exact host', { host: 'api.github.com', path: '/repos' }, matched('github')],
    ['regex host', { host: 'raw.githubusercontent.com', path: '/x' }, matched('github')],
    ['regex host, bare domain', { host: 'githubusercontent.com', path: '/' }, matched('github')],
    ['several API URLs per provider', { host: 'objects.githubusercontent.com' }, matched('github')],
    ['path prefix', { path: '/v1/chat/completions' }, matched('openai')],
    ['path prefix exactly', { path: '/v1' }, matched('openai')],
    ['outside the prefix', { path: '/v2/models' }, missed('no_match')],
    ['longest prefix wins (same provider)', { host: 'api.anthropic.com', path: '/v1/messages/batches/1' }, matched('anthropic')],
    ['exact beats regex', { host: 's3.amazonaws.com', path: '/bucket' }, matched('aws', 'prod')],
    ['regex when no exact route', { host: 'ec2.amazonaws.com' }, matched('aws', 'prod')],
    ['equal specificity is ambiguous', { host: 'shared.example.com', path: '/api/x' }, missed('ambiguous')],
    ['equal regexes are ambiguous', { host: 'a.tie.example' }, missed('ambiguous')],
    ['OAuth endpoint with a query string', { host: 'github.com', path: '/login/oauth/access_token?code=abc' }, missed('auth_endpoint')],
    ['OAuth URL with a query string in the policy', { host: 'api.anthropic.com', path: '/oauth/token' }, missed('auth_endpoint')],
    ['named non-default connections are ignored', { host: 'named.example.com' }, missed('no_match')],
    ['http never injects', { scheme: 'http', port: 80 }, missed('insecure_scheme')],
    ['loopback never routes', { host: '127.0.0.1' }, missed('local_destination')]
  ])('%s', (_, facts, expected) => {
    expect(resolve(facts)).toEqual(expected)
  })
})

describe('adversarial hosts', () => {
  it.each<[string, Partial<RequestFacts>, object]>([
    ['upper case and trailing dot', { host: 'API.OPENAI.COM.' }, matched('openai')],
    ['glued suffix', { host: 'api.openai.com.evil.net' }, missed('no_match')],
    ['glued prefix on a regex domain', { host: 'evilgithubusercontent.com' }, missed('no_match')],
    ['cut label', { host: 'openai.com' }, missed('no_match')],
    ['extra label on an exact host', { host: 'x.api.openai.com' }, missed('no_match')],
    ['two trailing dots', { host: 'api.openai.com..' }, missed('no_match')],
    ['userinfo trick', { host: 'evil.com@api.openai.com' }, missed('no_match')],
    ['percent-encoded dot', { host: 'api%2eopenai.com' }, missed('no_match')],
    ['IDN in Unicode', { host: 'BÜCHER.example' }, matched('idn')],
    ['IDN in punycode', { host: 'xn--bcher-kva.example' }, matched('idn')],
    ['passthrough exact', { host: 'pypi.org', path: '/simple' }, missed('passthrough')],
    ['passthrough regex', { host: 'files.pythonhosted.org' }, missed('passthrough')],
    ['passthrough look-alike', { host: 'evilpythonhosted.org' }, missed('no_match')]
  ])('%s', (_, facts, expected) => {
    expect(resolve(facts)).toEqual(expected)
  })

  it.each(['localhost', 'api.localhost', '127.1', '2130706433', '0x7f.0.0.1', '017700000001', '[::ffff:7f00:1]', '[::1]', '::1', '0.0.0.0', '10.1.2.3', '172.20.0.1', '192.168.0.10', '100.100.100.200', '169.254.169.254', '[fe80::1]', '[fd00::1]', '[64:ff9b::a9fe:a9fe]'])(
    'the local host %s is local_destination',
    (host) => {
      expect(resolve({ host })).toEqual(missed('local_destination'))
    }
  )

  it.each(['127.0.0.1', '10.0.0.5', '::ffff:127.0.0.1', '169.254.169.254', 'fe80::1%eth0'])('a routed name dialled at %s is local_destination', (dialedAddress) => {
    expect(resolve({ dialedAddress })).toEqual(missed('local_destination'))
  })

  it('a routed name dialled at a public address still matches', () => {
    expect(resolve({ dialedAddress: '104.18.7.192' })).toEqual(matched('openai'))
  })
})

describe('host mismatch (docs/spec.md §4 step 2)', () => {
  it.each<[string, Partial<RequestFacts>]>([
    ['Host header names another host', { hostHeader: 'evil.com' }],
    ['Host header with a port names another host', { hostHeader: 'evil.com:443' }],
    ['SNI names another host', { sni: 'evil.com' }],
    ['absolute URI names another host', { absoluteUriHost: 'evil.com' }],
    ['unreadable Host header', { hostHeader: 'api.openai.com, evil.com' }],
    ['empty SNI', { sni: '' }],
    ['mismatch on a passthrough host', { host: 'pypi.org', hostHeader: 'api.openai.com' }]
  ])('%s', (_, facts) => {
    expect(resolve(facts)).toEqual(missed('host_mismatch'))
  })

  it('agreeing names in other spellings still match', () => {
    expect(resolve({ hostHeader: 'API.openai.com.:443', sni: 'api.openai.com.', absoluteUriHost: 'Api.OpenAI.com' })).toEqual(matched('openai'))
  })
})

describe('adversarial paths (docs/spec.md §4 step 3)', () => {
  it.each<[string, string, object]>([
    ['/v10 is not under /v1', '/v10/models', missed('no_match')],
    ['/v1x is not under /v1', '/v1x', missed('no_match')],
    ['dot segments leaving the prefix', '/v1/../admin', missed('no_match')],
    ['encoded dot segments leaving the prefix', '/v1/%2e%2e/admin', missed('no_match')],
    ['mixed-case encoded dots', '/v1/%2E%2e/admin', missed('no_match')],
    ['dot segments entering the prefix', '/x/../v1/models', matched('openai')],
    ['encoded unreserved characters', '/%76%31/models', matched('openai')],
    ['single dot segments', '/./v1/./models', matched('openai')],
    ['encoded slash never matches a prefix', '/v1%2fmodels', missed('no_match')],
    ['encoded slash inside the prefix', '/v1/a%2Fb', missed('no_match')],
    ['encoded backslash', '/v1/%5c..%5cadmin', missed('no_match')],
    ['raw backslash', '/v1\\models', missed('no_match')],
    ['query does not count', '/v1?x=/../../admin', matched('openai')],
    ['fragment does not count', '/v1#/../admin', matched('openai')],
    // Read as `/v1/v2/x` by RFC 3986 and as `/v2/x` by nginx, Go, Node and Python, which merge
    // repeated `/` before removing dot segments: no prefix may match a path read two ways.
    ['dot segments behind a repeated slash', '/v1//../v2/x', missed('no_match')],
    ['two dot segments behind a repeated slash', '/v1/x//../../v2/x', missed('no_match')],
    ['encoded dots behind a repeated slash', '/v1//%2e%2e/v2/x', missed('no_match')],
    ['mixed encoded dots behind a repeated slash', '/v1/x//.%2E/%2e./v2/x', missed('no_match')],
    ['three slashes before dot segments', '/v1///../../v2', missed('no_match')],
    ['a repeated slash whose readings agree', '/v1//models', matched('openai')],
    ['a repeated slash after the dot segments', '/x/../v1//models', matched('openai')],
    ['a single dot behind a repeated slash', '/v1//./models', matched('openai')],
    ['absolute-form target matches nothing', 'https://api.openai.com/v1/models', missed('no_match')],
    ['asterisk-form target matches nothing', '*', missed('no_match')]
  ])('%s', (_, path, expected) => {
    expect(resolve({ path })).toEqual(expected)
  })

  it('an encoded slash still matches a host-wide route', () => {
    expect(resolve({ host: 'api.github.com', path: '/repos/a%2Fb' })).toEqual(matched('github'))
  })
})

describe('nested prefixes and repeated slashes', () => {
  const { table } = buildRouteTable(
    {
      providers: [
        { name: 'outer', apiUrl: 'https://h.test/v1' },
        { name: 'inner', apiUrl: 'https://h.test/v1/b' }
      ],
      connections: [
        { provider: 'outer', name: 'default' },
        { provider: 'inner', name: 'default' }
      ]
    },
    'connected'
  )
  const at = (path: string) => resolveRoute(table, { scheme: 'https', host: 'h.test', port: 443, path, method: 'GET' })

  // nginx and Go read each of these as `/v1/b/x`, where `inner` applies; RFC 3986 alone keeps the
  // `//`, which only `outer` covers. Neither credential may go.
  it.each(['/v1//b/x', '/v1//./b/x', '/v1/c/..//b/x', '/v1/b/%2e%2e//b/x'])('%s is ambiguous', (path) => {
    expect(at(path)).toEqual(missed('ambiguous'))
  })

  it.each([
    ['/v1//c/x', matched('outer')],
    ['/v1/b//x', matched('inner')],
    ['/v1/b/x', matched('inner')]
  ])('%s still matches when both readings agree', (path, expected) => {
    expect(at(path)).toEqual(expected)
  })
})

describe('auth endpoints (docs/spec.md §4 step 5)', () => {
  it.each(['/login/oauth/access_token', '/login/oauth/access_token/', '//login/oauth/access_token', '/login//oauth/access_token', '/login/oauth/%61ccess_token', '/login/oauth/access_token?client_id=x', '/login/oauth/x/../access_token', '/login%2foauth/access_token', '/x//../login/oauth/access_token', '/x//%2e%2e/login/oauth/access_token', '/x/%2f../login/oauth/access_token'])(
    '%s on github.com is an auth endpoint',
    (path) => {
      expect(resolve({ host: 'github.com', path })).toEqual(missed('auth_endpoint'))
    }
  )

  it("another provider's OAuth URL on the host is not an auth endpoint of this host's routes", () => {
    // `github` declares github.com/login/oauth/authorize, but has no route on github.com.
    expect(resolve({ host: 'github.com', path: '/login/oauth/authorize' })).toEqual(matched('github-web'))
  })

  it('other paths on the same host still match', () => {
    expect(resolve({ host: 'github.com', path: '/login/oauth/access_token2' })).toEqual(matched('github-web'))
  })

  it('an auth endpoint outside every prefix is still recognised', () => {
    expect(resolve({ host: 'api.anthropic.com', path: '/oauth/token/' })).toEqual(missed('auth_endpoint'))
  })
})

describe('schemes and ports', () => {
  it.each<[string, Partial<RequestFacts>, object]>([
    ['http to a routed host on another port', { scheme: 'http', port: 8080 }, missed('insecure_scheme')],
    ['http to a regex-routed host', { scheme: 'http', host: 'raw.githubusercontent.com', port: 80 }, missed('insecure_scheme')],
    ['http to an unrouted host', { scheme: 'http', host: 'example.org', port: 80 }, missed('no_match')],
    ['http to a passthrough host', { scheme: 'http', host: 'pypi.org', port: 80 }, missed('passthrough')],
    ['ws to a routed host', { scheme: 'ws', port: 80 }, missed('insecure_scheme')],
    ['HTTPS in capitals', { scheme: 'HTTPS' }, matched('openai')],
    ['routed host on another port', { port: 8443 }, missed('no_match')],
    ['declared port', { host: 'alt.example.com', port: 8443 }, matched('alt-port')],
    ['declared port only', { host: 'alt.example.com', port: 443 }, missed('no_match')],
    ['regex routes are for 443', { host: 'raw.githubusercontent.com', port: 8443 }, missed('no_match')],
    ['invalid port', { port: 0 }, missed('no_match')],
    ['non-integer port', { port: 443.5 }, missed('no_match')]
  ])('%s', (_, facts, expected) => {
    expect(resolve(facts)).toEqual(expected)
  })
})
