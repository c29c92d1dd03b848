// The known traps of proxy libraries, continued (proxy.traps.test.ts has the first part): WebSocket
// and other upgrades, HTTP/2, plain text, client resets, and the upstream side (TLS verification,
// keep-alive, the dialled address, the CA key), through every engine's real proxy.
import { lookup } from 'node:dns/promises'
import { statSync } from 'node:fs'
import http2 from 'node:http2'
import { connect } from 'node:net'
import { hostname } from 'node:os'
import { join } from 'node:path'

import * as E from 'fp-ts/lib/Either.js'
import { describe, expect, it } from 'vitest'

import { isLocalHost, parseHost } from '../../core/index.js'
import { fetch as undiciFetch, ProxyAgent } from 'undici'

import { curl } from './support/clients.js'
import { ADAPTER_TRAITS, ADAPTERS, policyText, SECRETS, startHarness, startProxy, useTrapHarnesses, type Harness } from './support/harness.js'
import { startUpstream } from './support/upstream.js'
import { exchange, openTunnel } from './support/rawTunnel.js'
import { websocketThrough } from './support/websocket.js'

describe.each(ADAPTERS)('%s traps: upgrades, HTTP/2 and upstreams', (adapter) => {
  let deny: Harness
  let allow: Harness
  useTrapHarnesses(adapter, (started) => {
    ;({ deny, allow } = started)
  })

  it('decides WebSocket upgrades too: credentials are injected into the upgrade', async () => {
    const result = await websocketThrough(deny.proxy.port, deny.proxy.caCertPem, 'api.alpha.test', '/v1/realtime', { authorization: 'Bearer client' })
    expect(result).toMatchObject({ opened: true, echo: 'alpha:ping' })
    const upgrade = deny.upstreams.alpha.received.filter((r) => r.websocket).at(-1)
    expect(upgrade?.headers.authorization).toBe(`Bearer ${SECRETS.alpha}`)
  })

  it(`decides WebSocket upgrades too: a denied upgrade is refused (${ADAPTER_TRAITS[adapter].refusesWebSocketWith}) and never reaches the upstream`, async () => {
    const before = deny.upstreams.alpha.received.filter((r) => r.websocket).length
    const result = await websocketThrough(deny.proxy.port, deny.proxy.caCertPem, 'api.alpha.test', '/v2/realtime')
    if (ADAPTER_TRAITS[adapter].refusesWebSocketWith === 'close 1008') expect(result.closeCode).toBe(1008)
    else expect(result).toMatchObject({ opened: false, refusedStatus: 403 })
    expect(result.echo).toBeUndefined()
    expect(deny.upstreams.alpha.received.filter((r) => r.websocket)).toHaveLength(before)
  })

  it('never sends a credential in plain text: not for a CONNECT inside the tunnel, nor an http:// target in it', async () => {
    // The routed host is pointed at a plain-HTTP listener: anything that reaches it was sent in clear.
    const rules = [{ host: 'api.alpha.test', port: 443, toHost: '127.0.0.1', toPort: deny.upstreams.plain.port }]
    const proxy = await startProxy(adapter, { guard: deny.guard, configDir: join(deny.dir, 'config-plain'), upstreamCa: [deny.pki.caPem], connectTo: rules, log: () => undefined })
    const before = deny.upstreams.plain.received.length
    try {
      const tunnel = await openTunnel(proxy.port, proxy.caCertPem, 'api.alpha.test')
      if (tunnel !== undefined) {
        await exchange(tunnel, ['CONNECT api.alpha.test:443 HTTP/1.1\r\nHost: api.alpha.test:443\r\n\r\n', 'GET /v1/models HTTP/1.1\r\nHost: api.alpha.test\r\n\r\n'])
      }
      await curl(proxy.url, proxy.caCertPath, 'https://api.alpha.test/v1/models', ['--request-target', 'http://api.alpha.test/v1/models'])
      await curl(proxy.url, proxy.caCertPath, 'https://api.alpha.test/v1/models')
    } finally {
      await proxy.close()
    }
    const cleartext = deny.upstreams.plain.received.slice(before)
    expect(cleartext.filter((r) => JSON.stringify(r.headers).includes(SECRETS.alpha))).toEqual([])
  })

  it('survives clients that reset right after a CONNECT to a routed host still being resolved', async () => {
    for (let i = 0; i < 30; i++) {
      await new Promise<void>((resolve) => {
        const socket = connect(deny.proxy.port, '127.0.0.1', () => {
          socket.write('CONNECT api.delta.test:443 HTTP/1.1\r\nHost: api.delta.test:443\r\n\r\n')
          setTimeout(() => socket.resetAndDestroy(), i % 3)
        })
        socket.on('error', () => undefined)
        socket.on('close', () => resolve())
      })
    }
    await new Promise((resolve) => setTimeout(resolve, 300))
    expect((await curl(deny.proxy.url, deny.proxyCaPath, 'https://api.alpha.test/v1/models')).status).toBe(200)
  })

  it.each([
    ['h2c', 'GET', 'Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n'],
    ['a made-up protocol', 'GET', 'Connection: Upgrade\r\nUpgrade: tunnel/1\r\n'],
    ['websocket on a POST', 'POST', 'Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nContent-Length: 0\r\n']
  ])('never splices a connection for an upgrade other than a WebSocket GET (%s): no request rides past the policy', async (_name, method, upgrade) => {
    const before = allow.upstreams.alpha.received.length
    const tunnel = await openTunnel(allow.proxy.port, allow.proxy.caCertPem, 'api.alpha.test')
    expect(tunnel).toBeDefined()
    const answer = await exchange(tunnel!, [`${method} /v1/models HTTP/1.1\r\nHost: api.alpha.test\r\n${upgrade}\r\n`, 'DELETE /unrouted HTTP/1.1\r\nHost: api.alpha.test\r\n\r\n'])
    expect(answer).not.toMatch(/^HTTP\/1\.1 101/)
    // Nothing reached the upstream as an upgrade, and nothing unjudged: a DELETE on an unrouted
    // path is forwarded (allow mode) only as its own, judged request, never with the credential.
    for (const request of allow.upstreams.alpha.received.slice(before)) {
      expect(request.method).not.toBe('SPLICED')
      expect(request.headers.upgrade).toBeUndefined()
      if (request.path === '/unrouted') expect(request.headers.authorization).toBeUndefined()
    }
  })

  it('never forwards a request with two Host headers under a credential', async () => {
    const before = deny.upstreams.alpha.received.length
    const tunnel = await openTunnel(deny.proxy.port, deny.proxy.caCertPem, 'api.alpha.test')
    expect(tunnel).toBeDefined()
    const answer = await exchange(tunnel!, ['GET /v1/models HTTP/1.1\r\nHost: api.alpha.test\r\nHost: evil.test\r\n\r\n'])
    // Refused (mockttp would forward both), or forwarded with only the Host the policy judged.
    const forwarded = deny.upstreams.alpha.received.slice(before)
    if (forwarded.length === 0) expect(answer).toMatch(/^HTTP\/1\.1 400/)
    for (const request of forwarded) {
      expect(request.rawNames.filter((n) => n === 'host')).toHaveLength(1)
      expect(request.headers.host).toBe('api.alpha.test')
    }
  })

  it.runIf(ADAPTER_TRAITS[adapter].speaksHttp2ToClients)('speaks HTTP/2 in a tunnel: requests are judged as over HTTP/1.1, an absolute :path never reaches the upstream', async () => {
    const before = deny.upstreams.alpha.received.length
    const tunnel = await openTunnel(deny.proxy.port, deny.proxy.caCertPem, 'api.alpha.test', ['h2'])
    expect(tunnel?.alpnProtocol).toBe('h2')
    const session = http2.connect('https://api.alpha.test', { createConnection: () => tunnel! })
    session.on('error', () => undefined)
    const ask = (path: string): Promise<{ status: number; body: string }> =>
      new Promise((resolve) => {
        const stream = session.request({ ':method': 'GET', ':path': path })
        let body = ''
        let status = 0
        stream.setEncoding('utf8')
        stream.on('response', (headers) => (status = Number(headers[':status'])))
        stream.on('data', (chunk: string) => (body += chunk))
        stream.on('error', () => undefined)
        stream.on('close', () => resolve({ status, body }))
        stream.end()
      })
    // Streams are bounded: one client connection cannot fan out to thousands of upstream connections.
    expect(session.remoteSettings.maxConcurrentStreams).toBeLessThanOrEqual(100)
    const injected = await ask('/v1/models?over=h2')
    expect(injected.status).toBe(200)
    expect(deny.upstreams.alpha.received.at(-1)).toMatchObject({ path: '/v1/models?over=h2', headers: { authorization: `Bearer ${SECRETS.alpha}`, host: expect.stringMatching(/^api\.alpha\.test(?::443)?$/) } })
    const absolute = await ask('http://evil.test/v1/models')
    expect(absolute.status).not.toBe(200)
    const unrouted = await ask('/elsewhere')
    expect(unrouted).toEqual({ status: 403, body: expect.stringContaining('Forbidden by egress-guard proxy policy') })
    expect(deny.upstreams.alpha.received).toHaveLength(before + 1)
    session.destroy()
  })

  it.runIf(!ADAPTER_TRAITS[adapter].speaksHttp2ToClients)('does not speak HTTP/2 to clients: an h2-only TLS client gets no h2, and no request goes upstream', async () => {
    const before = deny.upstreams.alpha.received.length
    const tunnel = await openTunnel(deny.proxy.port, deny.proxy.caCertPem, 'api.alpha.test', ['h2'])
    expect(tunnel?.alpnProtocol ?? false).not.toBe('h2')
    tunnel?.destroy()
    const session = http2.connect(`http://127.0.0.1:${deny.proxy.port}`)
    session.on('error', () => undefined)
    const status = await new Promise<number>((resolve) => {
      const stream = session.request({ ':method': 'GET', ':path': '/v1/models', ':authority': 'api.alpha.test', ':scheme': 'http' })
      stream.on('response', (headers) => resolve(Number(headers[':status'])))
      stream.on('error', () => resolve(0))
      stream.on('close', () => resolve(0))
      stream.end()
    })
    session.destroy()
    expect(status).not.toBe(200)
    expect(deny.upstreams.alpha.received).toHaveLength(before)
    expect((await curl(deny.proxy.url, deny.proxyCaPath, 'https://api.alpha.test/v1/models')).status).toBe(200)
  })

  it('verifies upstream TLS: an upstream whose CA is not trusted gets nothing, the client a 502', async () => {
    const untrusting = await startHarness({ mode: 'connected_allow', adapter, trustUpstreamCa: false })
    try {
      const answer = await curl(untrusting.proxy.url, untrusting.proxyCaPath, 'https://api.alpha.test/v1/models')
      expect(answer).toEqual({ status: 502, body: 'Bad gateway: egress-guard could not complete the request upstream (UNABLE_TO_VERIFY_LEAF_SIGNATURE)' })
      expect(untrusting.upstreams.alpha.received).toHaveLength(0)
    } finally {
      await untrusting.close()
    }
  })

  it.runIf(ADAPTER_TRAITS[adapter].honoursUpstreamKeepAliveHint)('drops an idle upstream connection before the upstream’s own Keep-Alive timeout', async () => {
    // An upstream that closes idle connections after 2 s and says so (Keep-Alive: timeout=2).
    // Reusing a connection it is closing at that very moment fails the request (ECONNRESET).
    const brief = await startUpstream('brief', allow.pki.leaf(['api.alpha.test']), { keepAliveTimeoutMs: 2_000 })
    const rules = [{ host: 'api.alpha.test', port: 443, toHost: '127.0.0.1', toPort: brief.port }]
    const proxy = await startProxy(adapter, { guard: allow.guard, configDir: join(allow.dir, 'config-brief'), upstreamCa: [allow.pki.caPem], connectTo: rules, log: () => undefined })
    try {
      // One client connection, kept alive, so that only the proxy's upstream side can differ.
      const dispatcher = new ProxyAgent({ uri: proxy.url, requestTls: { ca: proxy.caCertPem }, connections: 1 })
      const get = async () => (await (await undiciFetch('https://api.alpha.test/v1/models', { dispatcher })).text()).length > 0
      expect(await get()).toBe(true)
      await new Promise((resolve) => setTimeout(resolve, 1_500))
      expect(await get()).toBe(true)
      await dispatcher.close()
      expect(brief.received).toHaveLength(2)
      expect(brief.connections()).toBe(2)
    } finally {
      await proxy.close()
      await brief.close()
    }
  })

  it('verifies upstream TLS: a certificate for another name is refused', async () => {
    const impostor = await startUpstream('impostor', allow.pki.leaf(['not-alpha.test']))
    const rules = [{ host: 'api.alpha.test', port: 443, toHost: '127.0.0.1', toPort: impostor.port }]
    const proxy = await startProxy(adapter, { guard: allow.guard, configDir: join(allow.dir, 'config-impostor'), upstreamCa: [allow.pki.caPem], connectTo: rules, log: () => undefined })
    try {
      const answer = await curl(proxy.url, proxy.caCertPath, 'https://api.alpha.test/v1/models')
      expect(answer).toEqual({ status: 502, body: 'Bad gateway: egress-guard could not complete the request upstream (ERR_TLS_CERT_ALTNAME_INVALID)' })
      expect(impostor.received).toHaveLength(0)
    } finally {
      await proxy.close()
      await impostor.close()
    }
  })

  // This machine's own name resolves (through /etc/hosts) to a local address: a route for it
  // must never receive credentials, because the address the proxy would dial is checked.
  const self = hostname()
  const selfAddress = lookup(self).then((r) => r.address, () => undefined)
  it('checks the address it dials: a routed name that resolves to a local address is local_destination', async (context) => {
    const address = await selfAddress
    const parsed = parseHost(address)
    if (address === undefined || E.isLeft(parsed) || !isLocalHost(parsed.right)) return context.skip()
    const harness = await startHarness({
      mode: 'connected_deny',
      adapter,
      policy: policyText('connected_deny')
        .replace('providers:\n', `providers:\n  - name: self\n    apiUrl: https://${self}/\n`)
        .replace('passthrough:', '  - provider: self\n    name: default\n    credentials: { headers: { Authorization: "Bearer ${env:EG_ALPHA_KEY}" } }\npassthrough:')
    })
    try {
      const answer = await curl(harness.proxy.url, harness.proxyCaPath, `https://${self}/v1/models`)
      expect(answer).toEqual({ status: 403, body: 'Forbidden by egress-guard proxy policy (local_destination)' })
      expect(await harness.auditText()).toContain('"reason":"local_destination"')
    } finally {
      await harness.close()
    }
  })

  it('keeps its CA key in the config directory, readable by the owner only', () => {
    const keys = join(allow.dir, 'config', 'keys')
    expect(statSync(join(keys, 'ca.private.key')).mode & 0o777).toBe(0o600)
    expect(statSync(join(allow.dir, 'config')).mode & 0o777).toBe(0o700)
  })
})
