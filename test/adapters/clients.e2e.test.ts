// Clients (docs/spec.md §9) through every engine's real proxy: with clients in the policy, every
// CONNECT and proxy request must authenticate as one (407 otherwise, nothing forwarded); a
// client's mode and connections decide its requests; the requests inside a tunnel belong to the
// client that opened it; every record names its client, and no record or answer shows a token.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { curl, nodeFetch } from './support/clients.js'
import { ADAPTERS, SECRETS, startHarness, type Harness } from './support/harness.js'

const TOKENS = { ci: 'tok-ci-0123456789abcdef', reader: 'tok-reader-fedcba9876543210' }

// Two providers; the policy's mode allows, ci-job denies and may use alpha only, reader may use beta only.
const POLICY = `
mode: connected_allow
providers:
  - { name: alpha, apiUrl: "https://api.alpha.test/v1" }
  - { name: beta, apiUrl: "regex:(?:[a-z0-9-]+\\\\.)?beta\\\\.test" }
connections:
  - { provider: alpha, name: default, credentials: { headers: { Authorization: "Bearer \${env:EG_ALPHA_KEY}" } } }
  - { provider: beta, name: default, credentials: { headers: { x-api-key: "\${env:EG_BETA_KEY}" } } }
clients:
  - { name: ci-job, token: "${TOKENS.ci}", mode: connected_deny, connections: [alpha/default] }
  - { name: reader, token: "${TOKENS.reader}", connections: [beta/default] }
`

describe.each(ADAPTERS)('clients on %s', (adapter) => {
  let h: Harness
  const as = (name: string, token: string) => h.proxy.url.replace('http://', `http://${name}:${token}@`)
  const trust = () => `${h.proxy.caCertPem}\n${h.pki.caPem}`
  beforeAll(async () => {
    h = await startHarness({ mode: 'connected_allow', adapter, policy: POLICY, guard: { clientTokens: new Map([['ci-job', TOKENS.ci], ['reader', TOKENS.reader]]) } })
  })
  afterAll(async () => {
    await h.close()
  })

  it('refuses a proxy request that does not authenticate as a client (407), forwarding nothing, recorded with no client', async () => {
    const before = h.upstreams.alpha.received.length
    for (const proxy of [h.proxy.url, as('ci-job', 'tok-wrong-0000000000000'), as('nobody', TOKENS.ci), as('reader', TOKENS.ci)]) {
      expect((await curl(proxy, h.proxyCaPath, 'https://api.alpha.test/v1/models')).status).toBe(0)
    }
    expect((await curl(h.proxy.url, h.proxyCaPath, 'http://api.alpha.test/v1/models')).status).toBe(407)
    expect(h.upstreams.alpha.received).toHaveLength(before)
    const refused = (await h.auditEntries()).filter((e) => e.metadata['reason'] === 'unauthenticated')
    expect(refused.length).toBeGreaterThanOrEqual(5)
    expect(refused.every((e) => e.client === null)).toBe(true)
  })

  it('injects for a client on a connection it may use, and records the client', async () => {
    const answer = await curl(as('ci-job', TOKENS.ci), h.proxyCaPath, 'https://api.alpha.test/v1/models')
    expect(answer.status).toBe(200)
    expect(h.upstreams.alpha.received.at(-1)?.headers.authorization).toBe(`Bearer ${SECRETS.alpha}`)
    expect((await h.auditEntries()).at(-1)).toMatchObject({ event: 'proxy_inject', client: 'ci-job', mode: 'connected_deny', provider: 'alpha' })
  })

  it('decides in the client’s own mode: a host it has no route to is refused for ci-job (deny), passed untouched for reader (the policy’s allow)', async () => {
    const before = h.upstreams.beta.received.length
    expect((await nodeFetch(as('ci-job', TOKENS.ci), trust(), 'https://x.beta.test/v1')).status).toBe(0)
    expect(h.upstreams.beta.received).toHaveLength(before)
    expect((await h.auditEntries()).filter((e) => e.client === 'ci-job').at(-1)).toMatchObject({ event: 'proxy_deny', metadata: { host: 'x.beta.test', reason: 'no_match' } })
    const passed = await nodeFetch(as('reader', TOKENS.reader), trust(), 'https://api.alpha.test/v1/models', { authorization: 'Bearer reader-own' })
    expect(passed.status).toBe(200)
    expect(h.upstreams.alpha.received.at(-1)?.headers.authorization).toBe('Bearer reader-own')
    expect((await h.auditEntries()).filter((e) => e.client === 'reader').at(-1)).toMatchObject({ event: 'proxy_miss', metadata: { host: 'api.alpha.test', reason: 'no_match' } })
  })

  it('gives each client the credentials of its own connections only', async () => {
    const answer = await nodeFetch(as('reader', TOKENS.reader), trust(), 'https://x.beta.test/v1/items')
    expect(answer.status).toBe(200)
    expect(h.upstreams.beta.received.at(-1)?.headers['x-api-key']).toBe(SECRETS.beta)
    expect((await h.auditEntries()).at(-1)).toMatchObject({ event: 'proxy_inject', client: 'reader', provider: 'beta' })
  })

  it('never shows a token in a record or an answer', async () => {
    const text = await h.auditText()
    for (const token of Object.values(TOKENS)) expect(text).not.toContain(token)
    const refused = await curl(as('ci-job', 'tok-wrong-0000000000000'), h.proxyCaPath, 'http://api.alpha.test/v1/models')
    expect(refused.body).not.toContain('tok-')
  })
})
