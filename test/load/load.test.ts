// Load: 64 concurrent clients for a fixed time through the real `egress-guard serve` process, with
// inject, pass, deny and tunnel traffic across two providers. Every request carries an id; the
// upstreams' logs are then checked request by request: each credential reached its own provider's
// host and nowhere else. Intercepted requests trust only the proxy's CA and tunnelled ones only the
// upstream's, so a tunnel that was intercepted (or a request that was not) fails. The audit records
// must match the requests made, kind by kind, and the proxy's resident memory must stay bounded
// after a warm-up. Both engines run; LOAD_ENGINE picks one. CI runs the short form
// (LOAD_SECONDS=5); `npm run test:load` runs 60 s and writes bench/results/load.json.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

import { ProxyAgent } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import type { AuditEntry } from '../../adapters/ports.js'
import { createPki } from '../adapters/support/pki.js'
import { startUpstream, type Upstream } from '../adapters/support/upstream.js'

const SECONDS = Number(process.env['LOAD_SECONDS'] ?? 5)
const CLIENTS = Number(process.env['LOAD_CLIENTS'] ?? 64)
const ENGINES = process.env['LOAD_ENGINE'] === undefined ? ['node', 'http-mitm-proxy', 'mockttp'] : [process.env['LOAD_ENGINE']]
const WARM_UP_SECONDS = 2
/**
 * Allowed growth of the proxy's resident memory over the second half of the measured run (median of
 * its last quarter against median of its second quarter). In the 60-second run the heap has
 * settled by then, and a leak keeps growing: at 1,000 requests/s, 1 KB a request shows. In CI's
 * 5 seconds V8 is still growing its heap (20 to 40 MB, measured), so the bound there only catches
 * a gross leak.
 */
const RSS_GROWTH_BOUND_MB = Number(process.env['LOAD_RSS_BOUND_MB'] ?? (SECONDS >= 30 ? 32 : 96))
const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const CLI = join(ROOT, 'dist', 'cli.js')
const KEYS = { alpha: 'sk-load-alpha-1f2e3d', beta: 'sk-load-beta-4c5b6a' } as const

const POLICY = `
mode: connected_deny
providers:
  - { name: alpha, apiUrl: "https://api.alpha.test/v1", oauth: { tokenUrl: "https://api.alpha.test/oauth/token" } }
  - { name: beta, apiUrl: "https://api.beta.test/v2" }
connections:
  - { provider: alpha, name: default, credentials: { headers: { Authorization: "Bearer \${env:ALPHA_KEY}" } } }
  - { provider: beta, name: default, credentials: { headers: { x-api-key: "\${env:BETA_KEY}" } } }
passthrough: [pypi.test]
`

type Kind = 'inject-alpha' | 'inject-beta' | 'pass' | 'deny' | 'tunnel'
const KINDS: ReadonlyArray<Kind> = ['inject-alpha', 'inject-beta', 'pass', 'deny', 'tunnel']
const URLS: Record<Kind, string> = {
  'inject-alpha': 'https://api.alpha.test/v1/chat',
  'inject-beta': 'https://api.beta.test/v2/items',
  pass: 'https://api.alpha.test/oauth/token',
  deny: 'https://api.alpha.test/v9/admin',
  tunnel: 'https://pypi.test/simple/'
}

const rssMb = (pid: number): number => {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:')) ?? '0'
  return Number(/([0-9]+)/.exec(line)?.[1] ?? 0) / 1024
}

const summaries: Record<string, unknown> = {}

