// http-mitm-proxy finds a tunnel again by the source port and server port of its own loopback
// connection to the host's TLS server. A local process that connects to that server from another
// loopback address with the same source port must not be taken for the tunnel, nor for the
// client that opened it (found by an attacker's review).
import { execFileSync } from 'node:child_process'
import net from 'node:net'
import tls from 'node:tls'

import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { startHarness, type Harness } from '../support/harness.js'

const TOKEN = 'tok-ci-0123456789abcdef'
const POLICY = `
mode: connected_deny
providers:
  - { name: alpha, apiUrl: "https://api.alpha.test/v1" }
connections:
  - { provider: alpha, name: default, credentials: { headers: { Authorization: "Bearer \${env:EG_ALPHA_KEY}" } } }
clients:
  - { name: ci-job, token: "${TOKEN}", connections: [alpha/default] }
`

const firstLine = (socket: tls.TLSSocket): Promise<string> =>
  new Promise((resolve) => {
    let text = ''
    socket.on('data', (d: Buffer) => {
      text += d.toString()
      if (text.includes('\r\n')) resolve(text.split('\r\n')[0] ?? '')
    })
    socket.on('error', () => resolve('(closed)'))
    socket.on('close', () => resolve(text === '' ? '(closed)' : (text.split('\r\n')[0] ?? '')))
    socket.write('GET /v1/models HTTP/1.1\r\nHost: api.alpha.test\r\n\r\n')
  })

describe('http-mitm-proxy tunnels belong to the library’s own connection only', () => {
  let h: Harness
  beforeAll(async () => {
    h = await startHarness({ mode: 'connected_deny', adapter: 'http-mitm-proxy', policy: POLICY, guard: { clientTokens: new Map([['ci-job', TOKEN]]) } })
  })
  afterAll(async () => {
    await h.close()
  })

  it('refuses a connection to a host’s TLS server from another loopback address with the library’s source port', async () => {
    // A client opens an intercepted tunnel, authenticated as ci-job.
    const victim = net.connect(h.proxy.port, '127.0.0.1')
    await new Promise((resolve) => victim.once('connect', resolve))
    victim.write(`CONNECT api.alpha.test:443 HTTP/1.1\r\nHost: api.alpha.test:443\r\nProxy-Authorization: Basic ${Buffer.from(`ci-job:${TOKEN}`).toString('base64')}\r\n\r\n`)
    await new Promise((resolve) => victim.once('data', resolve))
    const inside = tls.connect({ socket: victim, servername: 'api.alpha.test', rejectUnauthorized: false })
    await new Promise((resolve) => inside.once('secureConnect', resolve))
    expect(await firstLine(inside)).toBe('HTTP/1.1 200 OK')

    // The library's connection from the proxy to its per-host server, as `ss` shows it to anyone on the machine.
    const listening = new Set(
      execFileSync('ss', ['-tlnpH']).toString().split('\n').filter((l) => l.includes(`pid=${process.pid},`)).map((l) => Number(l.trim().split(/\s+/)[3]?.split(':').pop()))
    )
    for (const known of [h.proxy.port, h.upstreams.alpha.port, h.upstreams.beta.port, h.upstreams.other.port, h.upstreams.plain.port]) listening.delete(known)
    const internal = execFileSync('ss', ['-tnH', 'state', 'established'])
      .toString()
      .split('\n')
      .map((l) => l.trim().split(/\s+/))
      .map(([, , local = '', peer = '']) => ({ local, sourcePort: Number(local.split(':').pop()), serverPort: Number(peer.split(':').pop()) }))
      .find((c) => c.local.startsWith('127.0.0.1:') && listening.has(c.serverPort))
    expect(internal).toBeDefined()

    const before = h.upstreams.alpha.received.length
    const records = (await h.auditEntries()).length
    const attacker = net.connect({ host: '127.0.0.1', port: internal?.serverPort ?? 0, localAddress: '127.0.0.2', localPort: internal?.sourcePort ?? 0 })
    attacker.on('error', () => undefined)
    const spoofed = tls.connect({ socket: attacker, servername: 'api.alpha.test', rejectUnauthorized: false })
    const answer = await new Promise<string>((resolve) => {
      spoofed.once('secureConnect', () => void firstLine(spoofed).then(resolve))
      spoofed.once('error', () => resolve('(closed)'))
      spoofed.once('close', () => resolve('(closed)'))
    })
    expect(answer).toBe('(closed)')
    expect(h.upstreams.alpha.received).toHaveLength(before)
    expect((await h.auditEntries()).slice(records).filter((e) => e.event === 'proxy_inject')).toEqual([])
    inside.destroy()
    spoofed.destroy()
  })
})
