// A rollout from allow to deny, as the README shows it, through `egress-guard serve` with real
// clients (curl and Python's urllib, each with an http://name:token@… proxy URL): clients and
// their scopes, a read-only route rule, report-only enforcement, the audit file the proxy writes,
// then `replay` and `learn` on that very file (docs/spec.md §9–§12).
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { pythonUrllib } from '../support/clients.js'
import { createPki } from '../support/pki.js'
import { startUpstream, type Upstream } from '../support/upstream.js'
import { CLI, exitCode, KEY, workspace } from './support.js'

const { dir, cli } = workspace()
const TOKENS = { ci: 'tok-ci-0123456789abcdef', reader: 'tok-reader-fedcba9876543210' }

const POLICY = `
mode: connected_deny
enforcement: report
providers:
  - { name: alpha, apiUrl: "https://api.alpha.test/v1" }
connections:
  - { provider: alpha, name: default, credentials: { headers: { Authorization: "Bearer \${env:ALPHA_API_KEY}" } } }
  - provider: alpha
    name: readonly
    credentials: { headers: { Authorization: "Bearer \${env:ALPHA_API_KEY}-ro" } }
    allow: { methods: [GET, HEAD] }
clients:
  - { name: ci-job, token: "\${env:CI_TOKEN}", connections: [alpha/default] }
  - { name: reader, token: "\${env:READER_TOKEN}", connections: [alpha/readonly] }
`

const curl = (args: ReadonlyArray<string>): Promise<{ code: number; out: string }> =>
  new Promise((resolve) => execFile('curl', ['-sS', '--max-time', '10', ...args], (error, out) => resolve({ code: error === null ? 0 : Number((error as { code?: unknown }).code ?? -1), out })))

