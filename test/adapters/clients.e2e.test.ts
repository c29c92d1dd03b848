// Clients (docs/spec.md §9) through every engine's real proxy: with clients in the policy, every
// CONNECT and proxy request must authenticate as one (407 otherwise, nothing forwarded); a
// client's mode and connections decide its requests; the requests inside a tunnel belong to the
// client that opened it; every record names its client, and no record or answer shows a token.
import { connect } from 'node:net'
import { connect as tlsConnect, type TLSSocket } from 'node:tls'

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

/** Sends one request on a kept-alive connection and resolves with its status line (or '(closed)'). */
// The status line of the answer to `request`: what is left of the answer before it (the end of a
// chunked body) is skipped.
const statusOf = (socket: TLSSocket, request: string): Promise<string> =>
  new Promise((resolve) => {
    let text = ''
    const head = (): string | undefined => /(HTTP\/1\.1 [0-9]{3}[^\r\n]*)\r\n(?:[^\r\n]+\r\n)*\r\n/.exec(text)?.[1]
    const onData = (d: Buffer): void => {
      text += d.toString('latin1')
      const line = head()
      if (line === undefined) return
      socket.off('data', onData)
      resolve(line)
    }
    socket.on('data', onData)
    socket.once('close', () => resolve(head() ?? (text === '' ? '(closed)' : (text.split('\r\n')[0] ?? ''))))
    socket.write(request)
  })

// A tunnel keeps its client only while the client's credentials hold: after a policy change (a
// token revoked or rotated), the next request in a tunnel opened before is refused.
describe.each(ADAPTERS)('a tunnel’s client after its token changes, on %s', (adapter) => {
  let h: Harness
  const env: Record<string, string> = { EG_ALPHA_KEY: SECRETS.alpha, EG_BETA_KEY: SECRETS.beta, CI_TOKEN: TOKENS.ci, READER_TOKEN: TOKENS.reader }
  beforeAll(async () => {
    const policy = POLICY.replace(`"${TOKENS.ci}"`, '"${env:CI_TOKEN}"').replace(`"${TOKENS.reader}"`, '"${env:READER_TOKEN}"')
    h = await startHarness({ mode: 'connected_allow', adapter, policy, guard: { env, clientTokens: new Map([['ci-job', TOKENS.ci], ['reader', TOKENS.reader]]) } })
  })
  afterAll(async () => {
    await h.close()
  })

  it('refuses the next request in an open tunnel once its client’s token is no longer the one it opened with', async () => {
    const socket = connect(h.proxy.port, '127.0.0.1')
    await new Promise((resolve) => socket.once('connect', resolve))
    socket.write(`CONNECT api.alpha.test:443 HTTP/1.1\r\nHost: api.alpha.test:443\r\nProxy-Authorization: Basic ${Buffer.from(`ci-job:${TOKENS.ci}`).toString('base64')}\r\n\r\n`)
    await new Promise((resolve) => socket.once('data', resolve))
    const tunnel = tlsConnect({ socket, servername: 'api.alpha.test', ca: h.proxy.caCertPem, ALPNProtocols: ['http/1.1'] })
    await new Promise((resolve) => tunnel.once('secureConnect', resolve))
    const get = 'GET /v1/models HTTP/1.1\r\nHost: api.alpha.test\r\n\r\n'
    expect(await statusOf(tunnel, get)).toBe('HTTP/1.1 200 OK')
    const injected = h.upstreams.alpha.received.length

    await h.guard.reload() // the same tokens: the tunnel goes on
    expect(await statusOf(tunnel, get)).toBe('HTTP/1.1 200 OK')
    expect(h.upstreams.alpha.received).toHaveLength(injected + 1)

    env['CI_TOKEN'] = 'tok-rotated-0123456789abcdef'
    await h.guard.reload()
    expect(await statusOf(tunnel, get)).toBe('HTTP/1.1 407 Proxy Authentication Required')
    expect(h.upstreams.alpha.received).toHaveLength(injected + 1)
    tunnel.destroy()
  })
})
