import fc from 'fast-check'
import { describe, expect, it } from 'vitest'

import { buildRouteTable, canonicalPath, resolveRoute } from '../../core/index.js'
import { policyArb } from '../arbitraries/policy.js'
import { bentPath, requestNear } from '../arbitraries/request.js'
import { modelCanonicalPath, referenceResolve } from '../model/referenceResolver.js'

const tableWithRequests = fc
  .tuple(policyArb, fc.constantFrom('connected' as const, 'configured' as const))
  .map(([policy, scope]) => buildRouteTable(policy, scope).table)
  .chain((table) => fc.record({ table: fc.constant(table), requests: fc.array(requestNear(table), { minLength: 1, maxLength: 25 }) }))

describe('resolveRoute against the linear-scan model', () => {
  it('agrees on near-miss requests for generated policies, in both scopes', () => {
    fc.assert(
      fc.property(tableWithRequests, ({ table, requests }) => {
        for (const request of requests) {
          expect(resolveRoute(table, request), JSON.stringify(request)).toEqual(referenceResolve(table, request))
        }
      }),
      { numRuns: 1500 }
    )
  })
})

describe('canonicalPath against RFC 3986 §5.2.4', () => {
  const pathChars = fc.constantFrom('/', '.', '%2e', '%2E', '%2f', '%5C', '\\', 'a', 'v1', '%41', '%7e', '%zz', '%', '?', '#', '..', '~')
  const anyPath = fc.array(pathChars, { maxLength: 14 }).map((parts) => `/${parts.join('')}`)
  it('matches the model on generated and bent paths', () => {
    fc.assert(
      fc.property(fc.oneof(anyPath, bentPath), (path) => {
        const core = canonicalPath(path)
        const model = modelCanonicalPath(path)
        expect({ path: core.path, ambiguous: core.ambiguous, opaque: core.opaque }).toEqual(model)
      }),
      { numRuns: 20_000 }
    )
  })
})
