// Real mitmdump (Debian's mitmproxy) running the shipped addon adapters/mitmproxy/egress_guard.py
// against the decision service, in front of a local HTTPS upstream, driven by curl.
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import type { ProxyMode } from '../../../core/index.js'
import type { RunningDecisionService } from '../../../adapters/decision-service/decisionService.js'
import { createPki } from '../support/pki.js'
import { startUpstream, type Upstream } from '../support/upstream.js'
import { KEY, startService, TOKEN } from './support.js'

const ADDON = fileURLToPath(new URL('../../../adapters/mitmproxy/egress_guard.py', import.meta.url))

const freePort = (): Promise<number> =>
  new Promise((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })

const curl = (proxy: string, ca: string, url: string, headers: ReadonlyArray<string> = []): Promise<{ status: number; body: string }> =>
  new Promise((resolve) => {
    execFile('curl', ['-sS', '--max-time', '15', '--proxy', proxy, '--cacert', ca, '-o', '-', '-w', '\n%{http_code}', ...headers.flatMap((h) => ['-H', h]), url], (error, stdout) => {
      const cut = stdout.lastIndexOf('\n')
      resolve({ status: error === null ? Number(stdout.slice(cut + 1)) : 0, body: stdout.slice(0, Math.max(cut, 0)) })
    })
  })

describe.each<ProxyMode>(['connected_deny', 'connected_allow'])('mitmdump with the shipped addon, %s', (mode) => {
  let mitmdump: ChildProcess
  let service: RunningDecisionService
  let upstream: Upstream
  let proxy = ''
  let ca = ''
  beforeAll(async () => {
    const pki = createPki()
    upstream = await startUpstream('alpha', pki.leaf(['api.alpha.test', 'other.test']))
    ;({ service } = await startService(mode, TOKEN))
    const dir = mkdtempSync(join(tmpdir(), 'eg-mitmdump-'))
    writeFileSync(join(dir, 'upstream-ca.pem'), pki.caPem)
    const port = await freePort()
    proxy = `http://127.0.0.1:${port}`
    ca = join(dir, 'mitmproxy-ca-cert.pem')
    const rules = ['api.alpha.test', 'other.test'].map((h) => `${h}:443:127.0.0.1:${upstream.port}`).join(',')
    mitmdump = spawn(
      'mitmdump',
      ['--quiet', '--listen-host', '127.0.0.1', '--listen-port', String(port), '--set', `confdir=${dir}`, '--set', 'connection_strategy=lazy',
        '--set', `ssl_verify_upstream_trusted_ca=${join(dir, 'upstream-ca.pem')}`, '-s', ADDON,
        '--set', `egress_guard_url=${service.url}`, '--set', `egress_guard_token=${TOKEN}`, '--set', `egress_guard_connect_to=${rules}`],
      { stdio: ['ignore', 'ignore', 'pipe'] }
    )
    let stderr = ''
    mitmdump.stderr?.on('data', (d: Buffer) => (stderr += d.toString()))
    for (let i = 0; i < 200; i++) {
      const listening = await new Promise<boolean>((resolve) => {
        const socket = net.connect(port, '127.0.0.1', () => resolve(socket.end() !== undefined)).on('error', () => resolve(false))
      })
      if (listening && existsSync(ca)) return
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    throw new Error(`mitmdump did not start: ${stderr}`)
  }, 60_000)
  afterAll(async () => {
    mitmdump.kill('SIGTERM')
    await new Promise((resolve) => mitmdump.once('exit', resolve))
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
