import * as E from 'fp-ts/lib/Either.js'
import { describe, expect, it } from 'vitest'

import { buildRouteTable, decide, decideTunnel, enforced, enforcedTunnel, parseEnforcement, refuseUnauthenticated, type RequestFacts } from '../../core/index.js'

const { table } = buildRouteTable({ providers: [{ name: 'a', apiUrl: 'https://api.a.test/v1' }], connections: [{ provider: 'a', name: 'default' }] }, 'connected')
const request = (facts: Partial<RequestFacts>): RequestFacts => ({ scheme: 'https', host: 'api.a.test', port: 443, path: '/v1/x', method: 'GET', ...facts })

describe('report-only enforcement (docs/spec.md §11)', () => {
  it('carries a denied request out as a pass without credentials, recorded as proxy_would_deny with the same fields', () => {
    const denied = decide({ mode: 'connected_deny', request: request({ path: '/v2/x' }), resolution: { _tag: 'Miss', reason: 'no_match' } })
    expect(denied.decision._tag).toBe('Deny')
    expect(enforced('report', denied)).toEqual({ decision: { _tag: 'Pass' }, audit: [{ ...denied.audit[0], event: 'proxy_would_deny' }] })
  })

  it('keeps a no_credentials denial’s first record, and passes without credentials', () => {
    const denied = decide({ mode: 'connected_deny', request: request({}), resolution: { _tag: 'Matched', provider: 'a', connection: 'default' }, credentials: { _tag: 'Unavailable', error: 'not logged in' } })
    const reported = enforced('report', denied)
    expect(reported.decision).toEqual({ _tag: 'Pass' })
    expect(reported.audit.map((r) => r.event)).toEqual(['proxy_no_credentials', 'proxy_would_deny'])
  })

  it('opens a denied tunnel untouched, recorded as proxy_would_deny', () => {
    const denied = decideTunnel({ mode: 'connected_deny', table, host: 'example.test', port: 443 })
    expect(denied.decision._tag).toBe('Deny')
    expect(enforcedTunnel('report', denied)).toEqual({ decision: { _tag: 'Tunnel' }, audit: [{ ...denied.audit[0], event: 'proxy_would_deny' }] })
  })

  it('leaves injections, passes and intercepts as they are, and changes nothing under enforce', () => {
    const injected = decide({ mode: 'connected_deny', request: request({}), resolution: { _tag: 'Matched', provider: 'a', connection: 'default' }, credentials: { _tag: 'Available', headers: { Authorization: 'Bearer k' } } })
    expect(enforced('report', injected)).toBe(injected)
    const intercepted = decideTunnel({ mode: 'connected_deny', table, host: 'api.a.test', port: 443 })
    expect(enforcedTunnel('report', intercepted)).toBe(intercepted)
    const denied = decide({ mode: 'connected_deny', request: request({ path: '/v2/x' }), resolution: { _tag: 'Miss', reason: 'no_match' } })
    expect(enforced('enforce', denied)).toBe(denied)
  })

  it('never relaxes a denial for want of proxy authentication', () => {
    const refused = refuseUnauthenticated('api.a.test')
    const asDecided = { decision: { _tag: 'Deny' as const, reason: 'unauthenticated' as const, status: 403 as const, body: refused.decision.body, closeTunnel: false }, audit: refused.audit }
    expect(enforced('report', asDecided)).toBe(asDecided)
    const tunnel = { decision: { _tag: 'Deny' as const, reason: 'unauthenticated' as const }, audit: refused.audit }
    expect(enforcedTunnel('report', tunnel)).toBe(tunnel)
  })

  it('parses the two enforcements and names both for anything else', () => {
    expect(parseEnforcement('report')).toEqual(E.right('report'))
    expect(parseEnforcement('enforce')).toEqual(E.right('enforce'))
    expect(parseEnforcement('audit')).toEqual(E.left({ _tag: 'UnknownEnforcement', message: 'unknown enforcement `audit`: expected enforce or report' }))
  })
})
