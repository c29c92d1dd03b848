// Real mitmdump (Debian's mitmproxy) running the shipped addon adapters/mitmproxy/egress_guard.py
// against the decision service, in front of a local HTTPS upstream, driven by curl.
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import type net from 'node:net'
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

const NAMES = ['api.alpha.test', 'other.test', 'pypi.test']

const curl = (proxy: string, ca: string, url: string, headers: ReadonlyArray<string> = []): Promise<{ status: number; body: string }> =>
  new Promise((resolve) => {
    execFile('curl', ['-sS', '--max-time', '15', '--proxy', proxy, '--cacert', ca, '-o', '-', '-w', '\n%{http_code}', ...headers.flatMap((h) => ['-H', h]), url], (error, stdout) => {
      const cut = stdout.lastIndexOf('\n')
      resolve({ status: error === null ? Number(stdout.slice(cut + 1)) : 0, body: stdout.slice(0, Math.max(cut, 0)) })
    })
  })

interface Mitmdump {
  readonly proxy: string
  readonly ca: string
  /** The stand-in upstream's CA alone: a client trusting only it succeeds only through an untouched tunnel. */
  readonly upstreamCa: string
  /** What mitmdump printed on stderr so far. */
  readonly stderr: () => string
  readonly stop: () => Promise<void>
}

const ROOT = fileURLToPath(new URL('../../../', import.meta.url))

/** The command of docs/decision-service.md's mitmproxy section, as written there, for this service and token. */
export const readmeMitmdump = (serviceUrl: string, token: string): ReadonlyArray<string> => {
  const section = readFileSync(join(ROOT, 'docs', 'decision-service.md'), 'utf8').split('\n## mitmproxy\n')[1] ?? ''
  const block = /```sh\n(mitmdump[^`]*)```/.exec(section)?.[1] ?? ''
  const words = block.replace(/\\\n/g, ' ').trim().split(/\s+/)
  if (words[0] !== 'mitmdump' || !words.includes('egress_guard_url=http://127.0.0.1:8181') || !words.includes('egress_guard_token=TOKEN')) {
    throw new Error('docs/decision-service.md has no mitmdump command of the expected shape in its mitmproxy section')
  }
  return words.slice(1).map((w) => (w === 'adapters/mitmproxy/egress_guard.py' ? join(ROOT, w) : w.replace('http://127.0.0.1:8181', serviceUrl).replace(/=TOKEN$/, `=${token}`)))
}

// mitmdump as docs/decision-service.md runs it, plus what a test needs (a free port, its own confdir, trust in
// the stand-in's CA, the stand-in's address); a dead http_proxy in its environment must not
// affect its service calls.
const startMitmdump = async (serviceUrl: string, upstream: Upstream, caPem: string, extra: ReadonlyArray<string> = []): Promise<Mitmdump> => {
  const dir = mkdtempSync(join(tmpdir(), 'eg-mitmdump-'))
  const upstreamCa = join(dir, 'upstream-ca.pem')
  writeFileSync(upstreamCa, caPem)
  const port = await freePort()
  const ca = join(dir, 'mitmproxy-ca-cert.pem')
  const rules = NAMES.map((h) => `${h}:443:127.0.0.1:${upstream.port}`).join(',')
  const child: ChildProcess = spawn(
    'mitmdump',
    [...readmeMitmdump(serviceUrl, TOKEN), '--quiet', '--listen-host', '127.0.0.1', '--listen-port', String(port), '--set', `confdir=${dir}`,
      '--set', `ssl_verify_upstream_trusted_ca=${upstreamCa}`, '--set', `egress_guard_connect_to=${rules}`, ...extra],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, http_proxy: 'http://127.0.0.1:9', HTTP_PROXY: 'http://127.0.0.1:9', no_proxy: '', NO_PROXY: '' } }
  )
  let stderr = ''
  // mitmdump writes its own errors to stdout or stderr depending on the version: both are kept.
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()))
  child.stdout?.on('data', (d: Buffer) => (stderr += d.toString()))
  const stop = async () => {
    if (child.exitCode === null) child.kill('SIGTERM')
    await new Promise((resolve) => (child.exitCode === null ? child.once('exit', resolve) : resolve(undefined)))
  }
  for (let i = 0; i < 200 && child.exitCode === null; i++) {
    const listening = await isListening(port)
    if (listening && existsSync(ca)) return { proxy: `http://127.0.0.1:${port}`, ca, upstreamCa, stderr: () => stderr, stop }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  await stop()
  throw new Error(`mitmdump did not start: ${stderr}`)
}

