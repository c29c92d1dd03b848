// Real mitmdump (Debian's mitmproxy) running the shipped addon adapters/mitmproxy/egress_guard.py
// against the decision service, in front of a local HTTPS upstream, driven by curl.
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs'
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

const ADDON = fileURLToPath(new URL('../../../adapters/mitmproxy/egress_guard.py', import.meta.url))

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
  readonly stop: () => Promise<void>
}

// mitmdump with the addon; a dead http_proxy in its environment must not affect its service calls.
const startMitmdump = async (serviceUrl: string, upstream: Upstream, caPem: string, extra: ReadonlyArray<string> = []): Promise<Mitmdump> => {
  const dir = mkdtempSync(join(tmpdir(), 'eg-mitmdump-'))
  writeFileSync(join(dir, 'upstream-ca.pem'), caPem)
  const port = await freePort()
  const ca = join(dir, 'mitmproxy-ca-cert.pem')
  const rules = ['api.alpha.test', 'other.test'].map((h) => `${h}:443:127.0.0.1:${upstream.port}`).join(',')
  const child: ChildProcess = spawn(
    'mitmdump',
    ['--quiet', '--listen-host', '127.0.0.1', '--listen-port', String(port), '--set', `confdir=${dir}`, '--set', 'connection_strategy=lazy',
      '--set', `ssl_verify_upstream_trusted_ca=${join(dir, 'upstream-ca.pem')}`, '-s', ADDON,
      '--set', `egress_guard_url=${serviceUrl}`, '--set', `egress_guard_token=${TOKEN}`, '--set', `egress_guard_connect_to=${rules}`, ...extra],
    { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, http_proxy: 'http://127.0.0.1:9', HTTP_PROXY: 'http://127.0.0.1:9', no_proxy: '', NO_PROXY: '' } }
  )
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()))
  const stop = async () => {
    child.kill('SIGTERM')
    await new Promise((resolve) => child.once('exit', resolve))
  }
  for (let i = 0; i < 200; i++) {
    const listening = await isListening(port)
    if (listening && existsSync(ca)) return { proxy: `http://127.0.0.1:${port}`, ca, stop }
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
    upstream = await startUpstream('alpha', pki.leaf(['api.alpha.test', 'other.test']))
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

  it(mode.endsWith('deny') ? 'refuses the CONNECT to a host without routes' : 'lets a host without routes through, without credentials', async () => {
    const before = upstream.received.length
    const answer = await curl(proxy, ca, 'https://other.test/')
    if (mode.endsWith('deny')) {
      expect(answer.status).toBe(0)
      expect(upstream.received).toHaveLength(before)
    } else {
      expect(answer.status).toBe(200)
      expect(upstream.received.at(-1)?.headers.authorization).toBeUndefined()
    }
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
    upstream = await startUpstream('alpha', pki.leaf(['api.alpha.test', 'other.test']))
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
