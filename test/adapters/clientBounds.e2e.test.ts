// Client connections are bounded on every engine: a CONNECT closed before its first byte, one
// that sends no ClientHello, and tunnels or connections left idle are closed; a request waiting
// long for its response is never cut; a header block over Node's limit inside a tunnel gets 431.
// (http-mitm-proxy kept the first kind in CLOSE-WAIT for good and left the last one hanging.)
import http from 'node:http'
import { connect, type Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { connect as tlsConnect } from 'node:tls'

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'

import { curl } from './support/clients.js'
import { ADAPTERS, startHarness, type Harness } from './support/harness.js'
import { exchange, openTunnel } from './support/rawTunnel.js'

const BOUNDS = { helloMs: 300, idleMs: 600, tunnelIdleMs: 600 }

/** Resolves when the socket closes; rejects if it is still open after `limitMs` (a liveness bound, not a timing claim). */
const closed = (socket: Duplex, limitMs = 10_000): Promise<void> =>
  new Promise((resolve, reject) => {
    if (socket.destroyed) return resolve()
    const timer = setTimeout(() => reject(new Error('the proxy never closed the connection')), limitMs)
    socket.on('error', () => undefined)
    socket.once('close', () => {
      clearTimeout(timer)
      resolve()
    })
    socket.resume()
  })

/** Opens `CONNECT host:443` on a raw socket and resolves once the 200 has been read. */
const rawConnect = (port: number, host: string): Promise<Socket> =>
  new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(`CONNECT ${host}:443 HTTP/1.1\r\nHost: ${host}:443\r\n\r\n`))
    let head = ''
    const onData = (d: Buffer) => {
      head += d.toString('latin1')
      if (!head.includes('\r\n\r\n')) return
      socket.off('data', onData)
      if (/^HTTP\/1\.1 200/.test(head)) resolve(socket)
      else reject(new Error(head))
    }
    socket.on('data', onData)
    socket.on('error', reject)
  })

describe.each(ADAPTERS)('client bounds on %s', (adapter) => {
  let h: Harness
  beforeAll(async () => {
    h = await startHarness({ mode: 'connected_deny', adapter, proxy: { clientBounds: BOUNDS } })
  })
  afterAll(async () => {
    await h.close()
  })

  it('closes a CONNECT to an intercepted host whose client half-closes before its first byte', async () => {
    const sockets = await Promise.all([1, 2, 3].map(() => rawConnect(h.proxy.port, 'api.alpha.test')))
    for (const socket of sockets) socket.end()
    await Promise.all(sockets.map((socket) => closed(socket)))
  })

  it.each(['api.alpha.test', 'pypi.test'])('closes a CONNECT to %s that sends no ClientHello', async (host) => {
    const socket = await rawConnect(h.proxy.port, host)
    await closed(socket)
  })

  it.each(['api.alpha.test', 'pypi.test'])('closes a tunnel to %s idle after its TLS handshake', async (host) => {
    const socket = await rawConnect(h.proxy.port, host)
    const tls = await new Promise<Duplex>((resolve, reject) => {
      const t = tlsConnect({ socket, servername: host, ca: [h.proxy.caCertPem, h.pki.caPem] }, () => resolve(t))
      t.on('error', reject)
    })
    await closed(tls)
  })

  it('closes a client connection to the proxy port that stays idle', async () => {
    const socket = connect(h.proxy.port, '127.0.0.1')
    await closed(socket)
  })

  it('never cuts a request whose response takes longer than the idle bound', async () => {
    const answer = await curl(h.proxy.url, h.proxyCaPath, `https://api.alpha.test/v1/slow/${BOUNDS.idleMs * 3}`)
    expect(answer.status).toBe(200)
    expect(h.upstreams.alpha.received.at(-1)?.path).toBe(`/v1/slow/${BOUNDS.idleMs * 3}`)
  })

  it('never cuts a quiet WebSocket: it is in flight until it closes', async () => {
    const socket = await rawConnect(h.proxy.port, 'api.alpha.test')
    const echo = await new Promise<string>((resolve, reject) => {
      const ws = new WebSocket('wss://api.alpha.test/v1/realtime', { createConnection: () => tlsConnect({ socket, servername: 'api.alpha.test', ca: h.proxy.caCertPem }) })
      ws.on('open', () => setTimeout(() => ws.send('late'), BOUNDS.idleMs * 3))
      ws.on('message', (data) => {
        resolve(data.toString())
        ws.close(1000)
      })
      ws.on('close', (code) => reject(new Error(`closed with ${code} before the echo`)))
      ws.on('error', reject)
    })
    expect(echo).toBe('alpha:late')
  })

  it('answers more than 16 KiB of headers inside a tunnel with 431 and closes', async () => {
    const tls = await openTunnel(h.proxy.port, h.proxy.caCertPem, 'api.alpha.test')
    expect(tls).toBeDefined()
    if (tls === undefined) return
    const before = h.upstreams.alpha.received.length
    const reply = await exchange(tls, [`GET /v1/x HTTP/1.1\r\nHost: api.alpha.test\r\nX-Big: ${'a'.repeat(20_480)}\r\n\r\n`], 1_000)
    expect(reply).toMatch(/^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/)
    expect(h.upstreams.alpha.received).toHaveLength(before)
  })

  it('answers more than 16 KiB of headers on the proxy port with 431', async () => {
    const answer = await new Promise<number>((resolve) => {
      const request = http.request({ host: '127.0.0.1', port: h.proxy.port, path: 'http://api.alpha.test/v1/x', headers: { 'x-big': 'a'.repeat(20_480) } })
      request.on('response', (response) => resolve(response.statusCode ?? 0))
      request.on('error', () => resolve(0))
      request.end()
    })
    expect(answer).toBe(431)
  })
})
