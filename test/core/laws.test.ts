// Named laws of the core, each a pure predicate over one generated case, bound to its
// arbitrary in one loop (the fp-ts-laws style). A law returns true when it holds.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'

import {
  buildRouteTable,
  decide,
  decideTunnel,
  isLocalHost,
  parseHost,
  parseMode,
  PROXY_MODES,
  resolveRoute,
  unmatchedPolicyOf,
  type CredentialOutcome,
  type Decided,
  type ProxyMode,
  type RequestFacts,
  type RouteResolution,
  type RouteTable
} from '../../core/index.js'
import * as E from 'fp-ts/lib/Either.js'
import { policyArb } from '../arbitraries/policy.js'
import { credentialsArb, requestNear, SECRET_PREFIX } from '../arbitraries/request.js'

interface Case {
  readonly table: RouteTable
  readonly mode: ProxyMode
  readonly request: RequestFacts
  readonly resolution: RouteResolution
  readonly credentials: CredentialOutcome | undefined
  readonly decided: Decided
}

const caseArb: fc.Arbitrary<Case> = fc
  .tuple(policyArb, fc.constantFrom(...PROXY_MODES))
  .chain(([policy, mode]) => {
    const { table } = buildRouteTable(policy, mode.startsWith('configured') ? 'configured' : 'connected')
    return fc.record({ table: fc.constant(table), mode: fc.constant(mode), request: requestNear(table), credentials: credentialsArb })
  })
  .map(({ table, mode, request, credentials }) => {
    const resolution = resolveRoute(table, request)
    const input = { mode, request, resolution, ...(credentials === undefined ? {} : { credentials }) }
    return { table, mode, request, resolution, credentials, decided: decide(input) }
  })

const secretsOf = (credentials: CredentialOutcome | undefined): ReadonlyArray<string> =>
  credentials?._tag === 'Available' ? Object.values(credentials.headers).map((v) => v.split(/[\r\n\u0000]/)[0] ?? v) : []

const requestText = (request: RequestFacts): string => JSON.stringify(request)

/** Laws over a request, its resolution and its decision. */
const decisionLaws: Record<string, (c: Case) => boolean> = {
  injectImpliesHttpsAndMatchedAndAvailable: ({ request, resolution, credentials, decided }) =>
    decided.decision._tag !== 'Inject' ||
    (request.scheme.toLowerCase() === 'https' && resolution._tag === 'Matched' && credentials?._tag === 'Available'),
  injectNeverReachesAHostWithoutARouteOfThatProvider: ({ table, request, resolution, decided }) => {
    if (decided.decision._tag !== 'Inject' || resolution._tag !== 'Matched') return true
    const host = parseHost(request.host)
    return (
      E.isRight(host) &&
      !isLocalHost(host.right) &&
      table.routes.some(
        (r) =>
          r.provider === resolution.provider &&
          r.port === request.port &&
          (r._tag === 'ExactRoute' ? r.host === host.right : r.pattern.matches(host.right))
      )
    )
  },
  injectedHeadersAreExactlyTheCredentials: ({ credentials, decided }) =>
    decided.decision._tag !== 'Inject' ||
    (credentials?._tag === 'Available' && JSON.stringify(decided.decision.headers) === JSON.stringify(credentials.headers)),
  denyModesNeverPassUnmatched: ({ mode, resolution, decided }) =>
    unmatchedPolicyOf(mode) === 'allow' ||
    decided.decision._tag !== 'Pass' ||
    (resolution._tag === 'Miss' && (resolution.reason === 'auth_endpoint' || resolution.reason === 'passthrough')),
  allowModesNeverDeny: ({ mode, decided }) => unmatchedPolicyOf(mode) === 'deny' || decided.decision._tag !== 'Deny',
  auditNeverContainsSecret: ({ request, credentials, decided }) => {
    const text = JSON.stringify(decided.audit) + (decided.decision._tag === 'Deny' ? decided.decision.body : '')
    return secretsOf(credentials).every((s) => !text.includes(s) || requestText(request).includes(s)) && !text.includes(SECRET_PREFIX)
  },
  auditPathNeverHasQuery: ({ decided }) => decided.audit.every((r) => !(r.metadata['path'] ?? '').includes('?')),
  everyDecisionIsAudited: ({ decided }) => decided.audit.length >= 1,
  closeTunnelExactlyForConnect: ({ request, decided }) =>
    decided.decision._tag !== 'Deny' || decided.decision.closeTunnel === (request.method === 'CONNECT'),
  plainHttpNeverInjects: ({ request, decided }) => request.scheme.toLowerCase() === 'https' || decided.decision._tag !== 'Inject',
  localDestinationsNeverMatch: ({ request, resolution }) => {
    const host = parseHost(request.host)
    return resolution._tag !== 'Matched' || (E.isRight(host) && !isLocalHost(host.right))
  },
  hostCaseAndTrailingDotIrrelevant: ({ table, request, resolution }) => {
    const varied = { ...request, host: `${request.host.toUpperCase()}${request.host.endsWith('.') ? '' : '.'}` }
    return request.host.includes('[') || JSON.stringify(resolveRoute(table, varied)) === JSON.stringify(resolution)
  },
  queryStringIrrelevant: ({ table, request, resolution }) =>
    request.path.includes('?') ||
    request.path.includes('#') ||
    JSON.stringify(resolveRoute(table, { ...request, path: `${request.path}?token=x&v=/../admin` })) === JSON.stringify(resolution)
}

