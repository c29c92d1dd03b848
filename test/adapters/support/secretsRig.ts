// The rig of the secret-in-both-directions suites (secrets.e2e, scrubbing.e2e): a guard with
// placeholders handed out, an echo upstream behind api.alpha.test, api.beta.test and evil.test,
// a proxy on the named engine, and the clients and helpers both suites use.
import http from 'node:http'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Duplex } from 'node:stream'
import { connect as tlsConnect } from 'node:tls'

import * as E from 'fp-ts/lib/Either.js'
import WebSocket from 'ws'

import { placeholder } from '../../../adapters/cli/placeholders.js'
import { parsePolicyText } from '../../../adapters/config/PolicyFile.js'
import { createGuard, type Guard } from '../../../adapters/guard/createGuard.js'
import type { AuditEntry, RunningProxy } from '../../../adapters/ports.js'
import { curl, nodeFetch, pythonUrllib, type Answer } from './clients.js'
import { startEchoUpstream, type EchoUpstream } from './echoUpstream.js'
import { startProxy, type AdapterName } from './harness.js'
import { createPki } from './pki.js'

export const REAL = { alpha: 'sk-real-alpha-0123456789abcdef', beta: 'real-beta-key-fedcba9876543210' } as const

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

export interface Setup {
  readonly proxy: RunningProxy
  readonly guard: Guard
  readonly echo: EchoUpstream
  readonly placeholders: { readonly alpha: string; readonly beta: string }
  readonly bundle: string
  readonly caPem: string
  readonly records: Array<AuditEntry>
  readonly close: () => Promise<void>
}

export const start = async (adapter: AdapterName, mode: string, enforcement?: 'report'): Promise<Setup> => {
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

export type Client = 'curl' | 'node' | 'python'
export const CLIENTS: ReadonlyArray<Client> = ['curl', 'node', 'python']

/** A GET (or a POST with `body`) through the proxy with the named client. */
export const send = (setup: Setup, client: Client, url: string, headers: Record<string, string> = {}, body?: string): Promise<Answer> => {
  if (client === 'curl' || body !== undefined) {
    const args = [...Object.entries(headers).flatMap(([name, value]) => ['-H', `${name}: ${value}`]), ...(body === undefined ? [] : ['--data-binary', body, '-H', 'content-type: application/json'])]
    return curl(setup.proxy.url, setup.bundle, url, args)
  }
  return client === 'node' ? nodeFetch(setup.proxy.url, setup.caPem, url, headers) : pythonUrllib(setup.proxy.url, setup.bundle, url, headers)
}

export const lastDeny = (setup: Setup): AuditEntry | undefined => setup.records.filter((r) => r.event === 'proxy_deny').at(-1)

/** Every form of a value a client could decode. */
const forms = (value: string): ReadonlyArray<string> => [value, Buffer.from(value).toString('base64').slice(0, -4), encodeURIComponent(value)]

export const leaks = (text: string, value: string): boolean => forms(value).some((form) => form.length > 8 && text.includes(form))

/**
 * Opens a WebSocket to api.alpha.test through the proxy: collects the first `count` messages and
 * the pings, then asks the upstream to close, and resolves with its close reason too.
 */
export const webSocketMessages = (setup: Setup, count: number): Promise<{ messages: ReadonlyArray<string>; pings: ReadonlyArray<string>; reason: string }> =>
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
export const rawConnect = (setup: Setup, authority: string): Promise<string> =>
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
