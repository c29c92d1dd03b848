// The named laws of test/model/laws.ts, each bound to generated cases in one loop (the
// fp-ts-laws style), and totality of every public function on arbitrary input.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'

import {
  buildRouteTable,
  decide,
  decideTunnel,
  explainRoute,
  parseHost,
  parseMode,
  PROXY_MODES,
  resolveRoute
} from '../../core/index.js'
import { policyArb } from '../arbitraries/policy.js'
import { credentialsArb, requestNear } from '../arbitraries/request.js'
import { decisionLaws, type Case } from '../model/laws.js'

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
    }),
    explainRouteIsTotal: fc.property(fc.oneof(fc.constant(table), junk), fc.oneof(looseRequest, junk), (routes, request) => {
      expect(['Matched', 'Miss']).toContain(explainRoute(routes as never, request as never).resolution._tag)
    })
  }
  for (const [name, property] of Object.entries(totality)) {
    it(name, () => {
      fc.assert(property as fc.IProperty<unknown[]>, { numRuns: 2000 })
    })
  }
})