describe('laws of decide and resolveRoute', () => {
  for (const [name, law] of Object.entries(decisionLaws)) {
    it(name, () => {
      fc.assert(
        fc.property(caseArb, (c) => {
          expect(law(c)).toBe(true)
        }),
        { numRuns: 3000 }
      )
    })
  }
})

/** Totality: every public function answers arbitrary input with a value, never a throw. */
describe('every function is total on arbitrary input', () => {
  const junk = fc.anything({ withNullPrototype: true, withBoxedValues: true, withMap: true, withSet: true, maxDepth: 3 })
  const looseRequest = fc.record({
    scheme: fc.oneof(fc.string(), junk),
    host: fc.oneof(fc.string(), fc.constantFrom('[', '[::', '%', 'a..b', '0x', '.'), junk),
    port: fc.oneof(fc.integer(), junk),
    path: fc.oneof(fc.string(), junk),
    method: fc.oneof(fc.string(), junk),
    hostHeader: fc.oneof(fc.string(), junk),
    sni: fc.oneof(fc.string(), junk),
    dialedAddress: fc.oneof(fc.string(), junk)
  })
  const table = buildRouteTable({ providers: [{ name: 'p', apiUrl: ['api.p.com/v1', 'regex:.*\\.p\\.com'] }], connections: [] }, 'configured').table

  const totality: Record<string, fc.IProperty<never> | fc.IProperty<[unknown]> | fc.IProperty<[unknown, unknown]>> = {
    parseModeIsTotal: fc.property(junk, (x) => {
      expect(['Left', 'Right']).toContain(parseMode(x)._tag)
    }),
    parseHostIsTotal: fc.property(fc.oneof(fc.string(), fc.string({ unit: 'binary' }), junk), (x) => {
      expect(['Left', 'Right']).toContain(parseHost(x)._tag)
    }),
    buildRouteTableIsTotal: fc.property(junk, junk, (policy, scope) => {
      const built = buildRouteTable(policy as never, scope as never)
      expect(Array.isArray(built.warnings)).toBe(true)
    }),
    resolveRouteIsTotal: fc.property(looseRequest, (request) => {
      expect(['Matched', 'Miss']).toContain(resolveRoute(table, request as never)._tag)
    }),
    decideIsTotal: fc.property(fc.record({ mode: junk, request: fc.oneof(looseRequest, junk), resolution: junk, credentials: junk, denyText: junk }), (input) => {
      const { decision, audit } = decide(input as never)
      expect(['Inject', 'Pass', 'Deny']).toContain(decision._tag)
      expect(audit.length).toBeGreaterThan(0)
      expect(decision._tag).not.toBe('Inject')
    }),
    decideTunnelIsTotal: fc.property(fc.record({ mode: junk, table: fc.oneof(fc.constant(table), junk), host: fc.oneof(fc.string(), junk), port: junk }), (input) => {
      expect(['Intercept', 'Tunnel', 'Deny']).toContain(decideTunnel(input as never).decision._tag)
    })
  }
  for (const [name, property] of Object.entries(totality)) {
    it(name, () => {
      fc.assert(property as fc.IProperty<unknown[]>, { numRuns: 2000 })
    })
  }
})
