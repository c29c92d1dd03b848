// What the node engine does that the proxy libraries did not (docs/engines.md): WebSocket
// handshakes forwarded whole (the subprotocol and extensions the client is told are the
// upstream's), an upstream's refusal of an upgrade passed back as its HTTP answer, intercepted
// IPv6 literals, and one retry of an idempotent request whose reused upstream connection was reset
// before any response byte (never of a request with a body).
import { execFile } from 'node:child_process'
import http from 'node:http'
import https from 'node:https'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import type { AddressInfo, Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Duplex } from 'node:stream'
import { connect as tlsConnect } from 'node:tls'

import * as E from 'fp-ts/lib/Either.js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket, { WebSocketServer } from 'ws'

import { parsePolicyText } from '../../../adapters/config/PolicyFile.js'
import { createGuard, type Guard } from '../../../adapters/guard/createGuard.js'
import { startNodeProxy } from '../../../adapters/node/nodeProxy.js'
import type { RunningProxy } from '../../../adapters/ports.js'
import { createPki } from '../support/pki.js'

const KEY = 'sk-node-engine-3a4b5c'
const V6 = '2001:db8::1'

/** One request as an upstream saw it. */
interface Seen {
  readonly method: string
  readonly url: string
  readonly headers: http.IncomingHttpHeaders
}

const listen = (server: http.Server | https.Server, host = '127.0.0.1'): Promise<number> =>
  new Promise((resolve) => server.listen(0, host, () => resolve((server.address() as AddressInfo).port)))

/** curl through the proxy; status 0 when the transfer failed. */
const curl = (proxy: RunningProxy, caFile: string, url: string, extra: ReadonlyArray<string> = []): Promise<{ status: number; body: string }> =>
  new Promise((resolve) => {
    execFile('curl', ['-sS', '--max-time', '10', '--proxy', proxy.url, '--cacert', caFile, '-o', '-', '-w', '\n%{http_code}', ...extra, url], (error, stdout) => {
      const cut = stdout.lastIndexOf('\n')
      resolve({ status: error === null ? Number(stdout.slice(cut + 1)) : 0, body: stdout.slice(0, Math.max(cut, 0)) })
    })
  })

