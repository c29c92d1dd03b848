import { describe, expect, it } from 'vitest'

import { decide, type CredentialOutcome, type RouteResolution } from '../../core/index.js'
import { PROXY_MODES, unmatchedPolicyOf } from '../../core/Mode.js'
import { DECISION_TABLE, METADATA_KEYS } from '../model/decisionTable.js'

const request = (method: string) => ({ scheme: 'https', host: 'API.Example.com.', port: 443, path: '/v1/chat?key=q', method })

// Every credential outcome the core can be handed, and whether it must count as usable.
const CREDENTIALS: ReadonlyArray<readonly [string, CredentialOutcome | undefined, boolean]> = [
  ['absent', undefined, false],
  ['available', { _tag: 'Available', headers: { Authorization: 'Bearer sk-test' } }, true],
  ['available with expiry', { _tag: 'Available', headers: { 'x-api-key': 'k' }, expiresAt: new Date(0) }, true],
  ['unavailable', { _tag: 'Unavailable', error: 'not logged in' }, false],
  ['CR-LF in a value', { _tag: 'Available', headers: { Authorization: 'Bearer a\r\nX-Evil: 1' } }, false],
  ['NUL in a value', { _tag: 'Available', headers: { Authorization: 'a\u0000b' } }, false],
  ['illegal header name', { _tag: 'Available', headers: { 'Bad Name': 'v' } }, false],
  ['Proxy- header', { _tag: 'Available', headers: { 'Proxy-Authorization': 'v' } }, false],
  ['no headers', { _tag: 'Available', headers: {} }, false],
  ['name twice', { _tag: 'Available', headers: { authorization: 'a', Authorization: 'b' } }, false]
]

const resolutionOf = (row: (typeof DECISION_TABLE)[number]): RouteResolution =>
  row.resolution === 'matched'
    ? { _tag: 'Matched', provider: 'example', connection: 'default' }
    : ({ _tag: 'Miss', reason: row.resolution } as RouteResolution)

describe('docs/spec.md §5, every mode × resolution × credential outcome × method', () => {
  for (const mode of PROXY_MODES) {
    for (const row of DECISION_TABLE) {
      for (const [label, credentials, usable] of CREDENTIALS) {
        if (row.resolution === 'matched' && (row.credentials === 'available') !== usable) continue
        for (const method of ['GET', 'CONNECT']) {
          it(`${mode} · ${row.resolution} · ${label} · ${method}`, () => {
            const expected = unmatchedPolicyOf(mode) === 'allow' ? row.allow : row.deny
            const input = { mode, request: request(method), resolution: resolutionOf(row), ...(credentials === undefined ? {} : { credentials }) }
            const { decision, audit } = decide(input)
            expect(decision._tag).toBe(expected.decision)
            expect(audit.map((r) => r.event)).toEqual(expected.events)
            for (const record of audit) {
              expect(Object.keys(record.metadata)).toEqual(METADATA_KEYS[record.event])
              expect(record.source).toBe('external')
              expect(record.metadata['host']).toBe('api.example.com')
              if (record.metadata['path'] !== undefined) expect(record.metadata['path']).toBe('/v1/chat')
              const named = row.resolution === 'matched'
              expect(record.provider).toBe(named ? 'example' : null)
              expect(record.connection).toBe(named ? 'default' : null)
              if (record.event === 'proxy_miss' || record.event === 'proxy_deny') {
                expect(record.metadata['reason']).toBe(expected.reason ?? row.resolution)
              }
              expect(JSON.stringify(record)).not.toContain('sk-test')
            }
            if (decision._tag === 'Deny') {
              expect(decision.reason).toBe(expected.reason)
              expect(decision.status).toBe(403)
              expect(decision.closeTunnel).toBe(method === 'CONNECT')
            }
            if (decision._tag === 'Inject') expect(decision.headers).toEqual((credentials as { headers: unknown }).headers)
          })
        }
      }
    }
  }
})

describe('deny bodies (docs/spec.md §5)', () => {
  const denied = (denyText?: { loginCommand?: string; dashboardUrl?: string }) =>
    decide({
      mode: 'configured_deny',
      request: request('GET'),
      resolution: { _tag: 'Matched', provider: 'openai', connection: 'default' },
      ...(denyText === undefined ? {} : { denyText })
    }).decision
  const bodyOf = (d: ReturnType<typeof denied>) => (d._tag === 'Deny' ? d.body : '')
  const head = "Forbidden: provider 'openai' is configured but has no active connection."

  it('names the provider when nothing else is configured', () => {
    expect(bodyOf(denied())).toBe(head)
  })
  it('fills the login command template', () => {
    expect(bodyOf(denied({ loginCommand: 'authsome login {provider}' }))).toBe(`${head} Run \`authsome login openai\` to connect.`)
  })
  it('adds the dashboard to the login command', () => {
    expect(bodyOf(denied({ loginCommand: 'authsome login {provider}', dashboardUrl: 'http://127.0.0.1:7998' }))).toBe(
      `${head} Run \`authsome login openai\` to connect, or open the dashboard at http://127.0.0.1:7998/.`
    )
  })
  it('points at the dashboard alone', () => {
    expect(bodyOf(denied({ dashboardUrl: 'https://dash.example/' }))).toBe(`${head} Open the dashboard at https://dash.example/.`)
  })
  it('states the reason for every other denial', () => {
    const d = decide({ mode: 'connected_deny', request: request('GET'), resolution: { _tag: 'Miss', reason: 'host_mismatch' } }).decision
    expect(bodyOf(d)).toBe('Forbidden by egress-guard proxy policy (host_mismatch)')
  })
})

describe('methods that echo the request', () => {
  it.each(['TRACE', 'track'])('%s never receives credentials, whatever the credential source says', (method) => {
    for (const mode of PROXY_MODES) {
      const { decision, audit } = decide({
        mode,
        request: { scheme: 'https', host: 'api.example.com', port: 443, path: '/v1', method },
        resolution: { _tag: 'Matched', provider: 'example', connection: 'default' },
        credentials: { _tag: 'Available', headers: { Authorization: 'Bearer sk-test' } }
      })
      expect(decision._tag).toBe(unmatchedPolicyOf(mode) === 'allow' ? 'Pass' : 'Deny')
      expect(audit[0]?.event).toBe('proxy_no_credentials')
      expect(JSON.stringify({ decision, audit })).not.toContain('sk-test')
    }
  })
})
