// The secrets a guard knows and whose they are (docs/spec.md §13), through createGuard: the
// placeholders handed out, the real values of their variables, the credentials it resolves; the
// tripwire's verdict on headers, path and query, and on a body as it streams; the swaps and scrub
// rules an injection carries.
import * as E from 'fp-ts/lib/Either.js'
import { describe, expect, it } from 'vitest'

import { parsePolicyText } from '../../../adapters/config/PolicyFile.js'
import { createGuard, type Verdict } from '../../../adapters/guard/createGuard.js'
import { variableOwners } from '../../../adapters/guard/secretBook.js'
import type { AuditEntry } from '../../../adapters/ports.js'
import { scrub, type CarriedText, type Enforcement, type ProxyMode, type RequestFacts } from '../../../core/index.js'

const POLICY = `
mode: connected_deny
providers:
  - { name: alpha, apiUrl: "https://api.alpha.test/", envVar: ALPHA_KEY }
  - { name: alpha-git, apiUrl: "https://git.alpha.test/" }
  - { name: beta, apiUrl: "https://api.beta.test/", envVar: BETA_KEY }
  - { name: gamma, apiUrl: "https://api.gamma.test/" }
connections:
  - { provider: alpha, name: default, credentials: { headers: { Authorization: "Bearer \${env:ALPHA_KEY}" } } }
  - { provider: alpha-git, name: default, credentials: { headers: { Authorization: "Basic \${base64:x-access-token:\${env:ALPHA_KEY}}" } } }
  - { provider: beta, name: default, credentials: { headers: { x-api-key: "\${env:BETA_KEY}" } } }
  - { provider: gamma, name: default, credentials: { exec: ["node", "-e", "console.log(JSON.stringify({headers: {authorization: 'token gamma-resolved-0123456789'}}))"] } }
`
const REAL = { ALPHA_KEY: 'sk-real-alpha-0123456789', BETA_KEY: 'real-beta-9876543210' }
const PLACEHOLDERS = [
  { variable: 'ALPHA_KEY', value: 'sk-egress-guard-AAAAAAAAAAAAAAAAAAAAAAAA' },
  { variable: 'BETA_KEY', value: 'egress-guard-BBBBBBBBBBBBBBBBBBBBBBBB' }
]

const loaded = parsePolicyText(POLICY, 'test policy')
if (E.isLeft(loaded)) throw new Error(loaded.left.messages.join('\n'))

const guardOf = (mode: ProxyMode = 'connected_deny', enforcement: Enforcement = 'enforce') => {
  const records: Array<AuditEntry> = []
  const guard = createGuard({
    policy: loaded.right,
    mode,
    enforcement,
    env: { ...REAL, PATH: process.env['PATH'] ?? '' },
    audit: { write: (e) => void records.push(e), flush: async () => undefined, close: async () => undefined, dropped: () => 0 },
    log: () => undefined
  })
  guard.handOut(PLACEHOLDERS)
  return { guard, records }
}

const to = (host: string, path = '/x'): RequestFacts => ({ scheme: 'https', host, port: 443, method: 'POST', path })
const header = (name: string, text: string): ReadonlyArray<CarriedText> => [{ location: `header ${name}`, text }]

describe('whose secrets are whose', () => {
  it('owns a variable by the providers whose SDK reads it and those whose templates read it', () => {
    expect(Object.fromEntries(variableOwners(loaded.right.file))).toEqual({ ALPHA_KEY: ['alpha', 'alpha-git'], BETA_KEY: ['beta'] })
  })
})