describe('node engine: upgrades, IPv6 literals, retries', () => {
  const dir = mkdtempSync(join(tmpdir(), 'eg-node-engine-'))
  const seen: Array<Seen> = []
  const served = new WeakMap<Socket, number>()
  let upstream: https.Server
  let guard: Guard
  let proxy: RunningProxy
  let caFile = ''

  beforeAll(async () => {
    const pki = createPki()
    const leaf = pki.leaf(['api.ws.test', V6])
    upstream = https.createServer({ key: leaf.key, cert: leaf.cert }, (request, response) => {
      seen.push({ method: request.method ?? '', url: request.url ?? '', headers: request.headers })
      const count = (served.get(request.socket) ?? 0) + 1
      served.set(request.socket, count)
      // `/flaky` resets a connection that already served a request (and any that carries a POST),
      // before answering anything.
      if (request.url === '/v1/flaky' && (count > 1 || request.method === 'POST')) {
        request.socket.destroy()
        return
      }
      request.resume()
      request.on('end', () => response.end(`served ${request.method} ${request.url}`))
    })
    const sockets = new WebSocketServer({ noServer: true, perMessageDeflate: true, handleProtocols: (offered) => (offered.has('superchat') ? 'superchat' : false) })
    sockets.on('connection', (socket) => socket.on('message', (data) => socket.send(`echo ${data.toString()}`)))
    upstream.on('upgrade', (request: http.IncomingMessage, socket: Duplex, head: Buffer) => {
      seen.push({ method: 'UPGRADE', url: request.url ?? '', headers: request.headers })
      if (request.url === '/v1/refuse') {
        socket.end('HTTP/1.1 401 Unauthorized\r\nContent-Type: text/plain\r\nContent-Length: 19\r\nWWW-Authenticate: Bearer\r\n\r\nyour key is revoked')
        return
      }
      sockets.handleUpgrade(request, socket, head, (ws) => sockets.emit('connection', ws, request))
    })
    const port = await listen(upstream)
    const policy = parsePolicyText(
      `mode: connected_deny
providers:
  - { name: ws, apiUrl: "https://api.ws.test/v1" }
  - { name: v6, apiUrl: "https://[${V6}]/v1" }
connections:
  - { provider: ws, name: default, credentials: { headers: { authorization: "Bearer \${env:KEY}" } } }
  - { provider: v6, name: default, credentials: { headers: { authorization: "Bearer \${env:KEY}" } } }
`,
      'node engine policy'
    )
    if (E.isLeft(policy)) throw new Error(policy.left.messages.join('\n'))
    guard = createGuard({ policy: policy.right, env: { KEY }, log: () => undefined })
    proxy = await startNodeProxy({
      guard,
      configDir: join(dir, 'config'),
      upstreamCa: [pki.caPem],
      connectTo: [
        { host: 'api.ws.test', port: 443, toHost: '127.0.0.1', toPort: port },
        { host: V6, port: 443, toHost: '127.0.0.1', toPort: port }
      ],
      log: () => undefined
    })
    caFile = join(dir, 'proxy-ca.pem')
    writeFileSync(caFile, proxy.caCertPem)
  }, 30_000)

  afterAll(async () => {
    await proxy.close()
    await guard.close()
    upstream.closeAllConnections()
    await new Promise((resolve) => upstream.close(resolve))
    rmSync(dir, { recursive: true, force: true })
  })

  /** A WebSocket through the proxy's CONNECT tunnel, offering two subprotocols and compression. */
  const open = (path: string): Promise<{ protocol?: string; extensions?: string; echo?: string; refused?: { status: number; body: string; authenticate?: string } }> =>
    new Promise((resolve, reject) => {
      const connect = http.request({ host: '127.0.0.1', port: proxy.port, method: 'CONNECT', path: 'api.ws.test:443' })
      connect.on('error', reject)
      connect.on('connect', (_response, socket: Duplex) => {
        const ws = new WebSocket(`wss://api.ws.test${path}`, ['chat', 'superchat'], {
          perMessageDeflate: true,
          createConnection: () => tlsConnect({ socket: socket as never, servername: 'api.ws.test', ca: proxy.caCertPem })
        })
        ws.on('open', () => ws.send('hello'))
        ws.on('message', (data) => {
          resolve({ protocol: ws.protocol, extensions: ws.extensions, echo: data.toString() })
          ws.close()
        })
        ws.on('unexpected-response', (_request, response) => {
          let body = ''
          response.setEncoding('utf8')
          response.on('data', (chunk: string) => (body += chunk))
          response.on('end', () => {
            resolve({ refused: { status: response.statusCode ?? 0, body, ...(response.headers['www-authenticate'] === undefined ? {} : { authenticate: response.headers['www-authenticate'] }) } })
            ws.terminate()
          })
        })
        ws.on('error', () => undefined)
      })
      connect.end()
    })

  it('forwards the WebSocket handshake headers: the subprotocol the client gets is the upstream’s; an injected upgrade goes without extensions, so its frames can be scrubbed', async () => {
    const result = await open('/v1/realtime')
    expect(result).toEqual({ protocol: 'superchat', extensions: '', echo: 'echo hello' })
    const handshake = seen.filter((s) => s.method === 'UPGRADE').at(-1)
    expect(handshake?.headers).toMatchObject({
      authorization: `Bearer ${KEY}`,
      'sec-websocket-protocol': 'chat,superchat',
      'sec-websocket-version': '13',
      'sec-websocket-key': expect.any(String),
      upgrade: 'websocket'
    })
    expect(handshake?.headers['sec-websocket-extensions']).toBeUndefined()
  })

  it('passes an upstream’s refusal of an upgrade back as its HTTP answer, and does not hang', async () => {
    const result = await open('/v1/refuse')
    expect(result).toEqual({ refused: { status: 401, body: 'your key is revoked', authenticate: 'Bearer' } })
  })

  it('intercepts an IPv6 literal: the leaf names the address, the credential goes to its route', async () => {
    const before = seen.length
    const answer = await curl(proxy, caFile, `https://[${V6}]/v1/models`)
    expect(answer).toEqual({ status: 200, body: 'served GET /v1/models' })
    expect(seen[before]?.headers).toMatchObject({ authorization: `Bearer ${KEY}`, host: `[${V6}]` })
    expect((await curl(proxy, caFile, `https://[${V6}]/elsewhere`)).status).toBe(403)
  })

  it('sends an idempotent request again, once, when its reused connection is reset before any answer; never one with a body', async () => {
    expect((await curl(proxy, caFile, 'https://api.ws.test/v1/warm')).status).toBe(200)
    const before = seen.length
    // The pooled connection is reused and reset; the GET is sent again on a new one.
    const retried = await curl(proxy, caFile, 'https://api.ws.test/v1/flaky')
    expect(retried).toEqual({ status: 200, body: 'served GET /v1/flaky' })
    expect(seen.slice(before).map((s) => `${s.method} ${s.url}`)).toEqual(['GET /v1/flaky', 'GET /v1/flaky'])
    const posted = seen.length
    const post = await curl(proxy, caFile, 'https://api.ws.test/v1/flaky', ['--data', 'charge=1'])
    expect(post).toEqual({ status: 502, body: expect.stringContaining('could not complete the request upstream') })
    expect(seen.slice(posted).map((s) => `${s.method} ${s.url}`)).toEqual(['POST /v1/flaky'])
  })
})
