// Rate limits and the policy's own audit sinks (docs/spec.md §14) through `serve`: 429 with
// Retry-After and the reason in both forms, no credential resolved; OTLP/HTTP JSON log records at a
// strict local receiver, queued while it is down and counted in the metrics; sinks a policy names
// that cannot be opened stop the start with a message that says what to fix.
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { SERVICE_VERSION } from '../../../adapters/guard/policySinks.js'
import { startOtlpReceiver, type OtlpReceiver } from '../support/otlpReceiver.js'
import { curlThrough, startServe } from './serveProcess.js'
import { cliEnv, KEY, useStandIn, workspace } from './support.js'
import packageJson from '../../../package.json' with { type: 'json' }

const space = workspace()

const policyWith = (extra: string): string => {
  const path = join(space.dir, `policy-${Math.random().toString(36).slice(2)}.yaml`)
  writeFileSync(
    path,
    `mode: connected_deny
providers:
  - { name: alpha, apiUrl: "https://api.alpha.test/v1", envVar: ALPHA_API_KEY }
connections:
  - { provider: alpha, name: default, credentials: { exec: ["node", "-e", "require('fs').appendFileSync(process.argv[1], 'x'); console.log(JSON.stringify({headers: {authorization: 'Bearer ${KEY}'}}))", "${join(space.dir, 'resolutions')}"] } }
${extra}`
  )
  return path
}

describe('serve with policy limits and sinks', () => {
  let common: ReadonlyArray<string> = []
  useStandIn(space, (standIn) => {
    common = standIn.common.filter((_, i, all) => all[i] !== '--policy' && all[i - 1] !== '--policy')
  })
  let receiver: OtlpReceiver
  beforeAll(async () => {
    receiver = await startOtlpReceiver()
  })
  afterAll(async () => {
    await receiver.close()
  })

  it('answers over a limit 429 with Retry-After and X-Egress-Guard-Reason (JSON for a JSON client), recorded rate_limited', async () => {
    const policy = policyWith('limits: { perClient: { requests: 2, perSeconds: 120 }, perHost: { requests: 100, perSeconds: 1 } }\n')
    const served = await startServe([...common, '--policy', policy, '--port', '0', '--admin', '127.0.0.1:0'], { ...cliEnv(space), HOME: space.dir })
    try {
      const { proxy, caCert } = served.listening
      const answers = []
      for (let i = 0; i < 2; i++) answers.push(await curlThrough(proxy, caCert, 'https://api.alpha.test/v1/models'))
      const limited = await curlThrough(proxy, caCert, 'https://api.alpha.test/v1/models')
      const json = await curlThrough(proxy, caCert, 'https://api.alpha.test/v1/models', ['-H', 'Accept: application/json'])
      expect(answers.map((a) => a.status)).toEqual([200, 200])
      expect(limited.status).toBe(429)
      expect(limited.head).toMatch(/\r\nRetry-After: 60\r\n/i)
      expect(limited.head).toMatch(/\r\nX-Egress-Guard-Reason: rate_limited\r\n/i)
      expect(limited.body).toContain('Too many requests')
      expect(json.status).toBe(429)
      expect(JSON.parse(json.body)).toMatchObject({ error: 'egress_guard_denied', reason: 'rate_limited' })
      // The credential helper ran once, for the first request; never for a limited one.
      expect(readFileSync(join(space.dir, 'resolutions'), 'utf8')).toBe('x')
      const metrics = await (await fetch(`${served.listening.admin}/metrics`)).text()
      expect(metrics).toMatch(/egress_guard_decisions_total\{event="proxy_deny",reason="rate_limited",provider="",client=""\} 2/)
    } finally {
      await served.stop()
    }
  })

  it('posts every record to an OTLP collector as a log record, queued while it is down', async () => {
    receiver.setDown(true)
    const policy = policyWith(`audit:\n  - otlp: { url: "${receiver.url}", headers: { authorization: "Bearer \${env:OTLP_TOKEN}" } }\n`)
    const served = await startServe([...common, '--policy', policy, '--port', '0', '--admin', '127.0.0.1:0', '--instance', 'otlp-test'], { ...cliEnv(space), HOME: space.dir, OTLP_TOKEN: 'collector-token-1' })
    try {
      const { proxy, caCert } = served.listening
      expect((await curlThrough(proxy, caCert, 'https://api.alpha.test/v1/models')).status).toBe(200)
      expect((await curlThrough(proxy, caCert, 'https://unrouted.example.test/')).status).toBe(0) // the CONNECT refused: curl gets no answer from the host
      const queued = async () => Number(/^egress_guard_audit_queued (\d+)/m.exec(await (await fetch(`${served.listening.admin}/metrics`)).text())?.[1])
      expect(await queued()).toBe(2)
      receiver.setDown(false)
      for (let i = 0; i < 150 && receiver.logs.length < 2; i++) await new Promise((resolve) => setTimeout(resolve, 20))
      expect(receiver.rejected).toEqual([])
      expect(receiver.lastHeaders()?.['authorization']).toBe('Bearer collector-token-1')
      const [inject, deny] = receiver.logs
      expect(inject).toMatchObject({ body: 'proxy_inject', scope: 'egress-guard', severityNumber: 9, resource: { 'service.name': 'egress-guard', 'service.instance.id': 'otlp-test', 'service.version': packageJson.version } })
      expect(inject?.attributes).toMatchObject({ 'egress_guard.event': 'proxy_inject', 'egress_guard.provider': 'alpha', 'egress_guard.instance': 'otlp-test', 'egress_guard.request.host': 'api.alpha.test', 'egress_guard.request.port': '443', 'egress_guard.request.path': '/v1/models', 'egress_guard.metadata.method': 'GET' })
      expect(deny).toMatchObject({ body: 'proxy_deny', severityNumber: 13, attributes: expect.objectContaining({ 'egress_guard.metadata.reason': 'no_match', 'egress_guard.request.method': 'CONNECT' }) })
      expect(Number(BigInt(inject?.timeUnixNano ?? '0') / 1_000_000n)).toBeGreaterThan(Date.now() - 60_000)
      expect(JSON.stringify(receiver.logs)).not.toContain(KEY)
      expect(await queued()).toBe(0)
    } finally {
      await served.stop()
    }
    expect(SERVICE_VERSION).toBe(packageJson.version)
  })

  it('refuses to start when a sink the policy names cannot be opened, saying which and what to do', async () => {
    const policy = policyWith(`audit:\n  - file: "/nonexistent-dir/audit.jsonl"\n  - otlp: { url: "https://collector.example.test/v1/logs", headers: { x-token: "\${env:UNSET_VARIABLE_FOR_TEST}" } }\n`)
    const result = await space.cli(['serve', '--policy', policy, '--port', '0'], cliEnv(space))
    expect(result.code).toBe(1)
    expect(result.stderr).toContain('audit[0].file `/nonexistent-dir/audit.jsonl`: the directory `/nonexistent-dir` does not exist')
    expect(result.stderr).toContain('audit[1].otlp.headers.x-token')
    expect(result.stderr).toContain('UNSET_VARIABLE_FOR_TEST')
    const insecure = policyWith('audit:\n  - otlp: { url: "http://collector.example.test/v1/logs" }\n')
    const refused = await space.cli(['check', '--policy', insecure], cliEnv(space))
    expect(refused.code).not.toBe(0)
    expect(refused.stdout + refused.stderr).toContain('must be https')
  })
})