describe('the tripwire (docs/spec.md §13)', () => {
  it.each<[ProxyMode, Enforcement]>([
    ['connected_deny', 'enforce'],
    ['connected_allow', 'enforce'],
    ['configured_allow', 'report']
  ])('refuses a placeholder or a real key bound for another provider’s route or no route, in %s under %s', async (mode, enforcement) => {
    const { guard, records } = guardOf(mode, enforcement)
    for (const [host, carried] of [
      ['api.beta.test', header('x-forward', PLACEHOLDERS[0]!.value)],
      ['evil.test', header('x-a', REAL.BETA_KEY)],
      ['api.gamma.test', [{ location: 'query', text: `k=${encodeURIComponent(REAL.ALPHA_KEY)}` }]]
    ] as const) {
      const verdict = await guard.evaluate(to(host), carried)
      expect(verdict.decision).toMatchObject({ _tag: 'Deny', reason: 'credential_exfiltration' })
    }
    const denials = records.filter((r) => r.metadata['reason'] === 'credential_exfiltration')
    expect(denials.map((r) => [r.provider, r.metadata['location']])).toEqual([
      ['alpha', 'header x-forward'],
      ['beta', 'header x-a'],
      ['alpha', 'query']
    ])
    expect(JSON.stringify(records)).not.toMatch(/sk-real|real-beta|egress-guard-[AB]{8}/)
  })

  it('lets a secret go to a route of any provider it belongs to', async () => {
    const { guard } = guardOf()
    expect((await guard.evaluate(to('api.alpha.test'), header('x-custom', PLACEHOLDERS[0]!.value))).decision._tag).toBe('Inject')
    expect((await guard.evaluate(to('git.alpha.test'), header('x-custom', REAL.ALPHA_KEY))).decision._tag).toBe('Inject')
  })

  it('learns a resolved credential, and trips on it once known', async () => {
    const { guard } = guardOf()
    const token = 'gamma-resolved-0123456789'
    expect((await guard.evaluate(to('api.beta.test'), header('x-t', token))).decision._tag).toBe('Inject')
    expect((await guard.evaluate(to('api.gamma.test'))).decision._tag).toBe('Inject')
    expect((await guard.evaluate(to('api.beta.test'), header('x-t', token))).decision).toMatchObject({ reason: 'credential_exfiltration' })
  })

  it('stops a body that carries a foreign secret as it streams, split across chunks, recorded under the same decision', async () => {
    const { guard, records } = guardOf()
    const verdict = await guard.evaluate(to('api.beta.test'), [])
    expect(verdict.decision._tag).toBe('Inject')
    const body = verdict.body!
    const secret = PLACEHOLDERS[0]!.value
    const first = body.next(`{"padding": "${'x'.repeat(1_000)}", "key": "${secret.slice(0, 10)}`, false)
    expect(first._tag).toBe('Go')
    const sent = first._tag === 'Go' ? first.send : ''
    expect(sent).not.toContain(secret.slice(0, 10))
    const second = body.next(`${secret.slice(10)}"}`, false)
    expect(second).toMatchObject({ _tag: 'Stopped', verdict: { decision: { reason: 'credential_exfiltration' }, decisionId: verdict.decisionId } })
    expect(records.at(-1)).toMatchObject({ provider: 'alpha', decisionId: verdict.decisionId, metadata: { location: 'body' } })
  })

  it('lets a body through whole when it carries nothing, or its own provider’s secret', async () => {
    const { guard } = guardOf()
    const verdict: Verdict = await guard.evaluate(to('api.alpha.test'), [])
    const chunks = [`{"key": "${PLACEHOLDERS[0]!.value}",`, ` "more": "${'y'.repeat(100)}"}`]
    let out = ''
    for (const chunk of chunks) {
      const step = verdict.body!.next(chunk, false)
      if (step._tag === 'Go') out += step.send
    }
    const last = verdict.body!.next('', true)
    if (last._tag === 'Go') out += last.send
    expect(out).toBe(chunks.join(''))
    expect(verdict.body!.done()).toBe(false)
    const long = await guard.evaluate(to('api.alpha.test'), [])
    const big = long.body!.next('z'.repeat(70 * 1024), false)
    expect(big).toEqual({ _tag: 'Go', send: 'z'.repeat(70 * 1024) })
    expect(long.body!.done()).toBe(true)
  })

  it('decides nothing of a request it denies anyway, and has no body check for it', async () => {
    const { guard } = guardOf()
    const verdict = await guard.evaluate(to('evil.test'), [])
    expect(verdict.decision).toMatchObject({ _tag: 'Deny', reason: 'no_match' })
    expect(verdict.body).toBeUndefined()
  })
})

describe('what an injection carries out', () => {
  it('swaps only its own provider’s placeholders, and scrubs the values it injected into their placeholders', async () => {
    const { guard } = guardOf()
    const verdict = await guard.evaluate(to('git.alpha.test'), [])
    expect(verdict.secrets?.swaps).toEqual([{ placeholder: PLACEHOLDERS[0]!.value, real: REAL.ALPHA_KEY }])
    const echoed = `{"authorization": "Basic ${Buffer.from(`x-access-token:${REAL.ALPHA_KEY}`).toString('base64')}", "key": "${REAL.ALPHA_KEY}"}`
    const shown = scrub(verdict.secrets!.scrub, echoed)
    expect(shown).toBe(`{"authorization": "Basic ${Buffer.from(`x-access-token:${PLACEHOLDERS[0]!.value}`).toString('base64')}", "key": "${PLACEHOLDERS[0]!.value}"}`)
  })

  it('shows a resolved credential with no placeholder as [redacted]', async () => {
    const { guard } = guardOf()
    const verdict = await guard.evaluate(to('api.gamma.test'), [])
    expect(scrub(verdict.secrets!.scrub, 'echo: token gamma-resolved-0123456789')).toBe('echo: [redacted]')
    expect(verdict.secrets?.swaps).toEqual([])
  })

  it('carries no swap, scrub or body check when a denial is reported and passed', async () => {
    const { guard } = guardOf('connected_deny', 'report')
    const verdict = await guard.evaluate(to('evil.test'), [])
    expect(verdict.decision._tag).toBe('Pass')
    expect(verdict.secrets).toBeUndefined()
    expect(verdict.body).toBeDefined()
  })
})
