// The command line through real processes: `node dist/cli.js …` (built by `npm test` first):
// check, explain and the decision service. run.test.ts and serve.test.ts have the rest.
import { spawn } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

import { describe, expect, it } from 'vitest'

import { CLI, exitCode, KEY, workspace } from './support.js'

const space = workspace()
const { dir, policyPath, cli } = space

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

describe('report-only enforcement on the command line (docs/spec.md §11)', () => {
  it('explain --report: what the mode denies passes, recorded as proxy_would_deny', async () => {
    const result = await cli(['explain', 'https://api.alpha.test/v2/x', '--mode', 'connected_deny', '--report', '--policy', policyPath, '--json'], { ALPHA_API_KEY: KEY })
    expect(result.code).toBe(0)
    const shown = JSON.parse(result.stdout) as { enforcement: string; decision: { _tag: string }; audit: Array<{ event: string; metadata: Record<string, string> }> }
    expect(shown).toMatchObject({ enforcement: 'report', decision: { _tag: 'Pass' }, audit: [{ event: 'proxy_would_deny', metadata: { reason: 'no_match' } }] })
  })

  it('takes `enforcement: report` from the policy, and refuses any other word, naming both', async () => {
    const path = join(dir, 'report.yaml')
    writeFileSync(path, `enforcement: report\n${readFileSync(policyPath, 'utf8')}`)
    const result = await cli(['check', '--policy', path])
    expect(result.code).toBe(0)
    expect(result.stdout).toContain('in mode connected_deny (report only)')
    const bad = join(dir, 'audit-only.yaml')
    writeFileSync(bad, `enforcement: audit\n${readFileSync(policyPath, 'utf8')}`)
    const refused = await cli(['check', '--policy', bad])
    expect(refused.code).toBe(1)
    expect(refused.stderr).toContain('enforcement: unknown enforcement `audit`: expected enforce or report')
  })
})

describe('clients on the command line (docs/spec.md §9)', () => {
  const withClients = () => {
    const path = join(dir, 'clients.yaml')
    writeFileSync(path, `${readFileSync(policyPath, 'utf8')}clients:\n  - { name: ci-job, token: "\${env:CI_TOKEN}", mode: connected_allow, connections: [tie-a/default] }\n`)
    return path
  }

  it('explain --client decides in that client’s mode and with its connections only', async () => {
    const path = withClients()
    const result = await cli(['explain', 'https://api.alpha.test/v1/models', '--client', 'ci-job', '--policy', path, '--json'], { ALPHA_API_KEY: KEY })
    expect(result.code).toBe(0)
    expect(JSON.parse(result.stdout)).toMatchObject({ mode: 'connected_allow', request: { client: 'ci-job' }, decision: { _tag: 'Pass' }, audit: [{ event: 'proxy_miss', metadata: { reason: 'no_match' } }] })
    const shared = await cli(['explain', 'https://shared.test/api/x', '--client', 'ci-job', '--policy', path, '--json'], { ALPHA_API_KEY: KEY })
    expect(JSON.parse(shared.stdout)).toMatchObject({ resolution: { _tag: 'Matched', provider: 'tie-a', connection: 'default' } })
  })

  it('check --client counts that client’s routes, and names the clients when the name is unknown', async () => {
    const path = withClients()
    const result = await cli(['check', '--client', 'ci-job', '--policy', path])
    expect(result.code).toBe(0)
    expect(result.stdout).toContain('1 route for client ci-job in mode connected_allow')
    const unknown = await cli(['check', '--client', 'ghost', '--policy', path])
    expect(unknown.code).toBe(2)
    expect(unknown.stderr).toContain('error: --client `ghost`: expected one of ci-job')
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
