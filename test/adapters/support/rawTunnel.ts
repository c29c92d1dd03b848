// Raw bytes through a CONNECT tunnel, for requests no well-behaved client would send.
import http from 'node:http'
import type { Duplex } from 'node:stream'
import { connect as tlsConnect, type TLSSocket } from 'node:tls'

/** Opens `CONNECT host:443` and TLS inside it (trusting `caPem`); undefined when either is refused. */
export const openTunnel = (proxyPort: number, caPem: string, host: string, alpn?: ReadonlyArray<string>): Promise<TLSSocket | undefined> =>
  new Promise((resolve) => {
    const request = http.request({ host: '127.0.0.1', port: proxyPort, method: 'CONNECT', path: `${host}:443` })
    request.on('error', () => resolve(undefined))
    request.on('connect', (response, socket: Duplex) => {
      if (response.statusCode !== 200) return resolve(undefined)
      const tls = tlsConnect({ socket: socket as never, servername: host, ca: caPem, ...(alpn === undefined ? {} : { ALPNProtocols: [...alpn] }) }, () => resolve(tls))
      tls.on('error', () => resolve(undefined))
    })
    request.end()
  })

/** Writes each chunk in turn, collecting what comes back for `waitMs` after each; resolves with all of it. */
export const exchange = (socket: Duplex, chunks: ReadonlyArray<string>, waitMs = 700): Promise<string> =>
  new Promise((resolve) => {
    let received = ''
    socket.on('data', (d: Buffer) => (received += d.toString('latin1')))
    socket.on('error', () => undefined)
    const next = (i: number) => {
      if (i >= chunks.length || socket.destroyed) {
        socket.destroy()
        return resolve(received)
      }
      socket.write(chunks[i] ?? '')
      setTimeout(() => next(i + 1), waitMs)
    }
    next(0)
  })
