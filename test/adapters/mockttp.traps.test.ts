// Traps of mockttp 4.6.5 that only it has; the ones every library shares are in proxy.traps.test.ts.
import { connect, createServer, type AddressInfo, type Socket } from 'node:net'
import { networkInterfaces } from 'node:os'
import { join } from 'node:path'

import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { falseLoopMatches } from '../../adapters/mockttp/loopCheck.js'
import { startMockttpProxy } from '../../adapters/mockttp/mockttpProxy.js'
import { curl } from './support/clients.js'
import { policyText, startHarness, type Harness } from './support/harness.js'

/** A non-loopback IPv4 address of this machine, if it has one. */
const outsideAddress = Object.values(networkInterfaces())
  .flat()
  .find((i) => i !== undefined && i.family === 'IPv4' && !i.internal)?.address

const reachable = (host: string, port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = connect(port, host, () => {
      socket.destroy()
      resolve(true)
    })
    socket.on('error', () => resolve(false))
    setTimeout(() => {
      socket.destroy()
      resolve(false)
    }, 2_000).unref()
  })

describe('mockttp traps', () => {
  let deny: Harness
  beforeAll(async () => {
    // A route for an IP literal: clients send no SNI for it, and mockttp issues certificates by SNI.
    const policy = policyText('connected_deny').replace('providers:\n', 'providers:\n  - name: literal\n    apiUrl: https://198.51.100.7/\n')
    deny = await startHarness({ mode: 'connected_deny', adapter: 'mockttp', policy })
  })
  afterAll(async () => {
    await deny.close()
  })

  it('listens on loopback only, although mockttp itself listens on every interface', async (context) => {
    expect(await reachable('127.0.0.1', deny.proxy.port)).toBe(true)
    if (outsideAddress === undefined) return context.skip()
    expect(await reachable(outsideAddress, deny.proxy.port)).toBe(false)
  })

  it('keeps nothing of the traffic: mockttp records every request by default, and that memory would grow without bound', async () => {
    const proxy = await startMockttpProxy({ guard: deny.guard, configDir: join(deny.dir, 'config-recording'), upstreamCa: [deny.pki.caPem], connectTo: [{ host: 'api.alpha.test', port: 443, toHost: '127.0.0.1', toPort: deny.upstreams.alpha.port }], log: () => undefined })
    try {
      const before = deny.upstreams.alpha.received.length
      for (let i = 0; i < 5; i++) expect((await curl(proxy.url, proxy.caCertPath, 'https://api.alpha.test/v1/models')).status).toBe(200)
      expect(deny.upstreams.alpha.received).toHaveLength(before + 5)
      expect(await proxy.recordedRequests()).toBe(0)
    } finally {
      await proxy.close()
    }
  })

  it('fails closed on an intercepted IP literal: the TLS handshake fails, nothing is sent, the proxy keeps serving', async () => {
    const before = deny.upstreams.alpha.received.length + deny.upstreams.other.received.length
    const answer = await curl(deny.proxy.url, deny.proxyCaPath, 'https://198.51.100.7/v1/models')
    expect(answer.status).toBe(0)
    expect(deny.upstreams.alpha.received.length + deny.upstreams.other.received.length).toBe(before)
    expect((await curl(deny.proxy.url, deny.proxyCaPath, 'https://api.alpha.test/v1/models')).status).toBe(200)
  })
})

describe('mockttp’s passthrough loop check', () => {
  // mockttp takes a client for its own upstream connection when the client's address and port equal
  // that connection's local ones. On one machine a port can serve two connections with other peers.
  it('spares an upstream socket that only shares the client’s address and port', () => {
    const client = { remoteAddress: '::ffff:127.0.0.1', remotePort: 40_000, localAddress: '::ffff:127.0.0.1', localPort: 8080 }
    const upstream = { localAddress: '127.0.0.1', localPort: 40_000, remoteAddress: '127.0.0.1', remotePort: 443 }
    expect(falseLoopMatches([upstream], client)).toEqual([upstream])
  })

  it('keeps a real loop, where the upstream socket is the client’s other end', async () => {
    const server = createServer()
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve))
    const outgoing = connect((server.address() as AddressInfo).port, '127.0.0.1')
    await new Promise((resolve) => outgoing.once('connect', resolve))
    const incoming = await accepted
    try {
      expect(falseLoopMatches([outgoing], incoming)).toEqual([])
      // And an unrelated connection is not matched at all.
      expect(falseLoopMatches([outgoing], { remoteAddress: '127.0.0.1', remotePort: 1, localAddress: '127.0.0.1', localPort: 2 })).toEqual([])
    } finally {
      outgoing.destroy()
      incoming.destroy()
      await new Promise((resolve) => server.close(resolve))
    }
  })
})
