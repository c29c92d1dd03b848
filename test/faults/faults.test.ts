// Faults around a real proxy, for each adapter: credential sources that flap or print garbage,
// upstreams that refuse or reset mid-body, and an audit endpoint that goes down and comes back.
// Each time the proxy keeps serving, sends no credential where it should not, and loses no audit
// record within its bound (and counts the ones beyond it).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import * as E from 'fp-ts/lib/Either.js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { parsePolicyText } from '../../adapters/config/PolicyFile.js'
import { httpSink, jsonLinesSink } from '../../adapters/guard/auditSinks.js'
import { createGuard, type Guard } from '../../adapters/guard/createGuard.js'
import type { AuditEntry, RunningProxy } from '../../adapters/ports.js'
import { curl } from '../adapters/support/clients.js'
import { ADAPTERS, startProxy } from '../adapters/support/harness.js'
import { createPki } from '../adapters/support/pki.js'
import { startUpstream, type Upstream } from '../adapters/support/upstream.js'

const SECRET = 'sk-fault-6a7b8c9d'
const AUDIT_BOUND = 5

// A helper that succeeds and fails in turn (a counter file decides; its answers expire at once, so
// it is asked every time), and helpers printing garbage.
const FLAPPING = `const fs = require('fs'); const f = process.env.EG_COUNTER; const n = Number(fs.readFileSync(f, 'utf8')); fs.writeFileSync(f, String(n + 1)); if (n % 2) process.exit(1); console.log(JSON.stringify({ headers: { authorization: 'Bearer ' + process.env.EG_SECRET }, expiresAt: new Date().toISOString() }))`
const MALFORMED: ReadonlyArray<readonly [string, string]> = [
  ['not-json', "console.log('Bearer ' + process.env.EG_SECRET)"],
  ['no-headers', "console.log(JSON.stringify({ token: process.env.EG_SECRET }))"],
  ['bad-name', "console.log(JSON.stringify({ headers: { 'x bad\\r\\nname': process.env.EG_SECRET } }))"],
  ['number', "console.log(JSON.stringify({ headers: { authorization: 42 } }))"]
]

