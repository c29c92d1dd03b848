// Policies drawn from a small pool of hosts, prefixes and pattern shapes, so that routes collide,
// overlap and nearly match each other, and requests built from the same pool hit them often.
import fc from 'fast-check'

import type { PolicyInput } from '../../core/RouteTable.js'

export const BASE_DOMAINS = ['alpha.com', 'beta.io', 'betaalpha.com', 'gamma.dev'] as const
export const SUBDOMAINS = ['', 'api', 'uploads', 'v2.api'] as const
export const PREFIXES = ['', '/', '/v1', '/v1/', '/v1/chat', '/v10', '/api/v1'] as const
export const AUTH_PATHS = ['/oauth/token', '/login/oauth/access_token', '/v1/oauth/token'] as const

const join = (sub: string, domain: string): string => (sub === '' ? domain : `${sub}.${domain}`)
const escaped = (domain: string): string => domain.replace(/\./g, '\\.')

/** A host from the pool. */
export const poolHost = fc.tuple(fc.constantFrom(...SUBDOMAINS), fc.constantFrom(...BASE_DOMAINS)).map(([s, d]) => join(s, d))

const exactUrl = fc
  .tuple(fc.boolean(), poolHost, fc.constantFrom(undefined, 443, 8443), fc.constantFrom(...PREFIXES))
  .map(([scheme, host, port, prefix]) => `${scheme ? 'https://' : ''}${host}${port === undefined ? '' : `:${port}`}${prefix}`)

/** `regex:` URLs in the shapes people write, from anchored to over-broad. */
export const regexUrl = fc
  .tuple(fc.constantFrom('(?:[a-z0-9-]+\\.)?', '.*\\.', '[a-z]+\\.', '', '(?:api|uploads)\\.', '.*', '^api\\.'), fc.constantFrom(...BASE_DOMAINS))
  .map(([shape, domain]) => `regex:${shape}${escaped(domain)}`)

const apiUrl = fc.oneof({ weight: 3, arbitrary: exactUrl }, { weight: 2, arbitrary: regexUrl })
const apiUrls = fc.oneof(apiUrl, fc.array(apiUrl, { minLength: 0, maxLength: 3 }))

export const PROVIDERS = ['p1', 'p2', 'p3', 'p4'] as const

const provider = fc.record(
  {
    name: fc.constantFrom(...PROVIDERS),
    apiUrl: apiUrls,
    oauth: fc.record(
      {
        tokenUrl: fc.tuple(poolHost, fc.constantFrom(...AUTH_PATHS)).map(([h, p]) => `https://${h}${p}?grant=1`),
        authorizationUrl: poolHost.map((h) => `https://${h}/oauth/authorize`)
      },
      { requiredKeys: [] }
    )
  },
  { requiredKeys: ['name'] }
)

/** Path rules near the pool's prefixes: plain prefixes, one-segment wildcards, a final `**`. */
export const RULE_PATHS = ['/v1', '/v1/chat', '/v1/*', '/v1/*/x', '/v1/**', '/api/*/x/**', '/v10'] as const

const allow = fc.record(
  {
    methods: fc.uniqueArray(fc.constantFrom('GET', 'get', 'POST', 'HEAD'), { maxLength: 2 }),
    paths: fc.uniqueArray(fc.constantFrom(...RULE_PATHS), { maxLength: 3 })
  },
  { requiredKeys: [] }
)

const connection = fc.record(
  {
    provider: fc.constantFrom(...PROVIDERS, 'ghost'),
    name: fc.constantFrom('default', 'work'),
    isDefault: fc.boolean(),
    apiUrl: apiUrls,
    allow
  },
  { requiredKeys: ['provider', 'name'] }
)

/** A policy whose routes collide, overlap and nearly match. */
export const policyArb: fc.Arbitrary<PolicyInput> = fc.record(
  {
    providers: fc.uniqueArray(provider, { selector: (p) => p.name, maxLength: 4 }),
    connections: fc.array(connection, { maxLength: 6 }),
    passthrough: fc.array(fc.oneof(poolHost, regexUrl), { maxLength: 2 })
  },
  { requiredKeys: ['providers', 'connections'] }
)
