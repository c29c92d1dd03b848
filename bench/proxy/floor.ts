// The floor: the least a Node MITM hop costs here, kept as the reference the node engine is
// measured against. No policy, no pinning, no audit: CONNECT answered, TLS terminated with one
// certificate for every host, each request sent to the stand-in over an undici pool with one
// header injected, the answer streamed back. Not a proxy anyone should run.
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import { createSecureContext, rootCertificates, TLSSocket } from 'node:tls'

import { Pool } from 'undici'

/** Starts the floor proxy; resolves with its port. */
export const startFloor = async (options: { readonly key: string; readonly cert: string; readonly upstreamPort: number; readonly upstreamCa: string; readonly servername: string; readonly secret: string }): Promise<{ readonly port: number; readonly close: () => void }> => {
  const serverContext = createSecureContext({ key: options.key, cert: options.cert })
  const pool = new Pool(`https://127.0.0.1:${options.upstreamPort}`, { connect: { servername: options.servername, secureContext: createSecureContext({ ca: [...rootCertificates, options.upstreamCa] }) }, keepAliveTimeout: 30_000 })
  const inner = http.createServer((request, response) => {
    const headers = { ...request.headers, authorization: `Bearer ${options.secret}` }
    delete headers.connection
    pool.dispatch(
      { path: request.url ?? '/', method: (request.method ?? 'GET') as 'GET', headers: headers as unknown as Record<string, string>, body: request.headers['content-length'] === undefined ? null : request },
      {
        onConnect: () => undefined,
        onHeaders: (status, raw, resume) => {
          const out: Array<string> = []
          for (let i = 0; i < raw.length; i += 2) {
            const name = String(raw[i]).toLowerCase()
            if (name !== 'connection' && name !== 'keep-alive' && name !== 'transfer-encoding') out.push(name, String(raw[i + 1]))
          }
          response.writeHead(status, out)
          response.on('drain', resume)
          return true
        },
        onData: (chunk) => response.write(chunk),
        onComplete: () => response.end(),
        onError: () => response.destroy()
      }
    )
  })
  const outer = http.createServer()
  outer.on('connect', (_request: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.write('HTTP/1.1 200 Connection Established\r\n\r\n')
    if (head.length > 0) socket.unshift(head)
    const tls = new TLSSocket(socket as never, { isServer: true, secureContext: serverContext })
    tls.on('error', () => tls.destroy())
    inner.emit('connection', tls)
  })
  await new Promise<void>((resolve) => outer.listen(0, '127.0.0.1', resolve))
  return { port: (outer.address() as AddressInfo).port, close: () => outer.close() }
}
