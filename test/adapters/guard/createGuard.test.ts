// The guard's two ways to decide: `evaluate` (always a promise) and `evaluateNow` (at once when no
// credential resolution is needed). They must give the same verdicts and the same audit records.
import * as E from 'fp-ts/lib/Either.js'
import { describe, expect, it } from 'vitest'

import { parsePolicyText } from '../../../adapters/config/PolicyFile.js'
import { createGuard } from '../../../adapters/guard/createGuard.js'
import type { AuditEntry, CredentialSource } from '../../../adapters/ports.js'
import type { RequestFacts } from '../../../core/index.js'

const policy = parsePolicyText(`
mode: connected_deny
providers:
  - { name: alpha, apiUrl: "https://api.alpha.test/v1" }
connections:
  - { provider: alpha, name: default, credentials: { headers: { Authorization: "Bearer unused" } } }
`)

const request = (path: string): RequestFacts => ({ scheme: 'https', host: 'api.alpha.test', port: 443, path, method: 'GET' })

const guardWith = (resolve: CredentialSource['resolve']) => {
  if (E.isLeft(policy)) throw new Error(policy.left.messages.join())
  const audit: Array<AuditEntry> = []
  let resolutions = 0
  const guard = createGuard({
    policy: policy.right,
    credentials: { resolve: (...args) => (resolutions++, resolve(...args)) },
    audit: { write: (e) => audit.push(e), flush: async () => undefined, close: async () => undefined, dropped: () => 0 },
    log: () => undefined
  })
  return { guard, audit, resolutions: () => resolutions }
}

describe('evaluateNow', () => {
  it('decides at once when no credentials are needed, exactly as evaluate does', async () => {
    const { guard, audit } = guardWith(async () => ({ _tag: 'Available', headers: { Authorization: 'Bearer sk-now' } }))
    const now = guard.evaluateNow(request('/v2/x'))
    const later = await guard.evaluate(request('/v2/x'))
    expect(now?.decision).toEqual(later.decision)
    expect(now?.decision._tag).toBe('Deny')
    expect(audit.map((e) => e.event)).toEqual(['proxy_deny', 'proxy_deny'])
    expect(audit[0]?.decisionId).not.toBe(audit[1]?.decisionId)
  })

  it('answers undefined, and records nothing, while the credentials are not resolved; then decides at once from the cache', async () => {
    const { guard, audit, resolutions } = guardWith(async () => ({ _tag: 'Available', headers: { Authorization: 'Bearer sk-now' } }))
    expect(guard.evaluateNow(request('/v1/x'))).toBeUndefined()
    expect(audit).toEqual([])
    expect(resolutions()).toBe(0)
    const first = await guard.evaluate(request('/v1/x'))
    expect(first.decision).toEqual({ _tag: 'Inject', headers: { Authorization: 'Bearer sk-now' } })
    expect(guard.evaluateNow(request('/v1/y'))?.decision).toEqual(first.decision)
    expect(resolutions()).toBe(1)
    expect(audit.map((e) => `${e.event} ${e.metadata['path']}`)).toEqual(['proxy_inject /v1/x', 'proxy_inject /v1/y'])
  })

  it('never decides at once from a failure: failures are not cached, so each request asks again', async () => {
    const { guard, resolutions } = guardWith(async () => ({ _tag: 'Unavailable', error: 'helper failed' }))
    expect((await guard.evaluate(request('/v1/x'))).decision._tag).toBe('Deny')
    expect(guard.evaluateNow(request('/v1/x'))).toBeUndefined()
    expect((await guard.evaluate(request('/v1/x'))).decision._tag).toBe('Deny')
    expect(resolutions()).toBe(2)
  })
})

describe('reload', () => {
  it('never lets a reload that finishes late replace the result of one started after it', async () => {
    if (E.isLeft(policy)) throw new Error(policy.left.messages.join())
    const revoked = parsePolicyText('mode: connected_deny\nproviders: []\n')
    if (E.isLeft(revoked)) throw new Error(revoked.left.messages.join())
    // The first reload parses a large policy (slow, still routing alpha); the second, started
    // later, the small one that revokes alpha, and finishes first.
    const answers = [new Promise<typeof policy>((resolve) => setTimeout(() => resolve(policy), 50)), Promise.resolve(revoked)]
    const guard = createGuard({ policy: policy.right, loadPolicy: () => answers.shift() ?? Promise.resolve(revoked), log: () => undefined })
    const slow = guard.reload()
    const fast = guard.reload()
    expect((await fast)._tag).toBe('Reloaded')
    expect(await slow).toEqual({ _tag: 'Superseded' })
    expect(guard.evaluateTunnel('api.alpha.test', 443).decision._tag).toBe('Deny')
  })
})

describe('clients’ modes under an override (docs/spec.md §9)', () => {
  const withClients = parsePolicyText(`
mode: connected_deny
providers: [{ name: alpha, apiUrl: "https://api.alpha.test/v1" }]
connections: [{ provider: alpha, name: default, credentials: { headers: { Authorization: "Bearer x-0123456789" } } }]
clients:
  - { name: agent, token: "tok-agent-0123456789", mode: configured_allow }
  - { name: plain, token: "tok-plain-0123456789" }
`)
  if (E.isLeft(withClients)) throw new Error(withClients.left.messages.join())

  it('gives a client its own mode, and an override (--mode, the mode endpoint) everyone, even when the policy’s mode stays the same', () => {
    const guard = createGuard({ policy: withClients.right, log: () => undefined, clientTokens: new Map([['agent', 'tok-agent-0123456789'], ['plain', 'tok-plain-0123456789']]) })
    expect([guard.mode(), guard.mode('agent'), guard.mode('plain')]).toEqual(['connected_deny', 'configured_allow', 'connected_deny'])
    guard.setMode('connected_deny')
    expect([guard.mode(), guard.mode('agent'), guard.mode('plain')]).toEqual(['connected_deny', 'connected_deny', 'connected_deny'])
    expect(guard.evaluateTunnel('evil.test', 443, 'agent').decision).toEqual({ _tag: 'Deny', reason: 'no_match' })
    guard.setMode(undefined)
    expect(guard.mode('agent')).toBe('configured_allow')
  })
})
