// The known traps of proxy libraries, each shown to be closed through every engine's real proxy:
// requests, targets, hosts and bodies. proxy.upstream.traps.test.ts has upgrades, HTTP/2 and the
// upstream side. Where the engines differ in a way the policy allows, the difference is named in
// ADAPTER_TRAITS and documented in docs/engines.md.
import { writeFileSync } from 'node:fs'
import http from 'node:http'
import { connect } from 'node:net'
import { join } from 'node:path'

import { describe, expect, it } from 'vitest'

import WebSocket from 'ws'

import { NOT_A_PROXY_REQUEST } from '../../adapters/upstream/forwardedHeaders.js'

import { curl, nodeFetch } from './support/clients.js'
import { ADAPTERS, SECRETS, startProxy, useTrapHarnesses, type Harness } from './support/harness.js'
import { exchange, openTunnel } from './support/rawTunnel.js'
import { websocketThrough } from './support/websocket.js'

describe.each(ADAPTERS)('%s traps', (adapter) => {
  let deny: Harness
  let allow: Harness
  useTrapHarnesses(adapter, (started) => {
    ;({ deny, allow } = started)
  })

  it('an exception inside a hook answers our own body, echoes nothing, and the proxy keeps serving', async () => {
    const failed = await curl(deny.proxy.url, deny.proxyCaPath, 'https://api.alpha.test/v1/explode')
    expect(failed).toEqual({ status: 403, body: 'Forbidden by egress-guard proxy policy (internal_error)' })
    const next = await curl(deny.proxy.url, deny.proxyCaPath, 'https://api.alpha.test/v1/models')
    expect(next.status).toBe(200)
    expect(deny.upstreams.alpha.received.at(-1)?.path).toBe('/v1/models')
  })

  it('never forwards a request to itself: one addressed to the proxy is refused (400), and a proxy request naming the proxy ends there', async () => {
    const self = `127.0.0.1:${allow.proxy.port}`
    const before = (await allow.auditEntries()).length
    // Addressed to the proxy, not sent through it: the libraries would forward it to its Host.
    const direct = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      http.get({ host: '127.0.0.1', port: allow.proxy.port, path: '/x', headers: { host: self } }, (response) => {
        let body = ''
        response.on('data', (chunk: Buffer) => (body += chunk.toString()))
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body }))
      }).on('error', reject)
    })
    expect(direct).toEqual({ status: 400, body: NOT_A_PROXY_REQUEST })
    // A proxy request naming the proxy: judged once (a local destination, passed in this allow
    // mode), forwarded once, refused there. It used to go round thousands of times a second.
    expect(await curl(allow.proxy.url, allow.proxyCaPath, `http://${self}/x`)).toEqual({ status: 400, body: NOT_A_PROXY_REQUEST })
    // A WebSocket upgrade addressed to the proxy is not forwarded either (http-mitm-proxy accepts
    // every upgrade before any hook runs, so there it is closed with 1008 instead).
    const upgrade = await new Promise<string>((resolve) => {
      const ws = new WebSocket(`ws://${self}/x`)
      ws.on('unexpected-response', (_request, response) => resolve(`status ${response.statusCode}`))
      ws.on('close', (code) => resolve(`close ${code}`))
      ws.on('error', () => undefined)
    })
    expect(upgrade).toMatch(/^(status 400|close 1008)$/)
    const added = (await allow.auditEntries()).slice(before)
    expect(added.map((e) => [e.event, e.metadata['host'], e.metadata['reason']])).toEqual([['proxy_miss', '127.0.0.1', 'local_destination']])
  })

  it('refuses a denied CONNECT with a status line, so Node fetch fails at once instead of retrying', async () => {
    const answer = await nodeFetch(deny.proxy.url, deny.proxy.caCertPem, 'https://other.test/')
    expect(answer.status).toBe(0)
    const records = (await deny.auditEntries()).filter((e) => e.metadata['host'] === 'other.test')
    expect(records.map((r) => [r.event, r.metadata['reason']])).toEqual([['proxy_deny', 'no_match']])
  })

  it('answers a tunnel whose upstream cannot be reached with 502, so Node fetch does not retry', async () => {
    const proxy = await startProxy(adapter, {
      guard: allow.guard,
      configDir: join(allow.dir, 'config-dead'),
      connectTo: [{ host: 'dead.test', port: 443, toHost: '127.0.0.1', toPort: 9 }],
      log: () => undefined
    })
    try {
      expect((await nodeFetch(proxy.url, proxy.caCertPem, 'https://dead.test/')).status).toBe(0)
    } finally {
      await proxy.close()
    }
    expect((await allow.auditEntries()).filter((e) => e.metadata['host'] === 'dead.test')).toHaveLength(1)
  })

  it.each([
    ['an absolute URI with a port out of range', 'GET http://example.com:99999/ HTTP/1.1\r\nHost: example.com:99999\r\n\r\n'],
    ['a Host port the socket layer rejects', 'GET / HTTP/1.1\r\nHost: example.com:-1\r\n\r\n'],
    ['a WebSocket upgrade to an absolute URI', 'GET http://example.com/x HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n'],
    ['TLS straight to the proxy port, without CONNECT', '\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00'],
    ['a WebSocket upgrade without Host', 'GET /x HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n']
  ])('a client cannot crash the proxy with %s', async (_, raw) => {
    await new Promise<void>((resolve) => {
      const socket = connect(allow.proxy.port, '127.0.0.1', () => socket.write(raw))
      socket.on('data', () => socket.destroy())
      socket.on('close', () => resolve())
      socket.on('error', () => resolve())
      setTimeout(() => socket.destroy(), 2_000).unref()
    })
    await new Promise((resolve) => setTimeout(resolve, 100))
    const next = await curl(allow.proxy.url, allow.proxyCaPath, 'https://api.alpha.test/v1/models')
    expect(next.status).toBe(200)
  })

  it('catches an absolute http:// target naming another host inside the tunnel', async () => {
    const answer = await curl(deny.proxy.url, deny.proxyCaPath, 'https://api.alpha.test/v1/models', ['--http1.1', '--request-target', 'http://other.test/v1/models'])
    expect(answer).toEqual({ status: 403, body: 'Forbidden by egress-guard proxy policy (host_mismatch)' })
    // The same host is fine, and the request (with its credential) still goes upstream over TLS.
    const same = await curl(deny.proxy.url, deny.proxyCaPath, 'https://api.alpha.test/v1/models', ['--http1.1', '--request-target', 'http://api.alpha.test/v1/models?absolute=1'])
    expect(same.status).toBe(200)
    expect(deny.upstreams.alpha.received.at(-1)).toMatchObject({ path: '/v1/models?absolute=1', headers: { authorization: `Bearer ${SECRETS.alpha}` } })
  })

  // WHATWG reads the host after the last `@` of the authority (and `\\` ends it): a library that
  // splits on `:` or `/` sees `api.alpha.test` in each of these, the upstream a foreign host.
  it.each([
    'http://api.alpha.test:443@evil.test/v1/ui',
    'https://api.alpha.test@evil.test/v1/ui',
    'http://api.alpha.test:x@evil.test:443/v1/ui',
    'http://u@api.alpha.test@evil.test/v1/ui'
  ])('catches a host hidden behind user info inside the tunnel: %s', async (target) => {
    const before = deny.upstreams.alpha.received.length
    const answer = await curl(deny.proxy.url, deny.proxyCaPath, 'https://api.alpha.test/v1/models', ['--http1.1', '--request-target', target])
    expect(answer).toEqual({ status: 403, body: 'Forbidden by egress-guard proxy policy (host_mismatch)' })
    expect(deny.upstreams.alpha.received).toHaveLength(before)
    // In an allow mode it passes, never with the credential.
    const earlier = allow.upstreams.alpha.received.length
    const passed = await curl(allow.proxy.url, allow.proxyCaPath, 'https://api.alpha.test/v1/models', ['--http1.1', '--request-target', target])
    expect(passed.status).not.toBe(403)
    for (const seen of allow.upstreams.alpha.received.slice(earlier)) expect(seen.headers.authorization ?? '').not.toContain(SECRETS.alpha)
  })

  it('never records user info: an absolute target with user:password inside the tunnel is judged and logged without it', async () => {
    const answer = await curl(deny.proxy.url, deny.proxyCaPath, 'https://api.alpha.test/v1/models', ['--http1.1', '--request-target', 'https://someone:pa55w0rd-in-url@api.alpha.test/v1/ui?x=1'])
    expect(answer.status).toBe(200)
    expect(deny.upstreams.alpha.received.at(-1)).toMatchObject({ path: '/v1/ui?x=1', headers: { authorization: `Bearer ${SECRETS.alpha}` } })
    expect(await deny.auditText()).not.toContain('pa55w0rd-in-url')
    expect(await deny.auditText()).not.toContain('someone')
  })

  it.each(['authorization', 'keep-alive, Authorization', 'x-other,authorization'])('never lets `Connection: %s` strip or mark the injected credential', async (listed) => {
    const answer = await curl(deny.proxy.url, deny.proxyCaPath, 'https://api.alpha.test/v1/models', ['-H', `Connection: ${listed}`, '-H', 'Authorization: Bearer client-own'])
    expect(answer.status).toBe(200)
    const seen = deny.upstreams.alpha.received.at(-1)
    expect(seen?.headers.authorization).toBe(`Bearer ${SECRETS.alpha}`)
    expect(String(seen?.headers.connection ?? '')).not.toMatch(/authorization/i)
  })

  it('gives an HTTP/1.0 request without Host the tunnel’s host, never the dialled address', async () => {
    const tls = await openTunnel(deny.proxy.port, deny.proxy.caCertPem, 'api.alpha.test')
    expect(tls).toBeDefined()
    if (tls === undefined) return
    const before = deny.upstreams.alpha.received.length
    const reply = await exchange(tls, ['GET /v1/models HTTP/1.0\r\nAccept: */*\r\n\r\n'])
    expect(reply).toMatch(/^HTTP\/1\.[01] 200 /)
    expect(deny.upstreams.alpha.received).toHaveLength(before + 1)
    expect(deny.upstreams.alpha.received.at(-1)?.headers).toMatchObject({ host: 'api.alpha.test', authorization: `Bearer ${SECRETS.alpha}` })
  })

  it.each(['HTTP/1.0', 'HTTP/1.1'])('a WebSocket upgrade without Host inside a tunnel (%s) cannot crash the proxy', async (version) => {
    const tls = await openTunnel(deny.proxy.port, deny.proxy.caCertPem, 'api.alpha.test')
    expect(tls).toBeDefined()
    if (tls === undefined) return
    await exchange(tls, [`GET /v1/realtime ${version}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`])
    expect((await curl(deny.proxy.url, deny.proxyCaPath, 'https://api.alpha.test/v1/models')).status).toBe(200)
  })

  it('keeps a WebSocket upgrade whole when its Connection header also names the injected header', async () => {
    const result = await websocketThrough(deny.proxy.port, deny.proxy.caCertPem, 'api.alpha.test', '/v1/realtime', { connection: 'Upgrade, Authorization', authorization: 'Bearer client' })
    expect(result).toMatchObject({ opened: true, echo: 'alpha:ping' })
    expect(deny.upstreams.alpha.received.at(-1)).toMatchObject({ websocket: true, headers: { authorization: `Bearer ${SECRETS.alpha}` } })
  })

  it('refuses an HTTP/1.1 request without Host inside a tunnel (RFC 9112), never forwarding it', async () => {
    const tls = await openTunnel(deny.proxy.port, deny.proxy.caCertPem, 'api.alpha.test')
    expect(tls).toBeDefined()
    if (tls === undefined) return
    const before = deny.upstreams.alpha.received.length
    expect(await exchange(tls, ['GET /v1/models HTTP/1.1\r\n\r\n'])).toMatch(/^HTTP\/1\.1 400 /)
    expect(deny.upstreams.alpha.received).toHaveLength(before)
  })

  it('speaks HTTP/1.0 to a client that offers only that in ALPN (curl --http1.0)', async () => {
    const answer = await curl(deny.proxy.url, deny.proxyCaPath, 'https://api.alpha.test/v1/models', ['--http1.0'])
    expect(answer.status).toBe(200)
    expect(deny.upstreams.alpha.received.at(-1)?.headers.authorization).toBe(`Bearer ${SECRETS.alpha}`)
  })

  it('accepts any spelling of a routed host, normalised before the library sees it', async () => {
    for (const spelling of ['API.ALPHA.TEST', 'api.alpha.test.', 'Api.Alpha.Test.']) {
      const answer = await curl(allow.proxy.url, allow.proxyCaPath, `https://${spelling}/v1/models`)
      expect(answer.status).toBe(200)
    }
    expect(allow.upstreams.alpha.received.at(-1)?.headers.authorization).toBe(`Bearer ${SECRETS.alpha}`)
  })

  it('keeps connections alive (no `connection: close` on responses)', async () => {
    const answer = await nodeFetch(deny.proxy.url, deny.proxy.caCertPem, 'https://api.alpha.test/v1/models')
    expect(answer.status).toBe(200)
    expect(answer.headers?.['connection']).toBe('keep-alive')
  })

  it('streams a large request body through whole, with the credential injected', async () => {
    const size = 8 * 1024 * 1024
    const before = deny.upstreams.alpha.received.length
    const file = join(deny.dir, 'big.bin')
    writeFileSync(file, Buffer.alloc(size, 7))
    const answer = await curl(deny.proxy.url, deny.proxyCaPath, 'https://api.alpha.test/v1/files', ['-H', 'content-type: application/octet-stream', '--data-binary', `@${file}`])
    expect(answer.status).toBe(200)
    expect(deny.upstreams.alpha.received).toHaveLength(before + 1)
    expect(deny.upstreams.alpha.received.at(-1)?.bodyBytes).toBe(size)
    expect(deny.upstreams.alpha.received.at(-1)?.headers.authorization).toBe(`Bearer ${SECRETS.alpha}`)
  })

  it('decides on the headers, never waiting for the body: an injected request reaches the upstream, a denied one gets its 403, while the body is still unsent', async () => {
    const head = (path: string) => `POST ${path} HTTP/1.1\r\nHost: api.alpha.test\r\ncontent-type: application/octet-stream\r\ncontent-length: 1000000\r\n\r\n${'y'.repeat(10)}`
    const before = deny.upstreams.alpha.received.length
    const injected = await openTunnel(deny.proxy.port, deny.proxy.caCertPem, 'api.alpha.test')
    expect(injected).toBeDefined()
    await exchange(injected!, [head('/v1/upload')])
    // Reached while the body is still unsent; a loaded machine may take a moment past the exchange.
    for (let i = 0; i < 250 && deny.upstreams.alpha.received.length === before; i++) await new Promise((resolve) => setTimeout(resolve, 20))
    expect(deny.upstreams.alpha.received).toHaveLength(before + 1)
    expect(deny.upstreams.alpha.received.at(-1)?.headers.authorization).toBe(`Bearer ${SECRETS.alpha}`)
    const denied = await openTunnel(deny.proxy.port, deny.proxy.caCertPem, 'api.alpha.test')
    const answer = await exchange(denied!, [head('/v2/upload')])
    expect(answer).toMatch(/^HTTP\/1\.1 403 /)
    expect(answer).toContain('Forbidden by egress-guard proxy policy (no_match)')
    expect(deny.upstreams.alpha.received).toHaveLength(before + 1)
  })
})
