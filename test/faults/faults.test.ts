// Faults around a real proxy, for each adapter: credential sources that throw, reject, hang, flap
// or print garbage; upstreams that refuse, reset mid-body, or present a certificate from an
// untrusted CA or for another name; an audit endpoint that is unreachable, then failing, then back.
// Each time the proxy keeps serving, sends no credential where it should not, and writes exactly
// the audit records of the requests made (the remote sink: all within its bound, the rest counted).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import type { AddressInfo, Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import * as E from 'fp-ts/lib/Either.js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { parsePolicyText } from '../../adapters/config/PolicyFile.js'
import { httpSink, jsonLinesSink } from '../../adapters/guard/auditSinks.js'
import { createGuard, type Guard } from '../../adapters/guard/createGuard.js'
import { policyCredentialSource } from '../../adapters/guard/credentialSources.js'
import type { AuditEntry, CredentialSource, RunningProxy } from '../../adapters/ports.js'
import { curl, curlExit } from '../adapters/support/clients.js'
import { ADAPTERS, startProxy } from '../adapters/support/harness.js'
import { createPki } from '../adapters/support/pki.js'
import { startUpstream, type Upstream } from '../adapters/support/upstream.js'

const SECRET = 'sk-fault-6a7b8c9d'
const AUDIT_BOUND = 5
const TIMEOUT_MS = 1_000

// A helper that succeeds and fails in turn (a counter file decides; its answers expire at once, so
// it is asked every time), and helpers printing garbage.
const FLAPPING = `const fs = require('fs'); const f = process.env.EG_COUNTER; const n = Number(fs.readFileSync(f, 'utf8')); fs.writeFileSync(f, String(n + 1)); if (n % 2) process.exit(1); console.log(JSON.stringify({ headers: { authorization: 'Bearer ' + process.env.EG_SECRET }, expiresAt: new Date().toISOString() }))`
const MALFORMED: ReadonlyArray<readonly [string, string]> = [
  ['not-json', "console.log('Bearer ' + process.env.EG_SECRET)"],
  ['no-headers', "console.log(JSON.stringify({ token: process.env.EG_SECRET }))"],
  ['bad-name', "console.log(JSON.stringify({ headers: { 'x bad\\r\\nname': process.env.EG_SECRET } }))"],
  ['crlf-value', "console.log(JSON.stringify({ headers: { authorization: 'Bearer ' + process.env.EG_SECRET + '\\r\\nX-Evil: 1' } }))"],
  ['number', "console.log(JSON.stringify({ headers: { authorization: 42 } }))"]
]
// Sources that are not helpers: they fail inside this process (see `source` below).
const IN_PROCESS = ['throws', 'rejects', 'hangs'] as const
const STATIC = ['good', 'untrusted', 'impostor'] as const

const policy = (dir: string) => `
mode: connected_deny
providers:
  - { name: flap, apiUrl: "https://api.flap.test/" }
  - { name: reset, apiUrl: "https://api.good.test:8443/" }
  - { name: refuse, apiUrl: "https://api.good.test:9443/" }
${[...STATIC, ...IN_PROCESS, ...MALFORMED.map(([n]) => n)].map((name) => `  - { name: ${name}, apiUrl: "https://api.${name}.test/" }`).join('\n')}
connections:
  - { provider: flap, name: default, credentials: { exec: ["node", "-e", ${JSON.stringify(FLAPPING)}] } }
${['reset', 'refuse', ...STATIC, ...IN_PROCESS].map((name) => `  - { provider: ${name}, name: default, credentials: { headers: { authorization: "Bearer \${env:EG_SECRET}" } } }`).join('\n')}
${MALFORMED.map(([name, code]) => `  - { provider: ${name}, name: default, credentials: { exec: ["node", "-e", ${JSON.stringify(code)}] } }`).join('\n')}
# ${dir}
`

/** An HTTPS upstream that sends its headers and a tenth of the body, then cuts the connection. */
const startResetting = async (tls: { key: string; cert: string }): Promise<{ port: number; hits: () => number; close: () => Promise<void> }> => {
  let hits = 0
  const server = https.createServer(tls, (request, response) => {
    hits++
    request.resume()
    response.writeHead(200, { 'content-type': 'text/plain', 'content-length': '1000' })
    response.write('x'.repeat(100), () => setTimeout(() => response.socket?.destroy(), 20))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as AddressInfo).port,
    hits: () => hits,
    close: async () => {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    }
  }
}

