import { describe, expect, it } from 'vitest'

import { buildRouteTable, decide, decideTunnel, resolveRoute, type RequestFacts } from '../../core/index.js'
import { outcomeOf, replayRequest, sameOutcome } from '../../core/Replay.js'

const { table } = buildRouteTable({ providers: [{ name: 'a', apiUrl: 'https://api.a.test/v1' }], connections: [{ provider: 'a', name: 'default' }], passthrough: ['pypi.test'] }, 'connected')
const facts = (path: string, host = 'api.a.test'): RequestFacts => ({ scheme: 'https', host, port: 443, path, method: 'GET' })

describe('replay in the core (docs/spec.md §12)', () => {
  it('reads the outcome every kind of decision records', () => {
    const injected = decide({ mode: 'connected_deny', request: facts('/v1/x'), resolution: resolveRoute(table, facts('/v1/x')), credentials: { _tag: 'Available', headers: { Authorization: 'k' } } })
    expect(outcomeOf(injected.audit, false)).toEqual({ decision: 'inject', reason: null, provider: 'a', connection: 'default' })
    const missing = decide({ mode: 'connected_deny', request: facts('/v1/x'), resolution: resolveRoute(table, facts('/v1/x')), credentials: { _tag: 'Unavailable', error: 'x' } })
    expect(outcomeOf(missing.audit, false)).toEqual({ decision: 'deny', reason: 'no_credentials', provider: 'a', connection: 'default' })
    const passed = decide({ mode: 'connected_allow', request: facts('/v2'), resolution: resolveRoute(table, facts('/v2')) })
    expect(outcomeOf(passed.audit, false)).toEqual({ decision: 'pass', reason: 'no_match', provider: null, connection: null })
    const tunnel = decideTunnel({ mode: 'connected_allow', table, host: 'pypi.test', port: 443 })
    expect(outcomeOf(tunnel.audit, true)).toEqual({ decision: 'tunnel', reason: 'passthrough', provider: null, connection: null })
    expect(outcomeOf([{ ...passed.audit[0]!, event: 'proxy_would_deny' }], false)?.decision).toBe('deny')
  })

  it('decides a recorded request again without a secret, and a recorded CONNECT as a tunnel', () => {
    const present = () => true
    expect(replayRequest({ table, mode: 'connected_deny', request: { scheme: 'https', host: 'api.a.test', port: 443, method: 'GET', path: '/v1/x' }, hasCredentials: present })).toEqual({ decision: 'inject', reason: null, provider: 'a', connection: 'default' })
    expect(replayRequest({ table, mode: 'connected_deny', request: { scheme: 'https', host: 'api.a.test', port: 443, method: 'GET', path: '/v1/x' }, hasCredentials: () => false })).toMatchObject({ decision: 'deny', reason: 'no_credentials' })
    expect(replayRequest({ table, mode: 'connected_deny', request: { scheme: 'https', host: 'api.a.test', port: 443, method: 'CONNECT' }, hasCredentials: present })).toEqual({ decision: 'intercept', reason: null, provider: null, connection: null })
    expect(replayRequest({ table, mode: 'connected_deny', request: { scheme: 'https', host: 'other.test', port: 443, method: 'CONNECT' }, hasCredentials: present })).toMatchObject({ decision: 'deny', reason: 'no_match' })
  })

  it('compares outcomes field by field', () => {
    const a = { decision: 'pass', reason: 'no_match', provider: null, connection: null } as const
    expect(sameOutcome(a, { ...a })).toBe(true)
    expect(sameOutcome(a, { ...a, reason: 'passthrough' })).toBe(false)
    expect(sameOutcome(a, { ...a, decision: 'deny' })).toBe(false)
  })
})
