// A proxy that requires its clients to authenticate (what `run` does for its child, docs/spec.md §9):
// every CONNECT and plain proxy request without the right `Proxy-Authorization: Basic` gets 407
// with the Basic challenge, nothing reaches an upstream, and an `unauthenticated` record names no
// client; clients given `http://name:token@host:port` (curl, Python's urllib) get through. Both engines.
import { connect } from 'node:net'

import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { curl, pythonUrllib } from './support/clients.js'
import { ADAPTERS, SECRETS, startHarness, type Harness } from './support/harness.js'

const CLIENT = { name: 'ci-job', token: 'tok-3f9a7c1e5b2d8f40' }

/** Sends raw bytes to the proxy port and returns everything it answers until it closes. */
const raw = (port: number, text: string): Promise<string> =>
  new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(text))
    let answer = ''
    socket.on('data', (d: Buffer) => (answer += d.toString('latin1')))
    socket.on('close', () => resolve(answer))
    socket.on('error', () => resolve(answer))
    setTimeout(() => socket.destroy(), 5_000).unref()
  })

const basic = (name: string, token: string): string => `Basic ${Buffer.from(`${name}:${token}`).toString('base64')}`

describe.each(ADAPTERS)('proxy authentication on %s', (adapter) => {
  let h: Harness
  let authed = ''
  beforeAll(async () => {
    h = await startHarness({ mode: 'connected_deny', adapter, proxy: { proxyAuthentication: CLIENT } })
    authed = h.proxy.url.replace('http://', `http://${CLIENT.name}:${CLIENT.token}@`)
  })
  afterAll(async () => {
    await h.close()
  })

  it.each([
    ['no Proxy-Authorization', ''],
    ['a wrong token', `Proxy-Authorization: ${basic(CLIENT.name, 'tok-wrong-00000000')}\r\n`],
    ['a wrong name', `Proxy-Authorization: ${basic('other', CLIENT.token)}\r\n`],
    ['a malformed header', 'Proxy-Authorization: Basic !!!\r\n'],
    ['another scheme', `Proxy-Authorization: Bearer ${CLIENT.token}\r\n`]
  ])('refuses a CONNECT with %s: 407 and the Basic challenge, nothing forwarded', async (_, header) => {
    const before = h.upstreams.alpha.received.length
    const answer = await raw(h.proxy.port, `CONNECT api.alpha.test:443 HTTP/1.1\r\nHost: api.alpha.test:443\r\n${header}\r\n`)
    expect(answer).toMatch(/^HTTP\/1\.1 407 Proxy Authentication Required\r\n/)
    expect(answer).toContain('\r\nProxy-Authenticate: Basic realm="egress-guard"\r\n')
    expect(answer).toContain('\r\nX-Egress-Guard-Reason: unauthenticated\r\n')
    expect(h.upstreams.alpha.received).toHaveLength(before)
  })

  it('refuses a plain proxy request without credentials with 407, and records it naming no client', async () => {
    const answer = await raw(h.proxy.port, 'GET http://api.alpha.test/v1/x HTTP/1.1\r\nHost: api.alpha.test\r\nConnection: close\r\n\r\n')
    expect(answer).toMatch(/^HTTP\/1\.1 407 /)
    expect(answer.toLowerCase()).toContain('proxy-authenticate: basic realm="egress-guard"')
    const refusals = (await h.auditEntries()).filter((e) => e.metadata['reason'] === 'unauthenticated')
    expect(refusals.length).toBeGreaterThanOrEqual(6)
    for (const r of refusals) expect(r).toMatchObject({ event: 'proxy_deny', provider: null, connection: null })
  })

  it('lets curl and Python through with http://name:token@host:port, and the key is injected', async () => {
    expect((await curl(authed, h.proxyCaPath, 'https://api.alpha.test/v1/models')).status).toBe(200)
    expect(h.upstreams.alpha.received.at(-1)?.headers.authorization).toBe(`Bearer ${SECRETS.alpha}`)
    expect((await pythonUrllib(authed, h.proxyCaPath, 'https://api.alpha.test/v1/models')).status).toBe(200)
    expect(h.upstreams.alpha.received.at(-1)?.headers['proxy-authorization']).toBeUndefined()
  })

  it('never writes the token into a record', async () => {
    expect(await h.auditText()).not.toContain(CLIENT.token)
  })
})