describe.each<ProxyMode>(['connected_deny', 'connected_allow'])('mitmdump with the shipped addon, %s', (mode) => {
  let mitmdump: Mitmdump
  let service: RunningDecisionService
  let upstream: Upstream
  let proxy = ''
  let ca = ''
  beforeAll(async () => {
    const pki = createPki()
    upstream = await startUpstream('alpha', pki.leaf(NAMES))
    ;({ service } = await startService(mode, TOKEN))
    mitmdump = await startMitmdump(service.url, upstream, pki.caPem)
    ;({ proxy, ca } = mitmdump)
  }, 60_000)
  afterAll(async () => {
    await mitmdump.stop()
    await service.close().catch(() => undefined)
    await upstream.close()
  })

  it('injects the credential, replacing the client’s Authorization, and strips Proxy-*', async () => {
    const answer = await curl(proxy, ca, 'https://api.alpha.test/v1/models', ['Authorization: Bearer client-own', 'Proxy-Authorization: Basic eA=='])
    expect(answer.status).toBe(200)
    const seen = upstream.received.at(-1)
    expect(seen?.headers.authorization).toBe(`Bearer ${KEY}`)
    expect(seen?.rawNames.filter((n) => n === 'authorization')).toHaveLength(1)
    expect(seen?.rawNames.some((n) => n.startsWith('proxy-'))).toBe(false)
  })

  it(mode.endsWith('deny') ? 'denies a request outside the prefix with the body' : 'passes a request outside the prefix untouched', async () => {
    const before = upstream.received.length
    const answer = await curl(proxy, ca, 'https://api.alpha.test/v2/x', ['Authorization: Bearer client-own'])
    if (mode.endsWith('deny')) {
      expect(answer).toEqual({ status: 403, body: 'Forbidden by egress-guard proxy policy (no_match)' })
      expect(upstream.received).toHaveLength(before)
    } else {
      expect(answer.status).toBe(200)
      expect(upstream.received.at(-1)?.headers.authorization).toBe('Bearer client-own')
    }
  })

  it(mode.endsWith('deny') ? 'refuses the CONNECT to a host without routes, without connecting upstream' : 'tunnels a host without routes untouched: the client sees the upstream’s own certificate', async () => {
    const before = { requests: upstream.received.length, connections: upstream.connections() }
    if (mode.endsWith('deny')) {
      const answer = await curl(proxy, ca, 'https://other.test/')
      expect(answer.status).toBe(0)
      expect(upstream.received).toHaveLength(before.requests)
      expect(upstream.connections()).toBe(before.connections)
    } else {
      // Trusting the stand-in's CA alone: an intercepted tunnel would fail the handshake.
      const answer = await curl(proxy, mitmdump.upstreamCa, 'https://other.test/', ['Authorization: Bearer client-own'])
      expect(answer.status).toBe(200)
      expect(upstream.received.at(-1)?.headers.authorization).toBe('Bearer client-own')
      expect((await curl(proxy, ca, 'https://other.test/')).status).toBe(0)
    }
  })

  it('tunnels a passthrough host untouched', async () => {
    const answer = await curl(proxy, mitmdump.upstreamCa, 'https://pypi.test/simple/', ['Authorization: Bearer client-own'])
    expect(answer.status).toBe(200)
    expect(upstream.received.at(-1)?.path).toBe('/simple/')
    expect(upstream.received.at(-1)?.headers.authorization).toBe('Bearer client-own')
  })

  it('never injects when the Host header names another host', async () => {
    const answer = await curl(proxy, ca, 'https://api.alpha.test/v1/models', ['Host: other.test'])
    if (mode.endsWith('deny')) expect(answer).toEqual({ status: 403, body: 'Forbidden by egress-guard proxy policy (host_mismatch)' })
    else expect(upstream.received.at(-1)?.headers.authorization).toBeUndefined()
  })

  it('fails closed when the decision service cannot be reached', async () => {
    const before = upstream.received.length
    await service.close() // the last test of this block: the service is gone for good
    const answer = await curl(proxy, ca, 'https://api.alpha.test/v1/models')
    expect(answer.status).toBe(0) // the CONNECT itself is refused
    expect(upstream.received).toHaveLength(before)
  })
})

