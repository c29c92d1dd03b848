// Rate limits through createGuard (docs/spec.md §14): token buckets per client and per host,
// 429 with Retry-After recorded as `rate_limited`, no credential resolved for a limited request,
// one count per request whichever way an engine asks, and bounded memory.
import * as E from 'fp-ts/lib/Either.js'
import { describe, expect, it } from 'vitest'

import { parsePolicyText } from '../../../adapters/config/PolicyFile.js'
import { createGuard } from '../../../adapters/guard/createGuard.js'
import { MAX_BUCKETS } from '../../../adapters/guard/rateLimiter.js'
import type { AuditEntry, CredentialSource } from '../../../adapters/ports.js'
import type { CredentialOutcome, Enforcement, RequestFacts } from '../../../core/index.js'

const policy = (limits: string, mode = 'connected_allow') => {
  const loaded = parsePolicyText(`
mode: ${mode}
providers:
  - { name: alpha, apiUrl: "https://api.alpha.test/" }
connections:
  - { provider: alpha, name: default, credentials: { headers: { Authorization: "Bearer k" } } }
clients:
  - { name: ci, token: "ci-token-0123456789abcdef" }
  - { name: agent, token: "agent-token-0123456789abcdef" }
limits: ${limits}
`)
  if (E.isLeft(loaded)) throw new Error(loaded.left.messages.join('\n'))
  return loaded.right
}

const rig = (limits: string, options: { readonly outcome?: CredentialOutcome; readonly enforcement?: Enforcement } = {}) => {
  let now = 1_000_000
  const records: Array<AuditEntry> = []
  let resolutions = 0
  const credentials: CredentialSource = {
    resolve: async () => {
      resolutions++
      return options.outcome ?? { _tag: 'Available', headers: { Authorization: 'Bearer k' } }
    }
  }
  const guard = createGuard({
    policy: policy(limits),
    credentials,
    clientTokens: new Map([['ci', 'ci-token-0123456789abcdef'], ['agent', 'agent-token-0123456789abcdef']]),
    audit: { write: (e) => records.push(e), flush: async () => undefined, close: async () => undefined, dropped: () => 0 },
    clock: { now: () => new Date(now) },
    instance: 'test-instance',
    ...(options.enforcement === undefined ? {} : { enforcement: options.enforcement })
  })
  return { guard, records, resolutions: () => resolutions, advance: (ms: number) => (now += ms) }
}

const to = (host: string, client?: string): RequestFacts => ({ scheme: 'https', host, port: 443, method: 'GET', path: '/v1/x', ...(client === undefined ? {} : { client }) })

