// `replay` and `learn` (docs/spec.md §12) through the built CLI, on an audit file a real guard
// wrote: every request decided again under another policy or mode, the changes listed as
// was → now with exit 1; a learned passthrough list that makes a deny mode deny none of what was
// passed; bad input named by its line, exit 2.
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

import * as E from 'fp-ts/lib/Either.js'
import { beforeAll, describe, expect, it } from 'vitest'

import { parsePolicyText } from '../../../adapters/config/PolicyFile.js'
import { jsonLinesSink } from '../../../adapters/guard/auditSinks.js'
import { createGuard } from '../../../adapters/guard/createGuard.js'
import type { RequestFacts } from '../../../core/index.js'
import { workspace } from './support.js'

const { dir, cli } = workspace()

const POLICY = `
mode: connected_allow
providers:
  - { name: alpha, apiUrl: "https://api.alpha.test/v1" }
connections:
  - { provider: alpha, name: default, credentials: { headers: { Authorization: "Bearer \${env:ALPHA_KEY}" } } }
`
const request = (host: string, path: string, scheme = 'https'): RequestFacts => ({ scheme, host, port: scheme === 'https' ? 443 : 80, path, method: 'GET' })

/** Writes the records a guard in connected_allow makes for these requests and tunnels. */
const auditOf = async (name: string, requests: ReadonlyArray<RequestFacts>, tunnels: ReadonlyArray<string>): Promise<string> => {
  const loaded = parsePolicyText(POLICY)
  if (E.isLeft(loaded)) throw new Error(loaded.left.messages.join())
  const path = join(dir, name)
  const sink = jsonLinesSink({ path })
  const guard = createGuard({ policy: loaded.right, env: { ALPHA_KEY: 'sk-replay-0123' }, audit: sink, log: () => undefined })
  for (const facts of requests) await guard.evaluate(facts)
  for (const host of tunnels) guard.evaluateTunnel(host, 443)
  await guard.close()
  return path
}

