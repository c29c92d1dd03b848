// Traps of mockttp 4.6.5 that only it has; the ones every library shares are in proxy.traps.test.ts.
import { connect } from 'node:net'
import { networkInterfaces } from 'node:os'

import { afterAll, beforeAll, describe, expect, it } from 'vitest'

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

  it('fails closed on an intercepted IP literal: the TLS handshake fails, nothing is sent, the proxy keeps serving', async () => {
    const before = deny.upstreams.alpha.received.length + deny.upstreams.other.received.length
    const answer = await curl(deny.proxy.url, deny.proxyCaPath, 'https://198.51.100.7/v1/models')
    expect(answer.status).toBe(0)
    expect(deny.upstreams.alpha.received.length + deny.upstreams.other.received.length).toBe(before)
    expect((await curl(deny.proxy.url, deny.proxyCaPath, 'https://api.alpha.test/v1/models')).status).toBe(200)
  })
})
