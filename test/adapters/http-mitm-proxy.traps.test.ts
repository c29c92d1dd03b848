// Traps of http-mitm-proxy 1.1.0 that only it has; the ones every library shares are in proxy.traps.test.ts.
import http from 'node:http'
import { connect as tlsConnect, type PeerCertificate } from 'node:tls'

import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { curl } from './support/clients.js'
import { SECRETS, startHarness, type Harness } from './support/harness.js'
import { openTunnel } from './support/rawTunnel.js'

const DAY = 24 * 60 * 60 * 1000

describe('http-mitm-proxy traps', () => {
  let allow: Harness
  beforeAll(async () => {
    allow = await startHarness({ mode: 'connected_allow', adapter: 'http-mitm-proxy' })
  })
  afterAll(async () => {
    await allow.close()
  })

  it('issues leaf certificates from its own CA with EC keys, not the library’s synchronous RSA', async () => {
    const certificate = await new Promise<PeerCertificate>((resolve, reject) => {
      const request = http.request({ host: '127.0.0.1', port: allow.proxy.port, method: 'CONNECT', path: 'api.alpha.test:443' })
      request.on('connect', (_response, socket) => {
        const tls = tlsConnect({ socket, servername: 'api.alpha.test', ca: allow.proxy.caCertPem }, () => {
          resolve(tls.getPeerCertificate())
          tls.destroy()
        })
        tls.on('error', reject)
      })
      request.on('error', reject)
      request.end()
    })
    expect(certificate.subjectaltname).toBe('DNS:api.alpha.test')
    expect(certificate.issuer.CN).toBe('egress-guard local CA')
    expect((certificate as PeerCertificate & { asn1Curve?: string }).asn1Curve).toBe('prime256v1')
  })
})

// The library makes one listening TLS server per intercepted host and keeps it for the life of the
// process, with the leaf certificate it was made with: the adapter bounds and renews them (the
// table's rules are tested in http-mitm-proxy/hostServers.test.ts; here, with the library itself).
describe('http-mitm-proxy per-host TLS servers', () => {
  // The proxy's clock starts 40 days back, so that leaves issued 31 days later still verify today.
  let clock = Date.now() - 40 * DAY
  let h: Harness
  // Listening servers in this process before any host was intercepted.
  let baseline = 0
  beforeAll(async () => {
    h = await startHarness({ mode: 'connected_allow', adapter: 'http-mitm-proxy', proxy: { maxInterceptedHosts: 2, now: () => clock } })
    baseline = listening()
  })
  afterAll(async () => {
    await h.close()
  })

  function listening(): number {
    return process.getActiveResourcesInfo().filter((resource) => resource === 'TCPServerWrap').length
  }
  // A retired server stops listening 5 s after it leaves the table.
  const settled = async (expected: number) => {
    for (let i = 0; i < 120 && listening() !== expected; i++) await new Promise((resolve) => setTimeout(resolve, 100))
    return listening()
  }
  const leafSerial = async (host: string) => {
    const tls = await openTunnel(h.proxy.port, h.proxy.caCertPem, host)
    if (tls === undefined) throw new Error(`no intercepted TLS for ${host}`)
    const serial = tls.getPeerCertificate().serialNumber
    tls.end()
    return serial
  }

  it('keeps at most maxInterceptedHosts; a host whose server was closed is served again', async () => {
    const alpha = await leafSerial('api.alpha.test')
    expect(await leafSerial('api.alpha.test')).toBe(alpha)
    await leafSerial('api.beta.test')
    await leafSerial('x.beta.test') // a third host: one of the others is retired
    expect(await settled(baseline + 2)).toBe(baseline + 2)
    const answer = await curl(h.proxy.url, h.proxyCaPath, 'https://api.alpha.test/v1/models')
    expect(answer.status).toBe(200)
    expect(h.upstreams.alpha.received.at(-1)?.headers.authorization).toBe(`Bearer ${SECRETS.alpha}`)
    expect(await settled(baseline + 2)).toBe(baseline + 2)
  }, 30_000)

  it('closes the extra servers the library makes for one new host reached by several CONNECTs at once', async () => {
    const tunnels = await Promise.all(Array.from({ length: 8 }, () => openTunnel(h.proxy.port, h.proxy.caCertPem, 'api.failing.test')))
    expect(tunnels.every((tls) => tls !== undefined)).toBe(true)
    for (const tls of tunnels) tls?.destroy()
    expect(await settled(baseline + 2)).toBe(baseline + 2)
  }, 30_000)

  it('makes a host a new server with a new leaf once its server is 30 days old', async () => {
    const first = await leafSerial('api.alpha.test')
    clock += 29 * DAY
    expect(await leafSerial('api.alpha.test')).toBe(first)
    clock += 2 * DAY
    expect(await leafSerial('api.alpha.test')).not.toBe(first)
    const answer = await curl(h.proxy.url, h.proxyCaPath, 'https://api.alpha.test/v1/models')
    expect(answer.status).toBe(200)
    expect(h.upstreams.alpha.received.at(-1)?.headers.authorization).toBe(`Bearer ${SECRETS.alpha}`)
  })
})
