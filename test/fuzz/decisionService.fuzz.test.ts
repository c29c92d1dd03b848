// Fuzzing the decision service's JSON endpoints with malformed bodies over real HTTP: arbitrary
// JSON, text and bytes, valid facts with a field removed, retyped or added, deep nesting and
// oversized bodies. Every answer must be 200 (a decision), 400 (naming the decoding error) or 413,
// as JSON; never a 500, never a credential outside an Inject for a routed host, and the service
// keeps answering. Every one of FUZZ_BODIES (default 3,000) is generated and sent; FUZZ_SECONDS
// (default 120) is only the test's timeout, which stops a runaway.
import fc from 'fast-check'
import { Pool } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import type { RunningDecisionService } from '../../adapters/decision-service/decisionService.js'
import { KEY, startService, TOKEN } from '../adapters/decision-service/support.js'

const BODIES = Number(process.env['FUZZ_BODIES'] ?? 3_000)
const SECONDS = Number(process.env['FUZZ_SECONDS'] ?? 120)
const SEED = Number(process.env['FUZZ_SEED'] ?? Date.now() % 2 ** 31)
const ROUTED = ['api.alpha.test', 'api.beta.test']

const validFacts = fc.record({
  scheme: fc.constantFrom('https', 'http', 'HTTPS'),
  host: fc.constantFrom('api.alpha.test', 'API.ALPHA.TEST.', 'api.beta.test', 'evil.test', 'api.alpha.test.evil', '127.0.0.1'),
  port: fc.constantFrom(443, 80, 8443),
  path: fc.constantFrom('/v1/models', '/v2/x', '/oauth/token', '/v1/../admin', '*', ''),
  method: fc.constantFrom('GET', 'POST', 'CONNECT', 'TRACE')
})
const junk = fc.oneof(fc.anything({ maxDepth: 3 }), fc.string(), fc.integer(), fc.double(), fc.constant(null), fc.constant(''), fc.string({ minLength: 70_000, maxLength: 70_001 }))
const FIELDS = ['scheme', 'host', 'port', 'path', 'method', 'hostHeader', 'sni', 'absoluteUriHost', 'dialedAddress', 'extra', '__proto__', 'constructor'] as const

/** A body and the endpoint it goes to. */
const bodyArb: fc.Arbitrary<{ readonly endpoint: string; readonly body: string | Uint8Array }> = fc.record({
  endpoint: fc.constantFrom('/v1/decide', '/v1/decide', '/v1/tunnel'),
  body: fc.oneof(
    fc.json().map((j) => j),
    fc.string(),
    fc.uint8Array({ maxLength: 300 }),
    validFacts.map((f) => JSON.stringify(f)),
    fc.tuple(validFacts, fc.constantFrom(...FIELDS), junk).map(([f, k, v]) => JSON.stringify({ ...f, [k]: v })),
    fc.tuple(validFacts, fc.constantFrom(...FIELDS)).map(([f, k]) => JSON.stringify(Object.fromEntries(Object.entries(f).filter(([key]) => key !== k)))),
    fc.nat(5_000).map((n) => `${'['.repeat(n)}${']'.repeat(n)}`),
    fc.tuple(validFacts, fc.nat(3)).map(([f, n]) => JSON.stringify(f).slice(0, -1 - n)),
    fc.record({ host: fc.oneof(fc.string(), junk), port: fc.oneof(fc.integer(), junk) }).map((t) => JSON.stringify(t))
  )
})

describe('fuzzing the decision service', () => {
  let service: RunningDecisionService
  let pool: Pool
  beforeAll(async () => {
    ;({ service } = await startService('connected_deny', TOKEN))
    pool = new Pool(service.url, { connections: 4 })
  })
  afterAll(async () => {
    await pool.close()
    await service.close()
  })

  it(`answers ${BODIES.toLocaleString('en')} malformed bodies with 200, 400 or 413, seed ${SEED}`, async () => {
    // Bodies are generated in batches as they are sent.
    const BATCH = 250
    function* bodies() {
      for (let done = 0, batch = 0; done < BODIES; done += BATCH, batch++) yield* fc.sample(bodyArb, { numRuns: Math.min(BATCH, BODIES - done), seed: SEED + batch })
    }
    const failures: Array<string> = []
    const statuses = new Map<number, number>()
    let sent = 0
    for (const { endpoint, body } of bodies()) {
      if (failures.length > 0) break
      let response: Awaited<ReturnType<Pool['request']>>
      let text: string
      try {
        response = await pool.request({ path: endpoint, method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body })
        text = await response.body.text()
      } catch (error) {
        failures.push(`transport error ${(error as Error).message}: ${endpoint} ${typeof body === 'string' ? `${body.length} chars ${body.slice(0, 80)}` : `<${body.length} bytes>`}`)
        continue
      }
      sent++
      statuses.set(response.statusCode, (statuses.get(response.statusCode) ?? 0) + 1)
      const shown = `${endpoint} ${typeof body === 'string' ? body.slice(0, 120) : `<${body.length} bytes>`} → ${response.statusCode} ${text.slice(0, 160)}`
      let json: Record<string, unknown>
      try {
        json = JSON.parse(text) as Record<string, unknown>
      } catch {
        failures.push(`not JSON: ${shown}`)
        continue
      }
      if (![200, 400, 413].includes(response.statusCode)) failures.push(`status: ${shown}`)
      if (response.statusCode === 400 && (typeof json['error'] !== 'string' || !Array.isArray(json['details']))) failures.push(`400 without error and details: ${shown}`)
      if (response.statusCode === 200 && !['Inject', 'Pass', 'Deny', 'Intercept', 'Tunnel'].includes(String((json['decision'] as { _tag?: unknown } | undefined)?._tag))) failures.push(`200 without a decision: ${shown}`)
      if (text.includes(KEY)) {
        const facts = JSON.parse(typeof body === 'string' ? body : '{}') as { host?: string }
        const host = String(facts.host ?? '').toLowerCase().replace(/\.$/, '')
        if ((json['decision'] as { _tag?: string })._tag !== 'Inject' || !ROUTED.includes(host)) failures.push(`credential outside an Inject for a routed host: ${shown}`)
      }
    }
    const health = await pool.request({ path: '/healthz', method: 'GET' })
    await health.body.text()
    process.stdout.write(`decision-service fuzz: ${sent} bodies, statuses ${JSON.stringify(Object.fromEntries(statuses))}, seed ${SEED}\n`)
    expect(failures.slice(0, 5)).toEqual([])
    expect(sent).toBe(BODIES)
    expect(health.statusCode).toBe(200)
    // Both kinds of answer must be reached, or the generator is not testing the decoder.
    expect(statuses.get(200) ?? 0).toBeGreaterThan(sent / 20)
    expect(statuses.get(400) ?? 0).toBeGreaterThan(sent / 20)
  }, (SECONDS + 60) * 1000)
})
