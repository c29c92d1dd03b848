// The decision service with clients in the policy (docs/spec.md §9): the caller authenticated the
// client and names it in the body; that client's mode and connections decide, and its records
// name it. A name the policy does not list is an error, never a guess.
import * as E from 'fp-ts/lib/Either.js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { parsePolicyText } from '../../../adapters/config/PolicyFile.js'
import { startDecisionService, type RunningDecisionService } from '../../../adapters/decision-service/decisionService.js'
import { createGuard } from '../../../adapters/guard/createGuard.js'
import type { AuditEntry } from '../../../adapters/ports.js'
import { KEY, POLICY, TOKEN } from './support.js'

const WITH_CLIENTS = `${POLICY('connected_allow')}clients:
  - { name: ci-job, token: "\${env:CI_TOKEN}", mode: connected_deny, connections: [beta/default] }
`

let service: RunningDecisionService
const audit: Array<AuditEntry> = []
beforeAll(async () => {
  const loaded = parsePolicyText(WITH_CLIENTS)
  if (E.isLeft(loaded)) throw new Error(loaded.left.messages.join())
  const guard = createGuard({
    policy: loaded.right,
    env: { KEY },
    clientTokens: new Map([['ci-job', 'tok-ci-0123456789abcdef']]),
    log: () => undefined,
    audit: { write: (e) => audit.push(e), flush: async () => undefined, close: async () => undefined, dropped: () => 0 }
  })
  service = await startDecisionService({ guard, token: TOKEN })
})
afterAll(async () => {
  await service.close()
})

const call = async (path: string, body: unknown) => {
  const response = await fetch(`${service.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
  return { status: response.status, json: (await response.json()) as Record<string, unknown> }
}
const facts = (extra: Record<string, unknown>) => ({ scheme: 'https', host: 'api.alpha.test', port: 443, path: '/v1/models', method: 'GET', ...extra })

describe('the decision service with clients', () => {
  it('decides for the client the body names, in its mode and with its connections only, and records it', async () => {
    const own = await call('/v1/decide', facts({ client: 'ci-job', host: 'api.beta.test', path: '/x' }))
    expect(own.json['decision']).toEqual({ _tag: 'Inject', headers: { 'x-api-key': KEY } })
    expect(audit.at(-1)).toMatchObject({ client: 'ci-job', mode: 'connected_deny', event: 'proxy_inject' })
    const other = await call('/v1/decide', facts({ client: 'ci-job' }))
    expect(other.json['decision']).toMatchObject({ _tag: 'Deny', reason: 'no_match' })
    expect(JSON.stringify(other.json)).not.toContain(KEY)
    const tunnel = await call('/v1/tunnel', { host: 'api.alpha.test', port: 443, client: 'ci-job' })
    expect(tunnel.json['decision']).toEqual({ _tag: 'Deny', reason: 'no_match' })
  })

  it('decides a request without a client under the policy’s own mode and routes, recorded with no client', async () => {
    const { json } = await call('/v1/decide', facts({}))
    expect(json['decision']).toEqual({ _tag: 'Inject', headers: { Authorization: `Bearer ${KEY}` } })
    expect(audit.at(-1)).toMatchObject({ client: null, mode: 'connected_allow' })
  })

  it.each(['/v1/decide', '/v1/tunnel'])('refuses a client the policy does not list on %s (400), deciding nothing', async (path) => {
    const before = audit.length
    const { status, json } = await call(path, path === '/v1/tunnel' ? { host: 'api.alpha.test', port: 443, client: 'ghost' } : facts({ client: 'ghost' }))
    expect(status).toBe(400)
    expect(json).toEqual({ error: 'unknown client', details: ['client: the policy lists no client `ghost`; name one of its clients'] })
    expect(audit).toHaveLength(before)
  })
})
