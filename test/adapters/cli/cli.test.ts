// The command line through real processes: `node dist/cli.js …` (built by `npm test` first).
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import http from 'node:http'
import { connect as tlsConnect } from 'node:tls'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { connect as netConnect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { createPki } from '../support/pki.js'
import { startUpstream, type Upstream } from '../support/upstream.js'

const CLI = fileURLToPath(new URL('../../../dist/cli.js', import.meta.url))
const dir = mkdtempSync(join(tmpdir(), 'eg-cli-'))
const KEY = 'sk-cli-test-51d2a9'

interface Result {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** The SHA-256 fingerprint of the certificate the proxy presents for `host`, over a new CONNECT. */
const leafFingerprint = (proxyPort: number, host: string): Promise<string> =>
  new Promise((resolve, reject) => {
    const request = http.request({ host: '127.0.0.1', port: proxyPort, method: 'CONNECT', path: `${host}:443` })
    request.on('connect', (_response, socket) => {
      const tls = tlsConnect({ socket, servername: host, rejectUnauthorized: false }, () => {
        resolve(tls.getPeerCertificate().fingerprint256)
        tls.destroy()
      })
      tls.on('error', reject)
    })
    request.on('error', reject)
    request.end()
  })

/** A child's exit code once it has exited (at once if it already has). */
const exitCode = (child: ChildProcess): Promise<number | null> =>
  child.exitCode !== null || child.signalCode !== null ? Promise.resolve(child.exitCode) : new Promise((resolve) => child.once('exit', resolve))

const cli = (args: ReadonlyArray<string>, env: NodeJS.ProcessEnv = {}): Promise<Result> =>
  new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { PATH: process.env['PATH'] ?? '', HOME: dir, ...env }, timeout: 30_000 }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stdout, stderr })
    })
  })

const POLICY = `
mode: connected_deny
denyText: { loginCommand: "authsome login {provider}" }
providers:
  - name: alpha
    apiUrl: https://api.alpha.test/v1
    envVar: ALPHA_API_KEY
    oauth: { tokenUrl: "https://api.alpha.test/oauth/token" }
  - name: gamma
    apiUrl: https://api.gamma.test/
    envVar: GAMMA_API_KEY
  - name: tie-a
    apiUrl: https://shared.test/api
  - name: tie-b
    apiUrl: https://shared.test/api
connections:
  - provider: alpha
    name: default
    credentials: { headers: { Authorization: "Bearer \${env:ALPHA_API_KEY}" } }
  - { provider: tie-a, name: default, credentials: { headers: { x: "\${env:ALPHA_API_KEY}" } } }
  - { provider: tie-b, name: default, credentials: { headers: { x: "\${env:TIE_SECRET}" } } }
passthrough: [pypi.test]
`
const policyPath = join(dir, 'policy.yaml')
writeFileSync(policyPath, POLICY)

describe('egress-guard check', () => {
  it('finds the bundled catalog clean', async () => {
    const result = await cli(['check'])
    expect(result.code).toBe(0)
    expect(result.stdout).toMatch(/^the bundled catalog: 14 providers, 0 routes in mode connected_allow \(\d+ when configured\), 0 warnings$/m)
  })

  it('reports an over-broad pattern as a warning', async () => {
    const path = join(dir, 'broad.yaml')
    writeFileSync(path, 'providers: [{name: gh, apiUrl: "regex:.*githubusercontent\\\\.com"}]\n')
    const result = await cli(['check', '--policy', path])
    expect(result.code).toBe(0)
    expect(result.stdout).toContain('warning [overbroad_pattern] gh: pattern `.*githubusercontent\\.com` also matches the look-alike host `evilgithubusercontent.com`')
  })

  it('exits 1 on an invalid policy, naming the problem', async () => {
    const path = join(dir, 'broken.yaml')
    writeFileSync(path, 'providers: []\ncolour: red\n')
    const result = await cli(['check', '--policy', path])
    expect(result.code).toBe(1)
    expect(result.stderr).toContain(`error: ${path}: colour: unknown key \`colour\``)
  })

  it('exits 2 on a bad option, naming the four modes', async () => {
    const result = await cli(['check', '--mode', 'strict'])
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('--mode: unknown mode `strict`: expected one of connected_allow, connected_deny, configured_allow, configured_deny')
  })
})

