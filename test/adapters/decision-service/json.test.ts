// The JSON endpoints of the decision service, called as any proxy would call them.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import type { RunningDecisionService } from '../../../adapters/decision-service/decisionService.js'
import { KEY, startService, TOKEN } from './support.js'

let service: RunningDecisionService
beforeAll(async () => {
  ;({ service } = await startService('connected_deny', TOKEN))
})
afterAll(async () => {
  await service.close()
})

const call = async (path: string, body: unknown, headers: Record<string, string> = { authorization: `Bearer ${TOKEN}` }, method = 'POST') => {
  const response = await fetch(`${service.url}${path}`, { method, headers: { 'content-type': 'application/json', ...headers }, ...(method === 'POST' ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}) })
  return { status: response.status, json: (await response.json()) as Record<string, unknown> }
}

const facts = (extra: Record<string, unknown> = {}) => ({ scheme: 'https', host: 'api.alpha.test', port: 443, path: '/v1/models?x=1', method: 'GET', ...extra })

describe('POST /v1/decide', () => {
  it('answers a matched request with the Inject decision and its audit records (docs/spec.md §8 shapes)', async () => {
    const { status, json } = await call('/v1/decide', facts())
    expect(status).toBe(200)
    expect(json['decision']).toEqual({ _tag: 'Inject', headers: { Authorization: `Bearer ${KEY}` } })
    expect(json['audit']).toEqual([{ event: 'proxy_inject', source: 'external', provider: 'alpha', connection: 'default', metadata: { host: 'api.alpha.test', method: 'GET', path: '/v1/models' } }])
    expect(json['decisionId']).toMatch(/^[0-9a-f-]{36}$/)
  })

  it.each([
    [facts({ path: '/v2/x' }), 'no_match'],
    [facts({ hostHeader: 'evil.test' }), 'host_mismatch'],
    [facts({ scheme: 'http', port: 80 }), 'insecure_scheme'],
    [facts({ dialedAddress: '10.0.0.7' }), 'local_destination'],
    [facts({ host: 'evilapi.alpha.test' }), 'no_match']
  ])('never returns a credential for a request that does not match (%j)', async (body, reason) => {
    const { json } = await call('/v1/decide', body)
    expect(json['decision']).toMatchObject({ _tag: 'Deny', reason, status: 403, closeTunnel: false })
    expect(JSON.stringify(json)).not.toContain(KEY)
  })

  it.each<[string, unknown, string]>([
    ['not JSON', '{"scheme": ', 'the body is not JSON'],
    ['a missing field', { scheme: 'https', host: 'a', path: '/', method: 'GET' }, 'malformed request facts'],
    ['a port out of range', facts({ port: 70000 }), 'malformed request facts'],
    ['an unknown key', facts({ hostheader: 'x' }), 'malformed request facts'],
    ['an array', [1, 2], 'malformed request facts']
  ])('rejects %s with 400 and says why', async (_, body, error) => {
    const { status, json } = await call('/v1/decide', body)
    expect(status).toBe(400)
    expect(json['error']).toBe(error)
    if (error !== 'the body is not JSON') expect((json['details'] as Array<string>).length).toBeGreaterThan(0)
  })

  it('answers an oversized body with 413 instead of resetting the connection', async () => {
    const { status, json } = await call('/v1/decide', JSON.stringify(facts({ path: `/v1/${'x'.repeat(200_000)}` })))
    expect(status).toBe(413)
    expect(json['error']).toBe('the body must be JSON of at most 65536 bytes')
  })

  it('names the failing field and never echoes values', async () => {
    const { json } = await call('/v1/decide', facts({ port: 'sk-not-a-port', hostheader: 'secret-ish' }))
    expect(JSON.stringify(json['details'])).toContain('hostheader: unknown key `hostheader`')
    expect(JSON.stringify(json)).not.toContain('secret-ish')
  })
})

describe('POST /v1/tunnel', () => {
  it.each([
    [{ host: 'api.alpha.test', port: 443 }, 'Intercept'],
    [{ host: 'pypi.test', port: 443 }, 'Tunnel'],
    [{ host: 'example.test', port: 443 }, 'Deny']
  ])('decides %j before any TLS: %s', async (body, tag) => {
    const { json } = await call('/v1/tunnel', body)
    expect((json['decision'] as { _tag: string })._tag).toBe(tag)
  })
})

describe('the shared token', () => {
  it('is required when configured', async () => {
    expect((await call('/v1/decide', facts(), {})).status).toBe(401)
    expect((await call('/v1/decide', facts(), { authorization: 'Bearer wrong' })).status).toBe(401)
    expect((await call('/v1/decide', facts(), { 'x-egress-guard-token': TOKEN })).status).toBe(200)
  })

  it('is not needed for /healthz, which tells the mode', async () => {
    const response = await fetch(`${service.url}/healthz`)
    expect(await response.json()).toEqual({ mode: 'connected_deny' })
  })
})