describe('mitmdump with the shipped addon, against what can go wrong', () => {
  let upstream: Upstream
  let caPem = ''
  beforeAll(async () => {
    const pki = createPki()
    caPem = pki.caPem
    upstream = await startUpstream('alpha', pki.leaf(NAMES))
  })
  afterAll(async () => {
    await upstream.close()
  })

  it('denies when the service answers JSON that is not a decision', async () => {
    const { default: http } = await import('node:http')
    const garbage = http.createServer((_request, response) => response.end('null'))
    await new Promise<void>((resolve) => garbage.listen(0, '127.0.0.1', resolve))
    const m = await startMitmdump(`http://127.0.0.1:${(garbage.address() as net.AddressInfo).port}`, upstream, caPem)
    try {
      const before = upstream.received.length
      expect((await curl(m.proxy, m.ca, 'https://api.alpha.test/v1/models')).status).toBe(0)
      expect(upstream.received).toHaveLength(before)
    } finally {
      await m.stop()
      await new Promise((resolve) => garbage.close(resolve))
    }
  }, 60_000)

  it('refuses to start, and says why, when the service URL is plain http off loopback (it would carry credentials in the clear)', async () => {
    const child = spawn('mitmdump', [...readmeMitmdump('http://192.0.2.1:8181', TOKEN), '--listen-host', '127.0.0.1', '--listen-port', String(await freePort())], { stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout?.on('data', (d: Buffer) => (output += d.toString()))
    child.stderr?.on('data', (d: Buffer) => (output += d.toString()))
    const code = await new Promise<number | null>((resolve) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL')
        resolve(null)
      }, 30_000)
      child.once('exit', (c) => {
        clearTimeout(timer)
        resolve(c)
      })
    })
    expect(code).toBe(1)
    expect(output).toContain('egress_guard_url: the decision service hands out credentials; reach it on a loopback address, or over https')
  }, 60_000)

  it('keeps serving other flows while the service is slow to answer one', async () => {
    const { service } = await startService('connected_deny', TOKEN)
    const { default: http } = await import('node:http')
    // A front for the service that holds tunnel questions about other.test until the test lets go.
    let release: () => void = () => undefined
    const released = new Promise<void>((resolve) => (release = resolve))
    let asked: () => void = () => undefined
    const heldAsked = new Promise<void>((resolve) => (asked = resolve))
    const slow = http.createServer((request, response) => {
      let body = ''
      request.on('data', (c: Buffer) => (body += c.toString()))
      request.on('end', () => {
        const forward = () => {
          const upstreamCall = http.request(`${service.url}${request.url ?? '/'}`, { method: request.method, headers: request.headers }, (answer) => {
            response.writeHead(answer.statusCode ?? 502, answer.headers)
            answer.pipe(response)
          })
          upstreamCall.end(body)
        }
        if (body.includes('other.test')) {
          asked()
          void released.then(forward)
        } else forward()
      })
    })
    await new Promise<void>((resolve) => slow.listen(0, '127.0.0.1', resolve))
    const m = await startMitmdump(`http://127.0.0.1:${(slow.address() as net.AddressInfo).port}`, upstream, caPem)
    try {
      let heldSettled = false
      const held = curl(m.proxy, m.ca, 'https://other.test/').finally(() => (heldSettled = true))
      await heldAsked
      // The service is still answering other.test: a flow over another tunnel is served meanwhile.
      const quick = await curl(m.proxy, m.ca, 'https://api.alpha.test/v1/models')
      expect(quick.status).toBe(200)
      expect(heldSettled).toBe(false)
      release()
      expect((await held).status).toBe(0)
    } finally {
      release()
      await m.stop()
      await new Promise((resolve) => slow.close(resolve))
      await service.close()
    }
  }, 60_000)

  it('answers a rate-limited flow 429 with Retry-After and its reason (docs/spec.md §14)', async () => {
    const { service } = await startService('connected_deny', TOKEN, 'limits: { perHost: { requests: 1, perSeconds: 60 } }\n')
    const m = await startMitmdump(service.url, upstream, caPem)
    try {
      const head = (url: string) =>
        new Promise<string>((resolve) => execFile('curl', ['-sS', '--max-time', '15', '--proxy', m.proxy, '--cacert', m.ca, '-o', '/dev/null', '-D', '-', '--suppress-connect-headers', url], (_e, out) => resolve(out)))
      expect(await head('https://api.alpha.test/v1/models')).toMatch(/^HTTP\/[0-9.]+ 200/)
      const limited = await head('https://api.alpha.test/v1/models')
      expect(limited).toMatch(/^HTTP\/[0-9.]+ 429/)
      expect(limited).toMatch(/\r\nretry-after: 60\r\n/i)
      expect(limited).toMatch(/\r\nx-egress-guard-reason: rate_limited\r\n/i)
    } finally {
      await m.stop()
      await service.close()
    }
  }, 60_000)

  it('decides before a streamed body goes upstream, and closes a denied one', async () => {
    const { service } = await startService('connected_deny', TOKEN)
    const m = await startMitmdump(service.url, upstream, caPem, ['--set', 'stream_large_bodies=1'])
    try {
      const before = upstream.received.length
      const posted = await new Promise<{ status: number; err: string }>((resolve) =>
        execFile('curl', ['-sS', '--max-time', '8', '--proxy', m.proxy, '--cacert', m.ca, '-o', '/dev/null', '-w', '%{http_code}', '-H', 'Expect:', '--data-binary', 'x'.repeat(4096), 'https://api.alpha.test/v2/upload'], (_e, out, err) => resolve({ status: Number(out), err }))
      )
      expect(posted.status).toBe(0) // a streamed request is closed, not answered (see the addon)
      expect(upstream.received).toHaveLength(before)
    } finally {
      await m.stop()
      await service.close()
    }
  }, 60_000)
})