describe('egress-guard replay', () => {
  let audit = ''
  let policyPath = ''
  beforeAll(async () => {
    audit = await auditOf('audit.jsonl', [request('api.alpha.test', '/v1/models?x=1'), request('api.alpha.test', '/v2/files'), request('api.alpha.test', '/v1/models', 'http')], ['pypi.test', 'pypi.test', 'files.test'])
    policyPath = join(dir, 'replay-policy.yaml')
    writeFileSync(policyPath, POLICY)
  })

  it('finds nothing changed under the policy and mode that made the records (exit 0)', async () => {
    const result = await cli(['replay', audit, '--policy', policyPath])
    expect(result).toMatchObject({ code: 0, stdout: '0 of 6 decisions change under ' + policyPath + ' in mode connected_allow\n' })
  })

  it('lists every changed outcome as was → now under a deny mode, with counts (exit 1), without resolving a secret', async () => {
    const result = await cli(['replay', audit, '--policy', policyPath, '--mode', 'connected_deny'])
    expect(result.code).toBe(1)
    expect(result.stdout.split('\n')).toEqual([
      'GET https://api.alpha.test:443/v2/files: pass no_match → deny no_match',
      'GET http://api.alpha.test:80/v1/models: pass insecure_scheme → deny insecure_scheme',
      'CONNECT pypi.test:443: tunnel no_match → deny no_match',
      'CONNECT pypi.test:443: tunnel no_match → deny no_match',
      'CONNECT files.test:443: tunnel no_match → deny no_match',
      `5 of 6 decisions change under ${policyPath} in mode connected_deny`,
      '  pass → deny: 2',
      '  tunnel → deny: 3',
      ''
    ])
    const json = await cli(['replay', audit, '--policy', policyPath, '--mode', 'connected_deny', '--json'])
    const parsed = JSON.parse(json.stdout) as { total: number; changed: number; changes: Array<{ request: unknown; was: unknown; now: unknown }> }
    expect(parsed).toMatchObject({ total: 6, changed: 5 })
    expect(parsed.changes[0]).toEqual({
      request: { scheme: 'https', host: 'api.alpha.test', port: 443, method: 'GET', path: '/v2/files' },
      client: null,
      was: { decision: 'pass', reason: 'no_match', provider: null, connection: null },
      now: { decision: 'deny', reason: 'no_match', provider: null, connection: null }
    })
  })

  it('counts a connection as having credentials when its records said so, with no secret in reach', async () => {
    const result = await cli(['replay', audit, '--policy', policyPath, '--mode', 'connected_allow'], {})
    expect(result.code).toBe(0)
  })

  it('learns a passthrough list from what was passed as no_match, so a deny mode denies none of it; what it cannot allow is said', async () => {
    const learned = await cli(['learn', audit, '--policy', policyPath])
    expect(learned.code).toBe(0)
    expect(learned.stdout).toContain('  - files.test # learned: 1 request passed as no_match')
    expect(learned.stdout).toContain('  - pypi.test # learned: 2 requests passed as no_match')
    expect(learned.stdout).toContain('# Passed before, and still denied in a deny mode with this policy (no passthrough entry can allow them):')
    expect(learned.stdout).toContain('# insecure_scheme api.alpha.test: 1')
    const learnedPath = join(dir, 'learned.yaml')
    writeFileSync(learnedPath, learned.stdout)
    const replayed = await cli(['replay', audit, '--policy', learnedPath, '--mode', 'connected_deny', '--json'])
    const changes = (JSON.parse(replayed.stdout) as { changes: Array<{ request: { host: string; path?: string }; was: { decision: string }; now: { decision: string; reason: string } }> }).changes
    // What was passed as no_match now passes as passthrough; the one denial is the plain-http
    // request, which no passthrough entry can allow (and learn said so).
    expect(changes.filter((c) => c.now.decision !== 'deny').every((c) => c.now.reason === 'passthrough')).toBe(true)
    expect(changes.filter((c) => c.now.decision === 'deny').map((c) => [c.request.host, c.now.reason])).toEqual([['api.alpha.test', 'insecure_scheme']])
  })

  it.each<[string, string, string]>([
    ['a line that is not JSON', '{"decisionId":"a"}\nnot json\n', 'bad.jsonl:1: not an egress-guard audit record (it needs decisionId, event and metadata)'],
    ['garbage', 'garbage\n', 'bad.jsonl:1: not a JSON record; an audit file holds one JSON object per line'],
    ['a record of an older shape', '{"decisionId":"a","event":"proxy_miss","metadata":{"host":"x"},"provider":null,"connection":null}\n', 'bad.jsonl:1: a record of an older shape, without `request`: it cannot be decided again; replay records written by this version or later']
  ])('refuses %s, naming the line (exit 2)', async (_, text, message) => {
    const path = join(dir, 'bad.jsonl')
    writeFileSync(path, text)
    const result = await cli(['replay', path, '--policy', policyPath])
    expect(result.code).toBe(2)
    expect(result.stderr).toBe(`error: ${path.replace('bad.jsonl', '')}${message}\n`)
  })

  it('writes a long --json answer whole through a pipe before it exits', async () => {
    const record = (i: number): string =>
      JSON.stringify({ decisionId: `d${i}`, client: null, request: { scheme: 'https', host: 'api.alpha.test', port: 443, method: 'GET', path: `/v2/${i}` }, event: 'proxy_miss', provider: null, connection: null, metadata: { host: 'api.alpha.test', reason: 'no_match' } })
    const path = join(dir, 'long.jsonl')
    writeFileSync(path, `${Array.from({ length: 20_000 }, (_, i) => record(i)).join('\n')}\n`)
    const result = await cli(['replay', path, '--policy', policyPath, '--mode', 'connected_deny', '--json'])
    expect(result.code).toBe(1)
    expect(result.stdout.length).toBeGreaterThan(1_000_000)
    expect(JSON.parse(result.stdout)).toMatchObject({ total: 20_000, changed: 20_000 })
  })

  it('says when the last line is cut off', async () => {
    const whole = readFileSync(audit, 'utf8')
    const path = join(dir, 'cut.jsonl')
    writeFileSync(path, whole.slice(0, whole.length - 20))
    const result = await cli(['replay', path, '--policy', policyPath])
    expect(result.code).toBe(2)
    expect(result.stderr).toMatch(/cut\.jsonl:6: the last line is cut off \(was the file still being written\?\)/)
  })
})