describe('egress-guard explain, for each row of docs/spec.md §5 a URL can express', () => {
  // A URL cannot carry a different Host header or SNI, so host_mismatch is covered by the proxy tests.
  const rows: ReadonlyArray<[string, string, string, string, ReadonlyArray<string>]> = [
    // url, mode, decision, reason, audit events
    ['https://api.alpha.test/v1/models', 'connected_deny', 'Inject', '', ['proxy_inject']],
    ['https://api.gamma.test/x', 'configured_allow', 'Pass', '', ['proxy_no_credentials']],
    ['https://api.gamma.test/x', 'configured_deny', 'Deny', 'no_credentials', ['proxy_no_credentials', 'proxy_deny']],
    ['https://api.alpha.test/v2/x', 'connected_allow', 'Pass', '', ['proxy_miss']],
    ['https://api.alpha.test/v2/x', 'connected_deny', 'Deny', 'no_match', ['proxy_deny']],
    ['https://shared.test/api/x', 'connected_deny', 'Deny', 'ambiguous', ['proxy_deny']],
    ['http://api.alpha.test/v1/models', 'connected_deny', 'Deny', 'insecure_scheme', ['proxy_deny']],
    ['https://127.0.0.1/v1', 'connected_deny', 'Deny', 'local_destination', ['proxy_deny']],
    ['https://api.alpha.test/oauth/token?code=x', 'connected_deny', 'Pass', '', ['proxy_miss']],
    ['https://pypi.test/simple', 'configured_deny', 'Pass', '', ['proxy_miss']]
  ]
  it.each(rows)('%s in %s: %s %s', async (url, mode, decision, reason, events) => {
    const result = await cli(['explain', url, '--mode', mode, '--policy', policyPath, '--json'], { ALPHA_API_KEY: KEY })
    expect(result.code).toBe(0)
    const out = JSON.parse(result.stdout) as { decision: { _tag: string; reason?: string; headers?: unknown }; audit: Array<{ event: string }> }
    expect(out.decision._tag).toBe(decision)
    if (reason !== '') expect(out.decision.reason).toBe(reason)
    if (decision === 'Inject') expect(out.decision.headers).toEqual(['Authorization'])
    expect(out.audit.map((r) => r.event)).toEqual(events)
    expect(result.stdout).not.toContain(KEY)
  })

  it('says what ruled out the routes of the host on a miss', async () => {
    const result = await cli(['explain', 'https://api.alpha.test/v2/x', '--policy', policyPath, '--method', 'post'], { ALPHA_API_KEY: KEY })
    expect(result.stdout).toContain('POST https://api.alpha.test/v2/x  (mode connected_deny')
    expect(result.stdout).toContain('resolution: miss (no_match)')
    expect(result.stdout).toContain('decision:   deny no_match: 403 "Forbidden by egress-guard proxy policy (no_match)"')
    expect(result.stdout).toContain('✗ alpha/default api.alpha.test:443/v1: path `/v2/x` is not under `/v1`')
  })
})

describe('egress-guard decision-service', () => {
  it('refuses to start without a token, since it hands out credentials', async () => {
    const result = await cli(['decision-service', '--policy', policyPath, '--port', '0'])
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('callers must present a token')
  })

  it('serves decisions with a required token until SIGTERM', async () => {
    const server = spawn(process.execPath, [CLI, 'decision-service', '--policy', policyPath, '--port', '0', '--token', 'tok-1-of-sixteen-chars', '--json'], {
      env: { PATH: process.env['PATH'] ?? '', HOME: dir, ALPHA_API_KEY: KEY }
    })
    let stdout = ''
    const listening = await new Promise<{ url: string; mode: string }>((resolve) => {
      server.stdout.on('data', (d: Buffer) => {
        stdout += d.toString()
        const first = stdout.split('\n')[0] ?? ''
        if (first.endsWith('}')) resolve(JSON.parse(first))
      })
    })
    expect(listening).toMatchObject({ mode: 'connected_deny' })
    const body = JSON.stringify({ scheme: 'https', host: 'api.alpha.test', port: 443, path: '/v1/x', method: 'GET' })
    const refused = await fetch(`${listening.url}/v1/decide`, { method: 'POST', body })
    expect(refused.status).toBe(401)
    const answer = await fetch(`${listening.url}/v1/decide`, { method: 'POST', body, headers: { authorization: 'Bearer tok-1-of-sixteen-chars' } })
    expect(((await answer.json()) as { decision: { _tag: string } }).decision._tag).toBe('Inject')
    server.kill('SIGTERM')
    expect(await exitCode(server)).toBe(0)
    expect(stdout).toContain('"event":"proxy_inject"')
    expect(stdout).not.toContain(KEY)
  })
})