/** The body of every 502 an upstream failure gets, on either adapter. */
const badGateway = (code: string) => `Bad gateway: egress-guard could not complete the request upstream (${code})`

describe.each(ADAPTERS)('faults on %s', (adapter) => {
  const dir = mkdtempSync(join(tmpdir(), 'eg-faults-'))
  const auditPath = join(dir, 'audit.jsonl')
  const pki = createPki()
  const strangers = createPki() // a CA the proxy does not trust
  let good: Upstream
  let untrusted: Upstream
  let impostor: Upstream
  let resetting: Awaited<ReturnType<typeof startResetting>>
  let guard: Guard
  let proxy: RunningProxy
  // The audit endpoint: unreachable at first (every connection cut at once); then it answers 503;
  // then it is back. Its port is bound from the start, so no other test can take it meanwhile.
  let endpointState: 'down' | 'failing' | 'up' = 'down'
  const delivered: Array<AuditEntry> = []
  let answered503 = 0
  const endpoint = http.createServer((request, response) => {
    let body = ''
    request.on('data', (c: Buffer) => (body += c.toString()))
    request.on('end', () => {
      if (endpointState !== 'up') {
        answered503++
        return void response.writeHead(503).end()
      }
      delivered.push(...(JSON.parse(body) as Array<AuditEntry>))
      response.writeHead(204).end()
    })
  })
  let endpointPort = 0
  const file = jsonLinesSink({ path: auditPath })
  let remote: ReturnType<typeof httpSink>

  beforeAll(async () => {
    writeFileSync(join(dir, 'counter'), '0')
    const named = ['good', 'flap', ...IN_PROCESS, ...MALFORMED.map(([n]) => n)].map((n) => `api.${n}.test`)
    good = await startUpstream('good', pki.leaf(named))
    untrusted = await startUpstream('untrusted', strangers.leaf(['api.untrusted.test']))
    impostor = await startUpstream('impostor', pki.leaf(['not-impostor.test']))
    resetting = await startResetting(pki.leaf(['api.good.test']))
    endpoint.on('connection', (socket: Socket) => endpointState === 'down' && socket.destroy())
    await new Promise<void>((resolve) => endpoint.listen(0, '127.0.0.1', resolve))
    endpointPort = (endpoint.address() as AddressInfo).port
    remote = httpSink({ url: `http://127.0.0.1:${endpointPort}/audit`, retryMs: 50, maxQueue: AUDIT_BOUND, log: () => undefined })
    const loaded = parsePolicyText(policy(dir), 'fault policy')
    if (E.isLeft(loaded)) throw new Error(loaded.left.messages.join('\n'))
    const env = { EG_SECRET: SECRET, EG_COUNTER: join(dir, 'counter'), PATH: process.env['PATH'] ?? '' }
    const fromPolicy = policyCredentialSource(loaded.right.file, env)
    // Sources that fail in process: one throws before returning anything, one rejects, one never
    // answers. Each failure message carries the secret, which must never surface anywhere.
    const source: CredentialSource = {
      resolve: (provider, connection, signal) => {
        if (provider === 'throws') throw new Error(`credential store exploded with ${SECRET}`)
        if (provider === 'rejects') return Promise.reject(new Error(`credential store refused with ${SECRET}`))
        if (provider === 'hangs') return new Promise(() => undefined)
        return fromPolicy.resolve(provider, connection, signal)
      }
    }
    guard = createGuard({ policy: loaded.right, credentials: source, audit: [file, remote], env, credentialTimeoutMs: TIMEOUT_MS, log: () => undefined })
    proxy = await startProxy(adapter, {
      guard,
      configDir: join(dir, 'config'),
      upstreamCa: [pki.caPem],
      connectTo: [
        ...named.map((host) => ({ host, port: 443, toHost: '127.0.0.1', toPort: good.port })),
        { host: 'api.untrusted.test', port: 443, toHost: '127.0.0.1', toPort: untrusted.port },
        { host: 'api.impostor.test', port: 443, toHost: '127.0.0.1', toPort: impostor.port },
        { host: 'api.good.test', port: 8443, toHost: '127.0.0.1', toPort: resetting.port },
        { host: 'api.good.test', port: 9443, toHost: '127.0.0.1', toPort: 9 }
      ],
      log: () => undefined
    })
  })
  afterAll(async () => {
    await proxy.close()
    await guard.close()
    await Promise.all([good.close(), untrusted.close(), impostor.close(), resetting.close()])
    if (endpoint.listening) await new Promise((resolve) => endpoint.close(resolve))
    rmSync(dir, { recursive: true, force: true })
  })

  const records = async (): Promise<ReadonlyArray<AuditEntry>> => {
    await file.flush()
    return readFileSync(auditPath, 'utf8').trim().split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as AuditEntry)
  }
  /** Runs `act` and returns the audit records it added, as `event host` lines. */
  const recordsOf = async (act: () => Promise<void>): Promise<ReadonlyArray<AuditEntry>> => {
    const before = (await records()).length
    await act()
    return (await records()).slice(before)
  }
  const events = (entries: ReadonlyArray<AuditEntry>) => entries.map((r) => `${r.event} ${r.metadata['host'] ?? ''}`)
  const stillServing = async () => {
    const added = await recordsOf(async () => expect((await curl(proxy.url, proxy.caCertPath, 'https://api.good.test/x')).status).toBe(200))
    expect(events(added)).toEqual(['proxy_inject api.good.test'])
  }

  it('a flapping credential source: injects when it answers, denies when it fails, never anything else', async () => {
    const before = good.received.length
    const statuses: Array<number> = []
    const added = await recordsOf(async () => {
      for (let i = 0; i < 6; i++) statuses.push((await curl(proxy.url, proxy.caCertPath, 'https://api.flap.test/x')).status)
    })
    expect(statuses).toEqual([200, 403, 200, 403, 200, 403])
    const forwarded = good.received.slice(before)
    expect(forwarded).toHaveLength(3)
    expect(forwarded.every((r) => r.headers.authorization === `Bearer ${SECRET}`)).toBe(true)
    const cycle = ['proxy_inject api.flap.test', 'proxy_no_credentials api.flap.test', 'proxy_deny api.flap.test']
    expect(events(added)).toEqual([...cycle, ...cycle, ...cycle])
  })

  it.each(MALFORMED)('a helper printing garbage (%s): denied, nothing forwarded, the value in no record', async (name) => {
    const before = good.received.length
    let body = ''
    const added = await recordsOf(async () => {
      const answer = await curl(proxy.url, proxy.caCertPath, `https://api.${name}.test/x`)
      expect(answer.status).toBe(403)
      body = answer.body
    })
    expect(body).not.toContain(SECRET)
    expect(good.received).toHaveLength(before)
    expect(events(added)).toEqual([`proxy_no_credentials api.${name}.test`, `proxy_deny api.${name}.test`])
    expect(JSON.stringify(added)).not.toContain(SECRET)
  })

  it.each(['throws', 'rejects'])('a credential source that %s: denied as unavailable, its message (and the secret in it) nowhere', async (name) => {
    const before = good.received.length
    let answer = { status: 0, body: '' }
    const added = await recordsOf(async () => {
      answer = await curl(proxy.url, proxy.caCertPath, `https://api.${name}.test/x`)
    })
    expect(answer.status).toBe(403)
    expect(answer.body).not.toContain(SECRET)
    expect(good.received).toHaveLength(before)
    expect(events(added)).toEqual([`proxy_no_credentials api.${name}.test`, `proxy_deny api.${name}.test`])
    expect(added[0]?.metadata['error']).toBe(`credential source for \`${name}/default\` failed`)
    await stillServing()
  })

  it('a credential source that hangs: denied once its timeout fires, and only then', async () => {
    const before = good.received.length
    let status = 0
    const added = await recordsOf(async () => {
      status = (await curl(proxy.url, proxy.caCertPath, 'https://api.hangs.test/x')).status
    })
    // The denial names the timeout: only the timeout ends a source that never answers.
    expect(status).toBe(403)
    expect(good.received).toHaveLength(before)
    expect(events(added)).toEqual(['proxy_no_credentials api.hangs.test', 'proxy_deny api.hangs.test'])
    expect(added[0]?.metadata['error']).toBe(`credential source for \`hangs/default\` did not answer within ${TIMEOUT_MS} ms`)
    await stillServing()
  })

  it('an upstream that resets mid-body: the client sees the response cut at once, with nothing added to it', async () => {
    const hitsBefore = resetting.hits()
    let exit = 0
    let body = ''
    const added = await recordsOf(async () => {
      ;({ exit, body } = await curlExit(proxy.url, proxy.caCertPath, 'https://api.good.test:8443/x'))
    })
    expect(resetting.hits()).toBe(hitsBefore + 1)
    // curl's own verdict: the transfer ended short of its length (18, or 56 for a reset; 92, an
    // HTTP/2 stream reset, where the response is scrubbed and so has no length), not a timeout (28).
    expect([18, 56, 92]).toContain(exit)
    const broken = { body }
    expect(broken.body).toMatch(/^x{0,100}$/) // what the upstream sent, and no proxy text after it
    expect(events(added)).toEqual(['proxy_inject api.good.test'])
    await stillServing()
  })

  it('an upstream that refuses: 502 with our own body, which names neither the address dialled nor a credential', async () => {
    let answer = { status: 0, body: '' }
    const added = await recordsOf(async () => {
      answer = await curl(proxy.url, proxy.caCertPath, 'https://api.good.test:9443/x')
    })
    expect(answer).toEqual({ status: 502, body: badGateway('ECONNREFUSED') })
    expect(events(added)).toEqual(['proxy_inject api.good.test'])
    await stillServing()
  })

  it.each([
    ['is from an untrusted CA', 'untrusted', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE'],
    ['names another host', 'impostor', 'ERR_TLS_CERT_ALTNAME_INVALID']
  ] as const)('an upstream whose certificate %s: never sent the request, 502 naming the check that failed', async (_what, name, code) => {
    const upstream = name === 'untrusted' ? untrusted : impostor
    let answer = { status: 0, body: '' }
    const added = await recordsOf(async () => {
      answer = await curl(proxy.url, proxy.caCertPath, `https://api.${name}.test/x`)
    })
    expect(answer).toEqual({ status: 502, body: badGateway(code) })
    expect(upstream.received).toHaveLength(0)
    // The record is of the decision, made before the upstream was reached (see docs/policy.md, "Audit records").
    expect(events(added)).toEqual([`proxy_inject api.${name}.test`])
    await stillServing()
  })

  it('an audit endpoint unreachable, then failing, then back: the records within the bound are delivered in order, the rest counted', async () => {
    // Nothing listened so far: everything is queued (the first AUDIT_BOUND records) or dropped and counted.
    const made = (await records()).length
    expect(made).toBeGreaterThan(AUDIT_BOUND)
    expect(remote.dropped()).toBe(made - AUDIT_BOUND)
    endpointState = 'failing'
    // The sink retries every 50 ms: it gets 503s, keeps its queue, and delivers nothing.
    for (let i = 0; i < 250 && answered503 < 3; i++) await new Promise((resolve) => setTimeout(resolve, 20))
    expect(answered503).toBeGreaterThanOrEqual(3)
    expect(delivered).toHaveLength(0)
    expect(remote.dropped()).toBe(made - AUDIT_BOUND)
    endpointState = 'up'
    for (let i = 0; i < 100 && delivered.length < AUDIT_BOUND; i++) await new Promise((resolve) => setTimeout(resolve, 20))
    expect(delivered.map((r) => r.decisionId)).toEqual((await records()).slice(0, AUDIT_BOUND).map((r) => r.decisionId))
    expect(remote.dropped()).toBe(made - AUDIT_BOUND)
    // Once it is back, every new record arrives.
    await stillServing()
    await remote.flush()
    expect(delivered).toHaveLength(AUDIT_BOUND + 1)
    expect(delivered.at(-1)?.decisionId).toBe((await records()).at(-1)?.decisionId)
  })

  it('sent the credential only to its own host, and never put it in a record', async () => {
    expect(good.received.filter((r) => JSON.stringify(r.headers).includes(SECRET)).every((r) => r.headers.host === 'api.good.test' || r.headers.host === 'api.flap.test')).toBe(true)
    expect(readFileSync(auditPath, 'utf8')).not.toContain(SECRET)
    expect(JSON.stringify(delivered)).not.toContain(SECRET)
  })
})
