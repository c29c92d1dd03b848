// Traps of http-mitm-proxy 1.1.0 that only it has; the ones every library shares are in proxy.traps.test.ts.
import http from 'node:http'
import { connect as tlsConnect, type PeerCertificate } from 'node:tls'

import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { startHarness, type Harness } from './support/harness.js'

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
