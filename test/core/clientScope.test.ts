// A client's scope (docs/spec.md §9) as properties of the core: the table built with a client's
// selection routes only the pairs selected, so no request of that client ever resolves to, or
// gets the credentials of, a connection outside them; and selecting every provider's default
// connection changes nothing.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'

import { buildRouteTable, resolveRoute, type PolicyInput } from '../../core/index.js'
import { policyArb, PROVIDERS } from '../arbitraries/policy.js'
import { requestNear } from '../arbitraries/request.js'

/** A selection drawn from the policy's own connections (and names it lacks), at most one per provider. */
const selectionFor = (policy: PolicyInput): fc.Arbitrary<ReadonlyMap<string, string>> =>
  fc
    .array(fc.tuple(fc.constantFrom(...PROVIDERS), fc.constantFrom('default', 'work', 'ghost')), { maxLength: 4 })
    .map((pairs) => new Map(pairs.filter(([provider]) => policy.providers.some((p) => p.name === provider))))

const cases = policyArb.chain((policy) =>
  fc.tuple(fc.constant(policy), fc.constantFrom('connected' as const, 'configured' as const), selectionFor(policy)).chain(([p, scope, selection]) => {
    const table = buildRouteTable(p, scope, selection).table
    return fc.record({ policy: fc.constant(p), scope: fc.constant(scope), selection: fc.constant(selection), table: fc.constant(table), requests: fc.array(requestNear(table), { minLength: 1, maxLength: 10 }) })
  })
)

describe('client scope in the core (docs/spec.md §9)', () => {
  it('routes only the selected pairs, and resolves every request of the client to one of them or to none', () => {
    fc.assert(
      fc.property(cases, ({ selection, table, requests }) => {
        for (const route of table.routes) expect(selection.get(route.provider)).toBe(route.connection)
        for (const request of requests) {
          const resolution = resolveRoute(table, request)
          if (resolution._tag === 'Matched') expect(selection.get(resolution.provider)).toBe(resolution.connection)
          if (resolution._tag === 'Miss' && resolution.target !== undefined) expect(selection.get(resolution.target.provider)).toBe(resolution.target.connection)
        }
      }),
      { numRuns: 1000 }
    )
  })

  it('changes nothing when it selects exactly each provider’s routed default connection', () => {
    fc.assert(
      fc.property(policyArb, (policy) => {
        // A policy that names one connection twice is refused when it loads; here it would be ambiguous.
        const pairs = policy.connections.map((c) => `${c.provider}/${c.name}`)
        fc.pre(new Set(pairs).size === pairs.length)
        const whole = buildRouteTable(policy, 'connected').table
        const defaults = new Map(whole.routes.map((r) => [r.provider, r.connection] as const))
        const selected = buildRouteTable(policy, 'connected', defaults).table
        const shape = (routes: typeof whole.routes) => routes.map((r) => [r.provider, r.connection, r.source, r.port, r.prefix])
        expect(shape(selected.routes)).toEqual(shape(whole.routes))
      }),
      { numRuns: 1000 }
    )
  })
})