describe.each(ENGINES)(`load: ${CLIENTS} clients for ${SECONDS} s through serve (%s)`, (ENGINE) => {
  const dir = mkdtempSync(join(tmpdir(), 'eg-load-'))
  const auditPath = join(dir, 'audit.jsonl')
  let alpha: Upstream
  let beta: Upstream
  let mirror: Upstream
  let server: ChildProcess
  let proxyUrl = ''
  let proxyCa = ''
  let upstreamCa = ''

  beforeAll(async () => {
    const pki = createPki()
    alpha = await startUpstream('alpha', pki.leaf(['api.alpha.test']))
    beta = await startUpstream('beta', pki.leaf(['api.beta.test']))
    mirror = await startUpstream('mirror', pki.leaf(['pypi.test']))
    writeFileSync(join(dir, 'policy.yaml'), POLICY)
    writeFileSync(join(dir, 'upstream-ca.pem'), pki.caPem)
    const connectTo = [['api.alpha.test', alpha], ['api.beta.test', beta], ['pypi.test', mirror]] as const
    server = spawn(
      process.execPath,
      [CLI, 'serve', '--policy', join(dir, 'policy.yaml'), '--engine', ENGINE, '--port', '0', '--json', '--audit', auditPath, '--config-dir', join(dir, 'config'),
        '--upstream-ca', join(dir, 'upstream-ca.pem'), ...connectTo.flatMap(([host, u]) => ['--connect-to', `${host}:443:127.0.0.1:${u.port}`])],
      { stdio: ['ignore', 'pipe', 'inherit'], env: { PATH: process.env['PATH'] ?? '', HOME: dir, ALPHA_KEY: KEYS.alpha, BETA_KEY: KEYS.beta } }
    )
    const listening = await new Promise<{ proxy: string; caCert: string }>((resolve, reject) => {
      const lines = createInterface({ input: server.stdout! })
      lines.once('line', (line) => resolve(JSON.parse(line) as { proxy: string; caCert: string }))
      server.once('exit', (code) => reject(new Error(`serve exited with ${code}`)))
    })
    proxyUrl = listening.proxy
    proxyCa = readFileSync(listening.caCert, 'utf8')
    upstreamCa = pki.caPem
  }, 60_000)
  afterAll(async () => {
    if (server.exitCode === null) {
      server.kill('SIGTERM')
      await new Promise((resolve) => server.once('exit', resolve))
    }
    await Promise.all([alpha.close(), beta.close(), mirror.close()])
    rmSync(dir, { recursive: true, force: true })
  })

  it('makes no transport error and no wrong decision, records every request, and keeps memory bounded', async () => {
    const made = new Map<string, Kind>()
    const wrong: Array<string> = []
    let transportErrors = 0
    const rss: Array<{ t: number; mb: number }> = []
    const started = performance.now()
    const sampler = setInterval(() => rss.push({ t: performance.now() - started, mb: rssMb(server.pid ?? 0) }), 250)
    const end = started + (WARM_UP_SECONDS + SECONDS) * 1000

    await Promise.all(
      Array.from({ length: CLIENTS }, async (_, client) => {
        // One client: its own connections through the proxy, like a separate process would have.
        // Intercepted requests trust only the proxy's CA, tunnelled ones only the upstream's.
        const intercepted = new ProxyAgent({ uri: proxyUrl, requestTls: { ca: proxyCa }, connections: 1 })
        const tunnelled = new ProxyAgent({ uri: proxyUrl, requestTls: { ca: upstreamCa }, connections: 1 })
        for (let n = 0; performance.now() < end; n++) {
          const kind = KINDS[(client + n) % KINDS.length] ?? 'deny'
          const id = `${client}-${n}`
          made.set(id, kind)
          const url = new URL(URLS[kind])
          try {
            const response = await (kind === 'tunnel' ? tunnelled : intercepted).request({
              origin: url.origin,
              path: url.pathname,
              method: kind === 'pass' ? 'POST' : 'GET',
              headers: { 'x-load-id': id, authorization: `Bearer client-${id}` },
              ...(kind === 'pass' ? { body: 'grant_type=x' } : {}),
              // A tunnel is one connection per request, so each is its own audited CONNECT.
              reset: kind === 'tunnel'
            })
            const body = await response.body.text()
            const expected = kind === 'deny' ? 403 : 200
            if (response.statusCode !== expected) wrong.push(`${id} ${kind}: ${response.statusCode} ${body.slice(0, 80)}`)
          } catch (error) {
            transportErrors++
            if (transportErrors < 5) wrong.push(`${id} ${kind}: ${(error as Error).message}`)
          }
        }
        await Promise.all([intercepted.close(), tunnelled.close()])
      })
    )
    clearInterval(sampler)
    const elapsed = (performance.now() - started) / 1000

    // The upstreams' logs, request by request.
    const seen = new Map<string, { upstream: string; headers: Record<string, unknown> }>()
    for (const upstream of [alpha, beta, mirror]) {
      for (const r of upstream.received) {
        const id = String(r.headers['x-load-id'])
        if (seen.has(id)) wrong.push(`${id} arrived twice`)
        seen.set(id, { upstream: upstream.name, headers: r.headers })
      }
    }
    for (const [id, kind] of made) {
      const got = seen.get(id)
      const authorization = got?.headers['authorization']
      const apiKey = got?.headers['x-api-key']
      const ok =
        kind === 'inject-alpha' ? got?.upstream === 'alpha' && authorization === `Bearer ${KEYS.alpha}` && apiKey === undefined
        : kind === 'inject-beta' ? got?.upstream === 'beta' && apiKey === KEYS.beta && authorization === `Bearer client-${id}`
        : kind === 'pass' ? got?.upstream === 'alpha' && authorization === `Bearer client-${id}` && apiKey === undefined
        : kind === 'tunnel' ? got?.upstream === 'mirror' && authorization === `Bearer client-${id}` && apiKey === undefined
        : got === undefined
      if (!ok && got !== undefined) wrong.push(`${id} ${kind}: reached ${got.upstream} with authorization=${String(authorization).slice(0, 12)}… x-api-key=${apiKey === undefined ? 'none' : 'set'}`)
      else if (!ok) wrong.push(`${id} ${kind}: never reached its upstream`)
    }
    // Wherever a credential went, it was its own provider's host.
    for (const upstream of [alpha, beta, mirror]) {
      const text = JSON.stringify(upstream.received.map((r) => r.headers))
      if (upstream !== alpha && text.includes(KEYS.alpha)) wrong.push(`alpha's key reached ${upstream.name}`)
      if (upstream !== beta && text.includes(KEYS.beta)) wrong.push(`beta's key reached ${upstream.name}`)
    }

    // Stop the proxy (it flushes its audit file), then compare records with requests made.
    server.kill('SIGTERM')
    await new Promise((resolve) => server.once('exit', resolve))
    const auditText = readFileSync(auditPath, 'utf8')
    const records = auditText.trim().split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as AuditEntry)
    // Each kind of request has exactly one kind of record, so the counts must match kind by kind.
    const count = (kind: Kind) => [...made.values()].filter((k) => k === kind).length
    const recordOf = (r: AuditEntry): string => `${r.event} ${r.provider ?? '-'} ${r.metadata['host'] ?? ''} ${r.metadata['method'] ?? ''} ${r.metadata['reason'] ?? ''}`.replace(/ +/g, ' ').trim()
    const expectedRecords: Record<string, number> = {
      'proxy_inject alpha api.alpha.test GET': count('inject-alpha'),
      'proxy_inject beta api.beta.test GET': count('inject-beta'),
      'proxy_miss - api.alpha.test POST auth_endpoint': count('pass'),
      'proxy_deny - api.alpha.test no_match': count('deny'),
      'proxy_miss - pypi.test CONNECT passthrough': count('tunnel')
    }
    const recorded: Record<string, number> = {}
    for (const r of records) recorded[recordOf(r)] = (recorded[recordOf(r)] ?? 0) + 1
    const measured = rss.filter((s) => s.t >= WARM_UP_SECONDS * 1000)
    const quarter = (q: number) => median(measured.slice(Math.floor((q * measured.length) / 4), Math.floor(((q + 1) * measured.length) / 4)).map((s) => s.mb))
    const growth = quarter(3) - quarter(1)
    const peak = Math.max(...measured.map((s) => s.mb))
    const summary = {
      engine: ENGINE,
      clients: CLIENTS,
      seconds: round(elapsed),
      requests: made.size,
      requests_per_second: Math.round(made.size / elapsed),
      transport_errors: transportErrors,
      wrong_decisions: wrong.length,
      audit_records: records.length,
      rss_after_warmup_mb: round(measured[0]?.mb ?? 0),
      rss_growth_second_half_mb: round(growth),
      rss_peak_mb: round(peak),
      rss_end_mb: round(rss.at(-1)?.mb ?? 0),
      // The shape of the curve: resident memory at each tenth of the measured run.
      rss_mb_by_tenth: Array.from({ length: 10 }, (_, i) => round(measured[Math.floor(((i + 1) * (measured.length - 1)) / 10)]?.mb ?? 0)),
      wrong_examples: wrong.slice(0, 5)
    }
    process.stdout.write(`${JSON.stringify(summary)}\n`)
    summaries[ENGINE] = summary
    if (process.env['LOAD_RESULTS'] !== undefined) {
      mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true })
      writeFileSync(join(ROOT, 'bench', 'results', process.env['LOAD_RESULTS']), `${JSON.stringify(summaries, null, 2)}\n`)
    }

    expect(wrong.slice(0, 10)).toEqual([])
    expect(transportErrors).toBe(0)
    // The load ran (at least a request a client); how many it made is the benchmark's business, not a test's.
    expect(made.size).toBeGreaterThanOrEqual(CLIENTS)
    expect(recorded).toEqual(expectedRecords)
    expect(auditText).not.toContain(KEYS.alpha)
    expect(auditText).not.toContain(KEYS.beta)
    expect(growth).toBeLessThan(RSS_GROWTH_BOUND_MB)
  }, (SECONDS + WARM_UP_SECONDS + 60) * 1000)
})

const round = (n: number) => Math.round(n * 10) / 10
const median = (values: ReadonlyArray<number>) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0