describe('egress-guard run and serve, with a stand-in upstream', () => {
  let upstream: Upstream
  let caPath = ''
  let common: Array<string> = []
  beforeAll(async () => {
    const pki = createPki()
    upstream = await startUpstream('alpha', pki.leaf(['api.alpha.test']))
    caPath = join(dir, 'upstream-ca.pem')
    writeFileSync(caPath, pki.caPem)
    common = ['--policy', policyPath, '--upstream-ca', caPath, '--connect-to', `api.alpha.test:443:127.0.0.1:${upstream.port}`]
  })
  afterAll(async () => {
    await upstream.close()
  })
  const env = { ALPHA_API_KEY: KEY, TIE_SECRET: 'tie-secret-value', EGRESS_GUARD_CONFIG_DIR: join(dir, 'config'), NO_PROXY: 'internal.corp' }
  const runDirs = () => readdirSync(tmpdir()).filter((d) => d.startsWith('egress-guard-run-'))

  it('gives the child the proxy, the CA bundle and placeholders, never the key', async () => {
    const script = "console.log(JSON.stringify(Object.fromEntries(['HTTP_PROXY','HTTPS_PROXY','http_proxy','https_proxy','NO_PROXY','no_proxy','SSL_CERT_FILE','REQUESTS_CA_BUNDLE','CURL_CA_BUNDLE','NODE_EXTRA_CA_CERTS','ALPHA_API_KEY','GAMMA_API_KEY','TIE_SECRET'].map((k) => [k, process.env[k]]))))"
    const result = await cli(['run', ...common, '--', process.execPath, '-e', script], env)
    expect(result.code).toBe(0)
    const seen = JSON.parse(result.stdout) as Record<string, string | undefined>
    expect(seen['HTTPS_PROXY']).toMatch(/^http:\/\/run:[A-Za-z0-9_-]{43}@127\.0\.0\.1:\d+$/)
    for (const k of ['HTTP_PROXY', 'http_proxy', 'https_proxy']) expect(seen[k]).toBe(seen['HTTPS_PROXY'])
    expect(seen['NO_PROXY']).toBe('internal.corp,localhost,127.0.0.1,::1')
    expect(seen['no_proxy']).toBe(seen['NO_PROXY'])
    expect(seen['REQUESTS_CA_BUNDLE']).toBe(seen['SSL_CERT_FILE'])
    expect(seen['CURL_CA_BUNDLE']).toBe(seen['SSL_CERT_FILE'])
    expect(seen['NODE_EXTRA_CA_CERTS']).toMatch(/egress-guard-run-[^/]+\/node-extra-ca\.pem$/)
    expect(seen['ALPHA_API_KEY']).toBe('egress-guard-placeholder')
    expect(seen['GAMMA_API_KEY']).toBeUndefined() // gamma is not routed in connected_deny
    expect(seen['TIE_SECRET']).toBe('egress-guard-placeholder') // read by a template, no envVar declared
    expect(result.stdout).not.toContain(KEY)
    expect(result.stdout).not.toContain('tie-secret-value')
    expect(existsSync(seen['SSL_CERT_FILE'] ?? '')).toBe(false) // removed after the child exited
  })

  it('keeps the user’s own CAs beside the proxy CA, and names the bundle in every tool’s variable', async () => {
    const corporate = createPki().caPem
    const extra = createPki().caPem
    writeFileSync(join(dir, 'corporate.pem'), corporate)
    writeFileSync(join(dir, 'extra.pem'), extra)
    const script = `const fs = require('fs'); const read = (n) => fs.readFileSync(process.env[n], 'utf8'); console.log(JSON.stringify({ bundle: read('SSL_CERT_FILE'), node: read('NODE_EXTRA_CA_CERTS'), same: ['REQUESTS_CA_BUNDLE','CURL_CA_BUNDLE','GIT_SSL_CAINFO','AWS_CA_BUNDLE','PIP_CERT','npm_config_cafile','DENO_CERT','CARGO_HTTP_CAINFO'].every((n) => process.env[n] === process.env.SSL_CERT_FILE) }))`
    const result = await cli(['run', ...common, '--', process.execPath, '-e', script], { ...env, SSL_CERT_FILE: join(dir, 'corporate.pem'), NODE_EXTRA_CA_CERTS: join(dir, 'extra.pem') })
    expect(result.code).toBe(0)
    const seen = JSON.parse(result.stdout) as { bundle: string; node: string; same: boolean }
    const proxyCa = readFileSync(join(dir, 'config', 'certs', 'ca.pem'), 'utf8')
    expect(seen.same).toBe(true)
    expect(seen.bundle).toContain(corporate.trim())
    expect(seen.bundle).toContain(proxyCa.trim())
    expect(seen.bundle.split('BEGIN CERTIFICATE').length).toBeGreaterThan(50) // the system's roots too
    expect(seen.node).toContain(extra.trim())
    expect(seen.node).toContain(proxyCa.trim())
  })

  it.each(['http-mitm-proxy', 'mockttp'])('sends the child’s traffic through the proxy (--engine %s), which injects the key', async (engine) => {
    const before = upstream.received.length
    const result = await cli(['run', ...common, '--engine', engine, '--', 'curl', '-sS', 'https://api.alpha.test/v1/models'], env)
    expect(result.code).toBe(0)
    expect(upstream.received).toHaveLength(before + 1)
    expect(upstream.received.at(-1)?.headers.authorization).toBe(`Bearer ${KEY}`)
  })

  it('keeps its proxy private: a connection without the child’s token gets 407', async () => {
    const script = "const u = new URL(process.env.HTTPS_PROXY); const s = require('net').connect(Number(u.port), u.hostname, () => s.write('CONNECT api.alpha.test:443 HTTP/1.1\\r\\nHost: api.alpha.test:443\\r\\n\\r\\n')); s.on('data', (d) => { console.log(d.toString().split('\\r\\n')[0]); s.destroy() })"
    const result = await cli(['run', ...common, '--', process.execPath, '-e', script], env)
    expect(result).toMatchObject({ code: 0, stdout: 'HTTP/1.1 407 Proxy Authentication Required\n' })
  })

  describe('--isolate', () => {
    it('gives the child no way out but the proxy: the proxy works, a direct connection and DNS do not', async () => {
      const before = upstream.received.length
      // Inside: curl through the proxy; a raw connection to the upstream (listening on this
      // machine's loopback, so reachable from outside the namespace); a DNS query.
      const script = [
        'curl -sS -o /dev/null -w "proxy:%{http_code}\\n" https://api.alpha.test/v1/models',
        `node -e "require('net').connect(${upstream.port}, '127.0.0.1').on('connect', () => { console.log('direct:connected'); process.exit() }).on('error', (e) => console.log('direct:' + e.code))"`,
        `node -e "require('dns').promises.resolve4('egress-guard.invalid').then(() => console.log('dns:answered'), (e) => console.log('dns:' + e.code))"`
      ].join('; ')
      const result = await cli(['run', '--isolate', ...common, '--', 'sh', '-c', script], env)
      expect(result.stderr).toBe('')
      expect(result.code).toBe(0)
      const lines = result.stdout.trim().split('\n')
      expect(lines[0]).toBe('proxy:200')
      expect(lines[1]).toMatch(/^direct:(ECONNREFUSED|ENETUNREACH)$/)
      expect(lines[2]).not.toBe('dns:answered')
      expect(upstream.received).toHaveLength(before + 1)
      expect(upstream.received.at(-1)?.headers.authorization).toBe(`Bearer ${KEY}`)
    })

    it('exits with the child’s code', async () => {
      expect((await cli(['run', '--isolate', ...common, '--', 'sh', '-c', 'exit 7'], env)).code).toBe(7)
    })

    it('refuses to start, and runs nothing, where no namespace can be made', async () => {
      const fake = join(dir, 'no-userns')
      mkdirSync(fake, { recursive: true })
      writeFileSync(join(fake, 'unshare'), '#!/bin/sh\necho "unshare: unshare failed: Operation not permitted" >&2\nexit 1\n', { mode: 0o755 })
      const marker = join(dir, 'isolate-marker')
      const result = await cli(['run', '--isolate', ...common, '--', 'touch', marker], { ...env, PATH: `${fake}:${process.env['PATH'] ?? ''}` })
      expect(result.code).toBe(1)
      expect(result.stderr).toContain('error: --isolate: cannot make a user and network namespace here (unshare: unshare failed: Operation not permitted)')
      expect(existsSync(marker)).toBe(false)
    })
  })

  it('exits with the child’s exit code and passes its output through', async () => {
    const result = await cli(['run', ...common, '--', process.execPath, '-e', 'process.stdout.write("out"); process.stderr.write("err"); process.exit(3)'], env)
    expect(result).toEqual({ code: 3, stdout: 'out', stderr: 'err' })
  })

  it('forwards signals to the child', async () => {
    const child = spawn(process.execPath, [CLI, 'run', ...common, '--', process.execPath, '-e', "process.on('SIGTERM', () => process.exit(42)); console.log('ready'); setInterval(() => {}, 1000)"], {
      env: { PATH: process.env['PATH'] ?? '', HOME: dir, ...env }
    })
    await new Promise<void>((resolve) => child.stdout.on('data', (d: Buffer) => d.toString().includes('ready') && resolve()))
    child.kill('SIGTERM')
    expect(await new Promise((resolve) => child.on('exit', resolve))).toBe(42)
  })

  it('cleans up and exits 127 when the command cannot start', async () => {
    const before = runDirs()
    const result = await cli(['run', ...common, '--', '/nonexistent/agent'], env)
    expect(result.code).toBe(127)
    expect(result.stderr).toContain('error: cannot run `/nonexistent/agent`: command not found')
    expect(runDirs()).toEqual(before)
  })

  it.each([
    ['an --upstream-ca file without a certificate', (marker: string) => ['--upstream-ca', policyPath, '--', 'touch', marker], 'holds no PEM certificate; give a file with -----BEGIN CERTIFICATE----- blocks'],
    ['an --audit file in a missing directory', (marker: string) => ['--audit', join(dir, 'missing', 'audit.jsonl'), '--', 'touch', marker], 'does not exist; create it or choose another path']
  ])('refuses %s before the child starts, naming the option and the fix', async (_, args, message) => {
    const marker = join(dir, `marker-${Math.random().toString(36).slice(2)}`)
    const result = await cli(['run', '--policy', policyPath, ...args(marker)], env)
    expect(result.code).toBe(1)
    expect(result.stderr).toContain(message)
    expect(existsSync(marker)).toBe(false)
  })

  it('says to put the command after `--` when its own options come first', async () => {
    const result = await cli(['run', 'curl', '-s', 'https://api.alpha.test/v1/models'], env)
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('put the command after `--`')
  })

  it('exits 2 when no command follows `--`', async () => {
    expect((await cli(['run', ...common], env)).code).toBe(2)
  })

  it('refuses an unknown engine, naming the ones it has', async () => {
    const result = await cli(['serve', ...common, '--engine', 'squid'], env)
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('--engine `squid`: expected one of node, http-mitm-proxy, mockttp')
  })

  it.each(['node', 'http-mitm-proxy', 'mockttp'])('serve --engine %s prints where it listens, logs decisions, and flushes the audit file on SIGTERM', async (engine) => {
    const audit = join(dir, `serve-audit-${engine}.jsonl`)
    const server = spawn(process.execPath, [CLI, 'serve', ...common, '--engine', engine, '--port', '0', '--json', '--audit', audit, '--config-dir', join(dir, 'config')], {
      env: { PATH: process.env['PATH'] ?? '', HOME: dir, ALPHA_API_KEY: KEY }
    })
    let stdout = ''
    let stderr = ''
    server.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    server.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const listening = await new Promise<{ proxy: string; caCert: string; mode: string }>((resolve) => {
      server.stdout.on('data', () => {
        const first = stdout.split('\n')[0] ?? ''
        if (first.endsWith('}')) resolve(JSON.parse(first))
      })
    })
    expect(listening.mode).toBe('connected_deny')
    const answer = await new Promise<string>((resolve) =>
      execFile('curl', ['-sS', '--proxy', listening.proxy, '--cacert', listening.caCert, 'https://api.alpha.test/v1/models'], (_e, out) => resolve(out))
    )
    expect(JSON.parse(answer)).toMatchObject({ upstream: 'alpha' })
    for (let i = 0; i < 50 && !stdout.includes('proxy_inject'); i++) await new Promise((resolve) => setTimeout(resolve, 20))
    server.kill('SIGTERM')
    expect(await exitCode(server), `serve's stderr: ${stderr}`).toBe(0)
    const lines = stdout.trim().split('\n').map((l) => JSON.parse(l) as { event: string })
    expect(lines.map((l) => l.event)).toEqual(['listening', 'proxy_inject', 'stopped'])
    expect(readFileSync(audit, 'utf8')).toContain('"event":"proxy_inject"')
    expect(stdout + readFileSync(audit, 'utf8')).not.toContain(KEY)
  })

  it('serve --workers 2 keeps every tunnel in the worker that judged its CONNECT: two hosts, new connections in turn, each served with its own certificate and credential', async () => {
    const pki = createPki()
    const both = await startUpstream('both', pki.leaf(['api.alpha.test', 'api.beta.test']))
    const policy = join(dir, 'two-hosts.yaml')
    writeFileSync(
      policy,
      `providers:\n  - { name: alpha, apiUrl: "https://api.alpha.test/v1" }\n  - { name: beta, apiUrl: "https://api.beta.test/v1" }\nconnections:\n  - { provider: alpha, name: default, credentials: { headers: { Authorization: "Bearer \${env:ALPHA_API_KEY}" } } }\n  - { provider: beta, name: default, credentials: { headers: { Authorization: "Bearer \${env:BETA_API_KEY}" } } }\n`
    )
    writeFileSync(join(dir, 'both-ca.pem'), pki.caPem)
    const server = spawn(
      process.execPath,
      [CLI, 'serve', '--policy', policy, '--upstream-ca', join(dir, 'both-ca.pem'), '--workers', '2', '--port', '0', '--json', '--config-dir', join(dir, 'config-two-hosts'),
        ...['api.alpha.test', 'api.beta.test'].flatMap((h) => ['--connect-to', `${h}:443:127.0.0.1:${both.port}`])],
      { env: { PATH: process.env['PATH'] ?? '', HOME: dir, ALPHA_API_KEY: KEY, BETA_API_KEY: `${KEY}-beta` } }
    )
    let stdout = ''
    server.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    try {
      const listening = await new Promise<{ proxy: string; caCert: string }>((resolve) => {
        server.stdout.on('data', () => {
          const first = stdout.split('\n')[0] ?? ''
          if (first.endsWith('}')) resolve(JSON.parse(first))
        })
      })
      // Each curl is a new connection, and round-robin hands consecutive ones to different workers:
      // in the order alpha, alpha, beta, beta, … each worker serves both hosts in turn.
      const hostOf = (i: number) => (Math.floor(i / 2) % 2 === 0 ? 'api.alpha.test' : 'api.beta.test')
      const statuses: Array<string> = []
      for (let i = 0; i < 12; i++) {
        const host = hostOf(i)
        statuses.push(
          await new Promise<string>((resolve) =>
            execFile('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '--proxy', listening.proxy, '--cacert', listening.caCert, `https://${host}/v1/x`], (_e, out) => resolve(`${host} ${out}`))
          )
        )
      }
      expect(statuses).toEqual(Array.from({ length: 12 }, (_, i) => `${hostOf(i)} 200`))
      expect(both.received.map((r) => `${r.headers.host} ${r.headers.authorization}`)).toEqual(
        Array.from({ length: 12 }, (_, i) => (hostOf(i) === 'api.alpha.test' ? `api.alpha.test Bearer ${KEY}` : `api.beta.test Bearer ${KEY}-beta`))
      )
    } finally {
      server.kill('SIGTERM')
      await exitCode(server)
      await both.close()
    }
  })

  it('serve --workers 2 shares one port, one CA and one certificate cache, and flushes every worker’s audit on SIGTERM', async () => {
    const audit = join(dir, 'serve-audit-workers.jsonl')
    const server = spawn(process.execPath, [CLI, 'serve', ...common, '--workers', '2', '--port', '0', '--json', '--audit', audit, '--config-dir', join(dir, 'config-workers')], {
      env: { PATH: process.env['PATH'] ?? '', HOME: dir, ALPHA_API_KEY: KEY }
    })
    let stdout = ''
    server.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    const listening = await new Promise<{ proxy: string; caCert: string; workers: number }>((resolve) => {
      server.stdout.on('data', () => {
        const first = stdout.split('\n')[0] ?? ''
        if (first.endsWith('}')) resolve(JSON.parse(first))
      })
    })
    expect(listening.workers).toBe(2)
    // Each curl is a new connection; round-robin sends consecutive ones to different workers.
    const before = upstream.received.length
    for (let i = 0; i < 6; i++) {
      await new Promise((resolve) => execFile('curl', ['-sS', '--proxy', listening.proxy, '--cacert', listening.caCert, 'https://api.alpha.test/v1/models'], resolve))
    }
    expect(upstream.received).toHaveLength(before + 6)
    expect(upstream.received.slice(before).every((r) => r.headers.authorization === `Bearer ${KEY}`)).toBe(true)
    // Four more connections, two per worker: all present the very same leaf certificate.
    const port = Number(new URL(listening.proxy).port)
    const fingerprints = new Set<string>()
    for (let i = 0; i < 4; i++) fingerprints.add(await leafFingerprint(port, 'api.alpha.test'))
    expect(fingerprints.size).toBe(1)
    server.kill('SIGTERM')
    expect(await exitCode(server)).toBe(0)
    expect(stdout.trim().split('\n').at(-1)).toBe('{"event":"stopped","signal":"SIGTERM"}')
    expect(readFileSync(audit, 'utf8').trim().split('\n').filter((l) => l.includes('"proxy_inject"'))).toHaveLength(6)
  })

  it('serve --workers 2 restarts a replacement that cannot start after a doubling wait, saying why, and keeps serving with the worker left', async () => {
    const policy = join(dir, 'restarts.yaml')
    writeFileSync(policy, POLICY)
    const server = spawn(process.execPath, [CLI, 'serve', ...common.map((a) => (a === policyPath ? policy : a)), '--workers', '2', '--port', '0', '--json', '--config-dir', join(dir, 'config-restarts')], {
      env: { PATH: process.env['PATH'] ?? '', HOME: dir, ALPHA_API_KEY: KEY }
    })
    let stdout = ''
    let stderr = ''
    server.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    server.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const exited = exitCode(server)
    try {
      const listening = await new Promise<{ proxy: string; caCert: string }>((resolve) => {
        server.stdout.on('data', () => {
          const first = stdout.split('\n')[0] ?? ''
          if (first.endsWith('}')) resolve(JSON.parse(first))
        })
      })
      // A policy no new worker can start with (the running ones keep their last good one).
      writeFileSync(policy, 'providers: [')
      const workers = readFileSync(`/proc/${server.pid}/task/${server.pid}/children`, 'utf8').trim().split(' ').map(Number)
      process.kill(workers[0] ?? 0, 'SIGKILL')
      const waits = () => [...stderr.matchAll(/starting a new one in (\d+) ms/g)].map((m) => Number(m[1]))
      for (let i = 0; i < 1_000 && waits().length < 4; i++) await new Promise((resolve) => setTimeout(resolve, 20))
      expect(waits().slice(0, 4)).toEqual([100, 200, 400, 800])
      expect(stderr).toContain('a new worker could not start')
      const status = await new Promise<string>((resolve) =>
        execFile('curl', ['-sS', '--max-time', '5', '-o', '/dev/null', '-w', '%{http_code}', '--proxy', listening.proxy, '--cacert', listening.caCert, 'https://api.alpha.test/v1/models'], (_e, out) => resolve(out))
      )
      expect(status).toBe('200')
      // Fixed, the next replacement starts.
      writeFileSync(policy, POLICY)
      for (let i = 0; i < 1_000 && !stderr.includes('the new worker is ready'); i++) await new Promise((resolve) => setTimeout(resolve, 20))
      expect(stderr).toContain('the new worker is ready')
    } finally {
      server.kill('SIGTERM')
      await exited
    }
  })

  it('serve --workers 2 hands no connection to a replacement worker before it is ready, and stops on SIGTERM while a client holds a tunnel open', async () => {
    const audit = join(dir, 'serve-audit-replaced.jsonl')
    const server = spawn(process.execPath, [CLI, 'serve', ...common, '--workers', '2', '--port', '0', '--json', '--audit', audit, '--config-dir', join(dir, 'config-replaced')], {
      env: { PATH: process.env['PATH'] ?? '', HOME: dir, ALPHA_API_KEY: KEY }
    })
    let stdout = ''
    let stderr = ''
    server.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    server.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const exited = new Promise<number | null>((resolve) => server.once('exit', resolve))
    let tunnel: Socket | undefined
    try {
      const listening = await new Promise<{ proxy: string; caCert: string }>((resolve) => {
        server.stdout.on('data', () => {
          const first = stdout.split('\n')[0] ?? ''
          if (first.endsWith('}')) resolve(JSON.parse(first))
        })
      })
      const workers = readFileSync(`/proc/${server.pid}/task/${server.pid}/children`, 'utf8').trim().split(' ').map(Number)
      expect(workers).toHaveLength(2)
      process.kill(workers[0] ?? 0, 'SIGKILL')
      const dead = () => !existsSync(`/proc/${workers[0]}`) || readFileSync(`/proc/${workers[0]}/stat`, 'utf8').split(') ')[1]?.startsWith('Z') === true
      for (let i = 0; i < 250 && !dead(); i++) await new Promise((resolve) => setTimeout(resolve, 10))
      // New connections while the replacement starts (Node's start-up alone takes longer than the
      // first of these): every one is served, by the worker left.
      const statuses: Array<string> = []
      for (let i = 0; i < 6; i++) {
        statuses.push(
          await new Promise<string>((resolve) =>
            execFile('curl', ['-sS', '--max-time', '5', '-o', '/dev/null', '-w', '%{http_code}', '--proxy', listening.proxy, '--cacert', listening.caCert, 'https://api.alpha.test/v1/models'], (_e, out) => resolve(out))
          )
        )
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
      expect(statuses).toEqual(Array.from({ length: 6 }, () => '200'))
      for (let i = 0; i < 250 && !stderr.includes('the new worker is ready'); i++) await new Promise((resolve) => setTimeout(resolve, 20))
      expect(stderr).toContain('the new worker is ready')
      // A client holds an idle tunnel open; SIGTERM still stops every worker, flushing its audit.
      const { port } = new URL(listening.proxy)
      tunnel = netConnect(Number(port), '127.0.0.1')
      tunnel.on('error', () => undefined)
      tunnel.write('CONNECT api.alpha.test:443 HTTP/1.1\r\nHost: api.alpha.test:443\r\n\r\n')
      await new Promise((resolve) => tunnel?.once('data', resolve))
      const signalledAt = Date.now()
      server.kill('SIGTERM')
      expect(await exited).toBe(0)
      expect(Date.now() - signalledAt).toBeLessThan(8_000)
      expect(stdout.trim().split('\n').at(-1)).toBe('{"event":"stopped","signal":"SIGTERM"}')
      expect(readFileSync(audit, 'utf8').trim().split('\n').filter((l) => l.includes('"proxy_inject"'))).toHaveLength(6)
    } finally {
      tunnel?.destroy()
      server.kill('SIGKILL')
      await exited
    }
  })
})
