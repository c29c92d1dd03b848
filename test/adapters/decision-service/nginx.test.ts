// Real nginx, running the shipped examples/nginx/egress-guard.conf, in front of a local HTTPS
// upstream, asking the decision service about every request (auth_request). Driven by curl.
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import type { ProxyMode } from '../../../core/index.js'
import type { RunningDecisionService } from '../../../adapters/decision-service/decisionService.js'
import { createPki } from '../support/pki.js'
import { freePort, isListening } from '../support/ports.js'
import { startUpstream, type Upstream } from '../support/upstream.js'
import { KEY, startService, TOKEN } from './support.js'

const TEMPLATE = fileURLToPath(new URL('../../../examples/nginx/egress-guard.conf', import.meta.url))

const waitForPort = async (port: number): Promise<void> => {
  for (let i = 0; i < 100; i++) {
    if (await isListening(port)) return
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error(`nginx did not listen on ${port}`)
}

const curl = (url: string, headers: ReadonlyArray<string> = []): Promise<{ status: number; body: string }> =>
  curlWithHeaders(url, headers).then(({ status, body }) => ({ status, body }))

/** curl's answer with its response headers (names in lower case), dumped ahead of the body on stdout. */
const curlWithHeaders = (url: string, headers: ReadonlyArray<string> = []): Promise<{ status: number; body: string; headers: Record<string, string> }> =>
  new Promise((resolve) => {
    execFile('curl', ['-sS', '--path-as-is', '--max-time', '10', '-D', '-', '-o', '-', '-w', '\n%{http_code}', ...headers.flatMap((h) => ['-H', h]), url], (_e, stdout) => {
      const cut = stdout.lastIndexOf('\n')
      const head = stdout.indexOf('\r\n\r\n')
      const received = Object.fromEntries(
        stdout
          .slice(0, Math.max(0, head))
          .split('\r\n')
          .map((line) => /^([^:\s]+):\s*(.*)$/.exec(line))
          .filter((m): m is RegExpExecArray => m !== null)
          .map((m) => [(m[1] ?? '').toLowerCase(), m[2] ?? ''])
      )
      resolve({ status: Number(stdout.slice(cut + 1)), body: stdout.slice(head < 0 ? 0 : head + 4, cut), headers: received })
    })
  })

describe.each<ProxyMode>(['connected_deny', 'connected_allow'])('nginx auth_request with the shipped configuration, %s', (mode) => {
  let nginx: ChildProcess
  let service: RunningDecisionService
  let upstream: Upstream
  let listen = 0
  beforeAll(async () => {
    const pki = createPki()
    upstream = await startUpstream('alpha', pki.leaf(['api.alpha.test']))
    ;({ service } = await startService(mode, TOKEN))
    // nginx workers run as `nobody` when started by root: everything they touch is opened up.
    const prefix = mkdtempSync(join(tmpdir(), 'eg-nginx-'))
    chmodSync(prefix, 0o755)
    for (const d of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) {
      mkdirSync(join(prefix, d))
      chmodSync(join(prefix, d), 0o777)
    }
    writeFileSync(join(prefix, 'upstream-ca.pem'), pki.caPem, { mode: 0o644 })
    listen = await freePort()
    const values: Record<string, string> = {
      PREFIX: prefix,
      LISTEN: `127.0.0.1:${listen}`,
      DECISION_SERVICE: `127.0.0.1:${service.port}`,
      TOKEN,
      UPSTREAM_HOST: 'api.alpha.test',
      UPSTREAM: `127.0.0.1:${upstream.port}`,
      UPSTREAM_CA: join(prefix, 'upstream-ca.pem')
    }
    const config = readFileSync(TEMPLATE, 'utf8').replace(/\$\{([A-Z_]+)\}/g, (_, name: string) => values[name] ?? `\${${name}}`)
    expect(config).not.toMatch(/\$\{[A-Z_]+\}/)
    writeFileSync(join(prefix, 'nginx.conf'), config, { mode: 0o644 })
    nginx = spawn('nginx', ['-e', 'stderr', '-p', prefix, '-c', join(prefix, 'nginx.conf'), '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    nginx.stderr?.on('data', (d: Buffer) => (stderr += d.toString()))
    await waitForPort(listen).catch((error: Error) => {
      throw new Error(`${error.message}: ${stderr}`)
    })
  })
  afterAll(async () => {
    nginx.kill('SIGQUIT')
    await new Promise((resolve) => nginx.once('exit', resolve))
    await service.close()
    await upstream.close()
  })

  it('injects the credential, replacing the client’s Authorization', async () => {
    const answer = await curl(`http://127.0.0.1:${listen}/v1/models?limit=1`, ['Authorization: Bearer client-own'])
    expect(answer.status).toBe(200)
    const seen = upstream.received.at(-1)
    expect(seen?.headers.authorization).toBe(`Bearer ${KEY}`)
    expect(seen?.path).toBe('/v1/models?limit=1')
    expect(seen?.headers.host).toBe('api.alpha.test')
  })

  it(mode.endsWith('deny') ? 'denies a request outside the prefix with the deny body' : 'passes a request outside the prefix with the client’s own header', async () => {
    const before = upstream.received.length
    const answer = await curl(`http://127.0.0.1:${listen}/v2/other`, ['Authorization: Bearer client-own'])
    if (mode.endsWith('deny')) {
      expect(answer).toEqual({ status: 403, body: 'Forbidden by egress-guard proxy policy (no_match)' })
      expect(upstream.received).toHaveLength(before)
    } else {
      expect(answer.status).toBe(200)
      expect(upstream.received.at(-1)?.headers.authorization).toBe('Bearer client-own')
    }
  })

  it.runIf(mode.endsWith('deny'))('names the reason of a refusal, and answers JSON to a client that accepts it', async () => {
    const text = await curlWithHeaders(`http://127.0.0.1:${listen}/v2/other`)
    expect(text).toMatchObject({ status: 403, body: 'Forbidden by egress-guard proxy policy (no_match)', headers: { 'x-egress-guard-reason': 'no_match' } })
    expect(text.headers['content-type']).toMatch(/^text\/plain/)
    const json = await curlWithHeaders(`http://127.0.0.1:${listen}/v2/other`, ['Accept: application/json'])
    expect(json.status).toBe(403)
    expect(json.headers).toMatchObject({ 'x-egress-guard-reason': 'no_match', 'content-type': expect.stringMatching(/^application\/json/) })
    expect(JSON.parse(json.body)).toEqual({ error: 'egress_guard_denied', reason: 'no_match', message: 'Forbidden by egress-guard proxy policy (no_match)' })
  })

  // nginx merges `//` before it removes dot segments (merge_slashes on), and so do Go, Node and
  // Python servers: to them `/v1//../v2/x` is `/v2/x`, while RFC 3986 alone reads `/v1/v2/x`,
  // inside the `/v1` prefix. nginx forwards the raw target; the credential must not go with it.
  it.each(['/v1//../v2/x', '/v1/x//../../v2/x', '/v1//%2e%2e/v2/x'])('never sends the credential to %s, which nginx serves outside the prefix', async (path) => {
    const before = upstream.received.length
    const answer = await curl(`http://127.0.0.1:${listen}${path}`, ['Authorization: Bearer client-own'])
    if (mode.endsWith('deny')) {
      expect(answer).toEqual({ status: 403, body: 'Forbidden by egress-guard proxy policy (no_match)' })
      expect(upstream.received).toHaveLength(before)
    } else {
      expect(answer.status).toBe(200)
      expect(upstream.received.at(-1)?.path).toBe(path)
      expect(upstream.received.at(-1)?.headers.authorization).toBe('Bearer client-own')
    }
  })
})