const policy = (dir: string) => `
mode: connected_deny
providers:
  - { name: flap, apiUrl: "https://api.flap.test/" }
  - { name: good, apiUrl: "https://api.good.test/" }
  - { name: reset, apiUrl: "https://api.good.test:8443/" }
  - { name: refuse, apiUrl: "https://api.good.test:9443/" }
${MALFORMED.map(([name]) => `  - { name: ${name}, apiUrl: "https://api.${name}.test/" }`).join('\n')}
connections:
  - { provider: flap, name: default, credentials: { exec: ["node", "-e", ${JSON.stringify(FLAPPING)}] } }
  - { provider: good, name: default, credentials: { headers: { authorization: "Bearer \${env:EG_SECRET}" } } }
  - { provider: reset, name: default, credentials: { headers: { authorization: "Bearer \${env:EG_SECRET}" } } }
  - { provider: refuse, name: default, credentials: { headers: { authorization: "Bearer \${env:EG_SECRET}" } } }
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

describe.each(ADAPTERS)('faults on %s', (adapter) => {
  const dir = mkdtempSync(join(tmpdir(), 'eg-faults-'))
  const auditPath = join(dir, 'audit.jsonl')
  const pki = createPki()
  let good: Upstream
  let resetting: Awaited<ReturnType<typeof startResetting>>
  let guard: Guard
  let proxy: RunningProxy
  let endpointUp = false
  const delivered: Array<AuditEntry> = []
  let endpoint: http.Server
  const file = jsonLinesSink({ path: auditPath })
  let remote: ReturnType<typeof httpSink>

  beforeAll(async () => {
    writeFileSync(join(dir, 'counter'), '0')
    good = await startUpstream('good', pki.leaf(['api.good.test', 'api.flap.test', ...MALFORMED.map(([n]) => `api.${n}.test`)]))
    resetting = await startResetting(pki.leaf(['api.good.test']))
    endpoint = http.createServer((request, response) => {
      let body = ''
      request.on('data', (c: Buffer) => (body += c.toString()))
      request.on('end', () => {
        if (!endpointUp) return void response.writeHead(503).end()
        delivered.push(...(JSON.parse(body) as Array<AuditEntry>))
        response.writeHead(204).end()
      })
    })
    await new Promise<void>((resolve) => endpoint.listen(0, '127.0.0.1', resolve))
    remote = httpSink({ url: `http://127.0.0.1:${(endpoint.address() as AddressInfo).port}/audit`, retryMs: 50, maxQueue: AUDIT_BOUND, log: () => undefined })
    const loaded = parsePolicyText(policy(dir), 'fault policy')
    if (E.isLeft(loaded)) throw new Error(loaded.left.messages.join('\n'))
    guard = createGuard({ policy: loaded.right, audit: [file, remote], env: { EG_SECRET: SECRET, EG_COUNTER: join(dir, 'counter'), PATH: process.env['PATH'] ?? '' }, credentialTimeoutMs: 2_000, log: () => undefined })
    const hosts = ['api.good.test', 'api.flap.test', ...MALFORMED.map(([n]) => `api.${n}.test`)]
    proxy = await startProxy(adapter, {
      guard,
      configDir: join(dir, 'config'),
      upstreamCa: [pki.caPem],
      connectTo: [
        ...hosts.map((host) => ({ host, port: 443, toHost: '127.0.0.1', toPort: good.port })),
        // Two upstreams the harness cannot offer: one that resets mid-body, one that refuses.
        { host: 'api.good.test', port: 8443, toHost: '127.0.0.1', toPort: resetting.port },
        { host: 'api.good.test', port: 9443, toHost: '127.0.0.1', toPort: 9 }
      ],
      log: () => undefined
    })
  })
  afterAll(async () => {
    await proxy.close()
    await guard.close()
    await good.close()
    await resetting.close()
    await new Promise((resolve) => endpoint.close(resolve))
    rmSync(dir, { recursive: true, force: true })
  })

  const records = async (): Promise<ReadonlyArray<AuditEntry>> => {
    await file.flush()
    return readFileSync(auditPath, 'utf8').trim().split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as AuditEntry)
  }
  const withSecret = (u: Upstream) => u.received.filter((r) => JSON.stringify(r.headers).includes(SECRET))

  it('a flapping credential source: injects when it answers, denies when it fails, never anything else', async () => {
    const before = good.received.length
    const statuses: Array<number> = []
    for (let i = 0; i < 6; i++) statuses.push((await curl(proxy.url, proxy.caCertPath, 'https://api.flap.test/x')).status)
    expect(statuses).toEqual([200, 403, 200, 403, 200, 403])
    const forwarded = good.received.slice(before)
    expect(forwarded).toHaveLength(3)
    expect(forwarded.every((r) => r.headers.authorization === `Bearer ${SECRET}`)).toBe(true)
  })

  it.each(MALFORMED)('a helper printing garbage (%s): denied, nothing forwarded, the value in no record', async (name) => {
    const before = good.received.length
    const answer = await curl(proxy.url, proxy.caCertPath, `https://api.${name}.test/x`)
    expect(answer.status).toBe(403)
    expect(answer.body).not.toContain(SECRET)
    expect(good.received).toHaveLength(before)
    const last = (await records()).filter((r) => r.metadata['host'] === `api.${name}.test`)
    expect(last.map((r) => r.event)).toEqual(['proxy_no_credentials', 'proxy_deny'])
    expect(JSON.stringify(last)).not.toContain(SECRET)
  })

  it('an upstream that resets mid-body: the client sees a broken response, the proxy keeps serving', async () => {
    const hitsBefore = resetting.hits()
    const broken = await curl(proxy.url, proxy.caCertPath, 'https://api.good.test:8443/x')
    expect(resetting.hits()).toBe(hitsBefore + 1)
    expect(broken.status === 0 || broken.status >= 500 || broken.body.length < 1000).toBe(true)
    expect(broken.body).not.toContain(SECRET)
    expect((await curl(proxy.url, proxy.caCertPath, 'https://api.good.test/x')).status).toBe(200)
  })

  it('an upstream that refuses: 502 with a clear body, no credential anywhere', async () => {
    const answer = await curl(proxy.url, proxy.caCertPath, 'https://api.good.test:9443/x')
    expect(answer.status).toBe(502)
    expect(answer.body).toMatch(/ECONNREFUSED/)
    expect(answer.body).not.toContain(SECRET)
    expect((await curl(proxy.url, proxy.caCertPath, 'https://api.good.test/x')).status).toBe(200)
  })

  it('an audit endpoint down then back: records within the bound are delivered after recovery, the rest counted', async () => {
    // Everything so far was refused by the endpoint, so it is all queued or dropped and counted.
    const made = (await records()).length
    expect(delivered).toHaveLength(0)
    expect(remote.dropped()).toBe(made - AUDIT_BOUND)
    endpointUp = true
    for (let i = 0; i < 100 && delivered.length < AUDIT_BOUND; i++) await new Promise((resolve) => setTimeout(resolve, 20))
    expect(delivered).toHaveLength(AUDIT_BOUND)
    // The queued ones are the first records made, in order; and the proxy served throughout.
    expect(delivered.map((r) => r.decisionId)).toEqual((await records()).slice(0, AUDIT_BOUND).map((r) => r.decisionId))
    expect((await curl(proxy.url, proxy.caCertPath, 'https://api.good.test/x')).status).toBe(200)
    await remote.flush()
    expect(delivered.at(-1)?.metadata['host']).toBe('api.good.test')
  })

  it('sent the credential only to its own host, and never put it in a record', async () => {
    expect(withSecret(good).every((r) => r.headers.host === 'api.good.test' || r.headers.host === 'api.flap.test')).toBe(true)
    expect(readFileSync(auditPath, 'utf8')).not.toContain(SECRET)
    expect(JSON.stringify(delivered)).not.toContain(SECRET)
  })
})