describe('a rollout from allow to deny: serve with clients and --report, then replay and learn on its audit', () => {
  let upstream: Upstream
  let server: ChildProcess
  let proxy = ''
  let bundle = ''
  const policyPath = join(dir, 'rollout.yaml')
  const audit = join(dir, 'rollout-audit.jsonl')
  const as = (name: string, token: string) => proxy.replace('http://', `http://${name}:${token}@`)

  beforeAll(async () => {
    const pki = createPki()
    upstream = await startUpstream('alpha', pki.leaf(['api.alpha.test', 'files.test']))
    writeFileSync(join(dir, 'upstream-ca.pem'), pki.caPem)
    writeFileSync(policyPath, POLICY)
    const connectTo = ['api.alpha.test', 'files.test'].flatMap((host) => ['--connect-to', `${host}:443:127.0.0.1:${upstream.port}`])
    server = spawn(process.execPath, [CLI, 'serve', '--policy', policyPath, '--upstream-ca', join(dir, 'upstream-ca.pem'), ...connectTo, '--port', '0', '--json', '--audit', audit, '--config-dir', join(dir, 'config')], {
      env: { PATH: process.env['PATH'] ?? '', HOME: dir, ALPHA_API_KEY: KEY, CI_TOKEN: TOKENS.ci, READER_TOKEN: TOKENS.reader }
    })
    let stdout = ''
    const listening = await new Promise<{ proxy: string; caCert: string; enforcement: string }>((resolve) => {
      server.stdout?.on('data', (d: Buffer) => {
        stdout += d.toString()
        const first = stdout.split('\n')[0] ?? ''
        if (first.endsWith('}')) resolve(JSON.parse(first))
      })
    })
    expect(listening.enforcement).toBe('report')
    proxy = listening.proxy
    bundle = join(dir, 'bundle.pem')
    writeFileSync(bundle, `${readFileSync(listening.caCert, 'utf8')}\n${pki.caPem}`)
  })
  afterAll(async () => {
    if (server.exitCode === null) server.kill('SIGKILL')
    await upstream.close()
  })

  it('refuses curl and Python without the client’s token (407), even in report mode', async () => {
    expect((await curl(['--proxy', proxy, '--cacert', bundle, 'https://api.alpha.test/v1/models'])).code).not.toBe(0)
    expect((await curl(['--proxy', as('ci-job', 'tok-wrong-000000000000'), '--cacert', bundle, 'https://api.alpha.test/v1/models'])).code).not.toBe(0)
    expect((await pythonUrllib(proxy, bundle, 'https://api.alpha.test/v1/models')).status).toBe(0)
    expect(upstream.received).toHaveLength(0)
  })

  it('injects each client’s own connection: ci-job the default, reader the read-only one', async () => {
    await curl(['--proxy', as('ci-job', TOKENS.ci), '--cacert', bundle, 'https://api.alpha.test/v1/models'])
    expect(upstream.received.at(-1)?.headers.authorization).toBe(`Bearer ${KEY}`)
    const read = await pythonUrllib(as('reader', TOKENS.reader), bundle, 'https://api.alpha.test/v1/models')
    expect(read.status).toBe(200)
    expect(upstream.received.at(-1)?.headers.authorization).toBe(`Bearer ${KEY}-ro`)
  })

  it('reports what enforce would deny and passes it without credentials: a write by the read-only client, a host without a route', async () => {
    const write = await curl(['--proxy', as('reader', TOKENS.reader), '--cacert', bundle, '-X', 'POST', '-d', '{}', 'https://api.alpha.test/v1/items'])
    expect(write.code).toBe(0)
    expect(upstream.received.at(-1)).toMatchObject({ method: 'POST', path: '/v1/items' })
    expect(upstream.received.at(-1)?.headers.authorization).toBeUndefined()
    const other = await pythonUrllib(as('ci-job', TOKENS.ci), bundle, 'https://files.test/report.csv')
    expect(other.status).toBe(200)
    expect(upstream.received.at(-1)?.headers.authorization).toBeUndefined()
  })

  it('writes every decision, naming its client, and no token', async () => {
    server.kill('SIGTERM')
    expect(await exitCode(server)).toBe(0)
    const records = readFileSync(audit, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { event: string; client: string | null; metadata: Record<string, string> })
    expect(records.map((r) => [r.event, r.client, r.metadata['reason'] ?? ''])).toEqual([
      ['proxy_deny', null, 'unauthenticated'],
      ['proxy_deny', null, 'unauthenticated'],
      ['proxy_deny', null, 'unauthenticated'],
      ['proxy_inject', 'ci-job', ''],
      ['proxy_inject', 'reader', ''],
      ['proxy_would_deny', 'reader', 'not_allowed'],
      ['proxy_would_deny', 'ci-job', 'no_match']
    ])
    const text = readFileSync(audit, 'utf8')
    for (const token of Object.values(TOKENS)) expect(text).not.toContain(token)
    expect(text).not.toContain(KEY)
  })

  it('replays the audit under enforce: the same verdicts (exit 0); learn drafts the passthrough list, and says what it cannot allow', async () => {
    const same = await cli(['replay', audit, '--policy', policyPath], { ALPHA_API_KEY: KEY })
    expect(same.stdout).toContain('0 of 4 decisions change')
    expect(same.stdout).toContain('3 refusals for want of proxy authentication not replayed')
    expect(same.code).toBe(0)
    const learned = await cli(['learn', audit, '--policy', policyPath])
    expect(learned.code).toBe(0)
    expect(learned.stdout).toContain('  - files.test # learned: 1 request passed as no_match')
    expect(learned.stdout).toContain('# not_allowed api.alpha.test: 1')
    const learnedPath = join(dir, 'learned.yaml')
    writeFileSync(learnedPath, learned.stdout.replace('enforcement: report', 'enforcement: enforce'))
    const after = await cli(['replay', audit, '--policy', learnedPath, '--json'], { ALPHA_API_KEY: KEY })
    const changes = (JSON.parse(after.stdout) as { changes: Array<{ request: { host: string }; was: { decision: string }; now: { decision: string; reason: string } }> }).changes
    expect(changes.map((c) => [c.request.host, c.was.decision, c.now.decision, c.now.reason])).toEqual([['files.test', 'deny', 'tunnel', 'passthrough']])
  })
})
