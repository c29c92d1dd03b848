// The secret in both directions (docs/spec.md §13), the response side, end to end on every engine:
// an upstream that reflects the injected key (headers, JSON, gzip/deflate/br and a transfer coding,
// chunks split mid-value, server-sent events, base64 and URL forms, the status line, trailers,
// 1xx, WebSocket messages, pings and close reasons) reaches the client with the placeholder
// instead; a coding that cannot be read is refused. The rig is support/secretsRig.ts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { ADAPTERS } from './support/harness.js'
import { exchange, openTunnel } from './support/rawTunnel.js'
import { CLIENTS, leaks, REAL, send, start, webSocketMessages, type Setup } from './support/secretsRig.js'

describe.each(ADAPTERS)('responses scrubbed on %s', (adapter) => {
  describe('connected_allow', () => {
    let setup: Setup
    beforeAll(async () => {
      setup = await start(adapter, 'connected_allow')
    })
    afterAll(async () => {
      await setup.close()
    })

    it.each(CLIENTS)('scrubs the injected key from reflected headers and a JSON body (%s)', async (client) => {
      const answer = await send(setup, client, 'https://api.alpha.test/echo')
      expect(answer.status).toBe(200)
      expect(leaks(answer.body, REAL.alpha)).toBe(false)
      expect(answer.body).toContain(setup.placeholders.alpha)
      if (answer.headers !== undefined) {
        expect(answer.headers['x-echo-authorization']).toBe(`Bearer ${setup.placeholders.alpha}`)
        expect(answer.headers['x-echo-secret']).toBe(setup.placeholders.alpha)
      }
    })

    it.each(['gzip', 'deflate', 'br'])('decodes a %s body to scrub it, and sends it decoded', async (coding) => {
      const answer = await send(setup, 'curl', `https://api.alpha.test/echo/${coding}`, {}, undefined)
      expect(answer.status).toBe(200)
      const parsed = JSON.parse(answer.body) as { headers: Record<string, string> }
      expect(parsed.headers.authorization).toBe(`Bearer ${setup.placeholders.alpha}`)
      expect(leaks(answer.body, REAL.alpha)).toBe(false)
    })

    it('scrubs a value split across chunks, a server-sent event, and base64 and URL-encoded forms', async () => {
      const split = await send(setup, 'curl', 'https://api.alpha.test/echo/split')
      expect(split.body).toBe(`before ${setup.placeholders.alpha} after`)
      const events = await send(setup, 'node', 'https://api.alpha.test/echo/sse')
      expect(events.body).toBe(`data: {"key": "${setup.placeholders.alpha}"}\n\ndata: [DONE]\n\n`)
      const encoded = await send(setup, 'python', 'https://api.alpha.test/echo/encoded')
      expect(encoded.status).toBe(200)
      expect(leaks(encoded.body, REAL.alpha)).toBe(false)
      expect(encoded.body).toContain(`component=${setup.placeholders.alpha}`)
      expect(encoded.body).not.toContain(Buffer.from(`user:${REAL.alpha}`).toString('base64').slice(8, -4))
    })

    it('decodes a transfer coding the HTTP layer leaves on (gzip inside the chunks) to scrub it', async () => {
      const answer = await send(setup, 'curl', 'https://api.alpha.test/echo/te-gzip')
      expect(answer.status).toBe(200)
      expect((JSON.parse(answer.body) as { headers: Record<string, string> }).headers.authorization).toBe(`Bearer ${setup.placeholders.alpha}`)
    })

    it('scrubs the status line’s reason and the trailers, and passes no informational answer on', async () => {
      const raw = async (path: string): Promise<string> => {
        const tunnel = await openTunnel(setup.proxy.port, setup.caPem, 'api.alpha.test', ['http/1.1'])
        return exchange(tunnel!, [`GET ${path} HTTP/1.1\r\nHost: api.alpha.test\r\nTE: trailers\r\n\r\n`], 400)
      }
      for (const path of ['/echo/status', '/echo/trailer', '/echo/early']) {
        const answer = await raw(path)
        expect(answer).toMatch(/^HTTP\/1\.1 200 /)
        expect(answer).not.toContain(REAL.alpha)
      }
    })

    it('refuses a response in a coding it cannot read, and asks only for codings it can', async () => {
      const answer = await send(setup, 'curl', 'https://api.alpha.test/echo/zstd', { 'accept-encoding': 'zstd, br' })
      expect(answer.status).toBe(502)
      expect(answer.body).not.toContain(REAL.alpha)
      expect(setup.echo.received.at(-1)?.headers['accept-encoding']).toBe('br')
    })

    it('scrubs WebSocket messages from the upstream, text whole and fragmented and binary, pings, and its close reason', async () => {
      const { messages, pings, reason } = await webSocketMessages(setup, 3)
      expect(messages).toEqual([`whole ${setup.placeholders.alpha}`, `split ${setup.placeholders.alpha} end`, `binary ${setup.placeholders.alpha}`])
      expect(pings).toEqual([`ping ${setup.placeholders.alpha}`])
      expect(reason).toBe(`bye ${setup.placeholders.alpha}`)
      // Frames reach the scrubber uncompressed: the upgrade goes without extensions (http-mitm-proxy's
      // own WebSocket client decompresses the messages it hands over, and may ask for them).
      if (adapter !== 'http-mitm-proxy') expect(setup.echo.received.at(-1)?.headers['sec-websocket-extensions']).toBeUndefined()
    })
  })
})