describe('rate limits (docs/spec.md §14)', () => {
  it('limits each client apart, answers 429 with Retry-After, and records rate_limited', async () => {
    const { guard, records, advance } = rig('{ perClient: { requests: 2, perSeconds: 10 } }')
    const decisions = []
    for (let i = 0; i < 3; i++) decisions.push((await guard.evaluate(to('example.test', 'ci'))).decision)
    expect(decisions.map((d) => d._tag)).toEqual(['Pass', 'Pass', 'Deny'])
    expect(decisions[2]).toMatchObject({ reason: 'rate_limited', status: 429, retryAfterSeconds: 5 })
    expect((await guard.evaluate(to('example.test', 'agent'))).decision._tag).toBe('Pass')
    expect((await guard.evaluate(to('example.test'))).decision._tag).toBe('Pass')
    const limited = records.filter((r) => r.metadata['reason'] === 'rate_limited')
    expect(limited).toEqual([expect.objectContaining({ event: 'proxy_deny', client: 'ci', instance: 'test-instance', request: expect.objectContaining({ host: 'example.test', path: '/v1/x' }) })])
    advance(5_000)
    expect((await guard.evaluate(to('example.test', 'ci'))).decision._tag).toBe('Pass')
  })

  it('limits each host apart, its name normalised, whoever asks', async () => {
    const { guard } = rig('{ perHost: { requests: 1, perSeconds: 60 } }')
    expect((await guard.evaluate(to('Example.TEST.', 'ci'))).decision._tag).toBe('Pass')
    expect((await guard.evaluate(to('example.test', 'agent'))).decision).toMatchObject({ reason: 'rate_limited', retryAfterSeconds: 60 })
    expect((await guard.evaluate(to('other.test', 'agent'))).decision._tag).toBe('Pass')
  })

  it('never resolves credentials for a limited request', async () => {
    const { guard, resolutions } = rig('{ perHost: { requests: 1, perSeconds: 60 } }', { outcome: { _tag: 'Unavailable', error: 'not logged in' } })
    await guard.evaluate(to('api.alpha.test'))
    expect(resolutions()).toBe(1)
    expect((await guard.evaluate(to('api.alpha.test'))).decision).toMatchObject({ reason: 'rate_limited' })
    expect(resolutions()).toBe(1)
    expect(guard.stats().credentials).toMatchObject({ resolutions: 1, failures: 1 })
  })

  it('counts a request once when an engine asks evaluateNow first and must then await evaluate', async () => {
    const { guard } = rig('{ perHost: { requests: 2, perSeconds: 60 } }')
    expect(guard.evaluateNow(to('api.alpha.test'))).toBeUndefined() // credentials not cached yet
    expect((await guard.evaluate(to('api.alpha.test'))).decision._tag).toBe('Inject')
    expect(guard.evaluateNow(to('api.alpha.test'))?.decision._tag).toBe('Inject')
    expect(guard.evaluateNow(to('api.alpha.test'))?.decision).toMatchObject({ reason: 'rate_limited' })
    expect(guard.stats().credentials.hits).toBe(2)
  })

  it('records a request over a limit that carries a secret where it does not belong as credential_exfiltration, not rate_limited', async () => {
    const { guard, records } = rig('{ perHost: { requests: 1, perSeconds: 60 } }')
    const placeholder = 'egress-guard-AAAAAAAAAAAAAAAAAAAAAAAA'
    guard.handOut([{ variable: 'UNROUTED_KEY', value: placeholder }])
    expect((await guard.evaluate(to('evil.test'))).decision._tag).toBe('Pass')
    expect((await guard.evaluate(to('evil.test'), [{ location: 'query', text: `?k=${placeholder}` }])).decision).toMatchObject({ reason: 'credential_exfiltration' })
    expect(guard.evaluateNow(to('evil.test'), [{ location: 'header x-k', text: placeholder }])?.decision).toMatchObject({ reason: 'credential_exfiltration' })
    expect((await guard.evaluate(to('evil.test'))).decision).toMatchObject({ reason: 'rate_limited' })
    expect(records.map((r) => r.metadata['reason'])).toEqual([undefined, 'credential_exfiltration', 'credential_exfiltration', 'rate_limited'].map((r) => r ?? 'no_match'))
  })

  it('counts every request whatever its decision, and holds under report-only enforcement', async () => {
    const { guard } = rig('{ perClient: { requests: 2, perSeconds: 60 } }', { enforcement: 'report' })
    expect((await guard.evaluate(to('api.alpha.test', 'ci'))).decision._tag).toBe('Inject')
    expect((await guard.evaluate({ ...to('api.alpha.test', 'ci'), scheme: 'http' })).decision._tag).toBe('Pass')
    expect((await guard.evaluate(to('api.alpha.test', 'ci'))).decision).toMatchObject({ _tag: 'Deny', reason: 'rate_limited' })
  })

  it('counts an untouched tunnel as a request and refuses it over the limit; an intercepted one is not counted', () => {
    const { guard, records } = rig('{ perHost: { requests: 1, perSeconds: 30 } }')
    expect(guard.evaluateTunnel('elsewhere.test', 443).decision._tag).toBe('Tunnel')
    expect(guard.evaluateTunnel('elsewhere.test', 443).decision).toEqual({ _tag: 'Deny', reason: 'rate_limited', retryAfterSeconds: 30 })
    for (let i = 0; i < 3; i++) expect(guard.evaluateTunnel('api.alpha.test', 443).decision._tag).toBe('Intercept')
    expect(records).toHaveLength(2) // the tunnel's miss and the refusal; intercepts write none
    expect(records.filter((r) => r.metadata['reason'] === 'rate_limited')).toHaveLength(1)
  })

  it('keeps at most MAX_BUCKETS buckets however many hosts are asked for, and a flood of new names never refills a spent bucket', () => {
    const { guard, advance } = rig('{ perHost: { requests: 1, perSeconds: 3600 } }')
    expect(guard.evaluateNow(to('busy.example.test'))?.decision._tag).toBe('Pass')
    expect(guard.evaluateNow(to('busy.example.test'))?.decision).toMatchObject({ reason: 'rate_limited' })
    const flood = Array.from({ length: MAX_BUCKETS + 5_000 }, (_, i) => guard.evaluateNow(to(`h${i}.example.test`))?.decision._tag)
    expect(guard.stats().rateLimitBuckets).toBeLessThanOrEqual(MAX_BUCKETS)
    // The spent bucket was kept: still limited.
    expect(guard.evaluateNow(to('busy.example.test'))?.decision).toMatchObject({ reason: 'rate_limited' })
    // Past the bound, new names share one bucket: beside busy's, MAX_BUCKETS - 1 names got a bucket
    // of their own, then the shared one gave its one token; the rest of the flood was limited.
    expect(flood.filter((tag) => tag === 'Pass').length).toBe(MAX_BUCKETS - 1 + 1)
    // Once buckets refill, they make room again.
    advance(3_600_000)
    expect(guard.evaluateNow(to('late.example.test'))?.decision._tag).toBe('Pass')
    expect(guard.evaluateNow(to('late.example.test'))?.decision).toMatchObject({ reason: 'rate_limited' })
  })

  it('rejects limits that are not whole requests per a positive number of seconds, naming the key', () => {
    for (const [limits, words] of [
      ['{ perClient: { requests: 0, perSeconds: 1 } }', '`requests` must be a whole number'],
      ['{ perHost: { requests: 1.5, perSeconds: 1 } }', '`requests` must be a whole number'],
      ['{ perHost: { requests: 1, perSeconds: 0 } }', '`perSeconds` must be a number above 0'],
      ['{ perHost: { requests: 1 } }', 'perSeconds'],
      ['{ perHost: { requests: 1, perSeconds: 1, burst: 3 } }', 'unknown key `burst`'],
      ['{ perUser: { requests: 1, perSeconds: 1 } }', 'unknown key `perUser`']
    ] as const) {
      const loaded = parsePolicyText(`providers: []\nlimits: ${limits}\n`)
      expect(E.isLeft(loaded) ? loaded.left.messages.join('\n') : 'loaded').toContain(words)
    }
  })
})
