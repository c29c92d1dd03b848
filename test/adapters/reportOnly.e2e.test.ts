// Report-only enforcement (docs/spec.md §11) through every engine's real proxy, in connected_deny:
// what the mode denies is carried out as a pass without credentials and recorded as
// proxy_would_deny; what it injects is injected as under enforce; and a client that does not
// authenticate to the proxy is still refused.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { curl, nodeFetch } from './support/clients.js'
import { ADAPTERS, SECRETS, startHarness, type Harness } from './support/harness.js'

const CLIENT = { name: 'agent', token: 'tok-report-0123456789abcdef' }

describe.each(ADAPTERS)('report-only enforcement on %s, connected_deny', (adapter) => {
  let h: Harness
  let authed = ''
  beforeAll(async () => {
    h = await startHarness({ mode: 'connected_deny', adapter, guard: { enforcement: 'report' }, proxy: { proxyAuthentication: CLIENT } })
    authed = h.proxy.url.replace('http://', `http://${CLIENT.name}:${CLIENT.token}@`)
  })
  afterAll(async () => {
    await h.close()
  })

  const lastRecord = async (host: string) => (await h.auditEntries()).filter((e) => e.metadata['host'] === host).at(-1)

  it('injects a routed request exactly as enforce would', async () => {
    const answer = await curl(authed, h.proxyCaPath, 'https://api.alpha.test/v1/models', ['-H', 'Authorization: Bearer client-own'])
    expect(answer.status).toBe(200)
    expect(h.upstreams.alpha.received.at(-1)?.headers.authorization).toBe(`Bearer ${SECRETS.alpha}`)
    expect(await lastRecord('api.alpha.test')).toMatchObject({ event: 'proxy_inject', enforcement: 'report', mode: 'connected_deny' })
  })

  it('passes a request outside the route without credentials (the client’s own header kept), recorded as proxy_would_deny', async () => {
    const answer = await curl(authed, h.proxyCaPath, 'https://api.alpha.test/v2/files', ['-H', 'Authorization: Bearer client-own'])
    expect(answer.status).toBe(200)
    expect(h.upstreams.alpha.received.at(-1)).toMatchObject({ path: '/v2/files', headers: { authorization: 'Bearer client-own' } })
    expect(await lastRecord('api.alpha.test')).toMatchObject({ event: 'proxy_would_deny', enforcement: 'report', metadata: { reason: 'no_match' } })
  })

  it('opens a tunnel the mode would refuse, untouched, recorded as proxy_would_deny', async () => {
    const before = h.upstreams.other.received.length
    const answer = await nodeFetch(authed, `${h.proxy.caCertPem}\n${h.pki.caPem}`, 'https://other.test/x', { authorization: 'Bearer client-own' })
    expect(answer.status).toBe(200)
    expect(h.upstreams.other.received).toHaveLength(before + 1)
    expect(h.upstreams.other.received.at(-1)?.headers.authorization).toBe('Bearer client-own')
    expect(await lastRecord('other.test')).toMatchObject({ event: 'proxy_would_deny', metadata: { reason: 'no_match' } })
  })

  it('never sends a credential over plain http: the request passes without it', async () => {
    const answer = await curl(authed, h.proxyCaPath, 'http://api.alpha.test/v1/models')
    expect(answer.status).toBe(200)
    expect(h.upstreams.plain.received.at(-1)?.headers.authorization).toBeUndefined()
    expect(await lastRecord('api.alpha.test')).toMatchObject({ event: 'proxy_would_deny', metadata: { reason: 'insecure_scheme' } })
  })

  it('still refuses a client that does not authenticate to the proxy (407), forwarding nothing', async () => {
    const before = h.upstreams.alpha.received.length
    const answer = await curl(h.proxy.url, h.proxyCaPath, 'https://api.alpha.test/v1/models')
    expect(answer.status).toBe(0) // curl fails the CONNECT on its 407
    expect(h.upstreams.alpha.received).toHaveLength(before)
    const refused = (await h.auditEntries()).filter((e) => e.metadata['reason'] === 'unauthenticated').at(-1)
    expect(refused).toMatchObject({ event: 'proxy_deny', enforcement: 'report' })
    expect(JSON.stringify(await h.auditEntries())).not.toContain(CLIENT.token)
  })
})
