// Stand-in upstreams on 127.0.0.1: HTTPS (and plain HTTP) servers that record every request and
// WebSocket upgrade they receive, so tests can check what really left the proxy.
import http from 'node:http'
import https from 'node:https'
import type { AddressInfo } from 'node:net'

import { WebSocketServer } from 'ws'

/** One request as the upstream saw it. */
export interface Received {
  readonly method: string
  readonly path: string
  readonly headers: http.IncomingHttpHeaders
  /** Raw header names, to count duplicates. */
  readonly rawNames: ReadonlyArray<string>
  readonly websocket: boolean
  /** Request body bytes received (counted as they arrive). */
  bodyBytes: number
}

export interface Upstream {
  readonly name: string
  readonly port: number
  readonly received: Array<Received>
  /** TCP connections accepted so far (before any TLS or HTTP). */
  readonly connections: () => number
  readonly close: () => Promise<void>
}

const record = (into: Array<Received>, request: http.IncomingMessage, websocket: boolean): void => {
  into.push({
    method: request.method ?? '',
    path: request.url ?? '',
    headers: request.headers,
    rawNames: request.rawHeaders.filter((_, i) => i % 2 === 0).map((h) => h.toLowerCase()),
    websocket,
    bodyBytes: 0
  })
}

/** Starts an upstream; with `tls` it serves HTTPS with that key and certificate. */
export const startUpstream = async (name: string, tls?: { readonly key: string; readonly cert: string }, options: { readonly keepAliveTimeoutMs?: number } = {}): Promise<Upstream> => {
  const received: Array<Received> = []
  const handler = (request: http.IncomingMessage, response: http.ServerResponse) => {
    record(received, request, false)
    const seen = received.at(-1)
    request.on('data', (chunk: Buffer) => {
      if (seen !== undefined) seen.bodyBytes += chunk.length
    })
    request.on('end', () => {
      // `…/slow/<ms>` answers after that many milliseconds.
      const slow = /\/slow\/([0-9]+)/.exec(request.url ?? '')?.[1]
      if (slow !== undefined && !(request as { slowed?: boolean }).slowed) {
        ;(request as { slowed?: boolean }).slowed = true
        setTimeout(() => request.emit('end'), Number(slow))
        return
      }
      // `…/redirect?to=<url>` answers a 302 to that URL.
      const to = /\/redirect\?to=([^&]+)$/.exec(request.url ?? '')?.[1]
      if (to !== undefined) {
        response.writeHead(302, { location: decodeURIComponent(to), 'content-length': '0' })
        response.end()
        return
      }
      response.writeHead(200, { 'content-type': 'application/json' })
      response.end(JSON.stringify({ upstream: name, path: request.url }))
    })
  }
  const server = tls === undefined ? http.createServer(handler) : https.createServer(tls, handler)
  if (options.keepAliveTimeoutMs !== undefined) server.keepAliveTimeout = options.keepAliveTimeoutMs
  const wss = new WebSocketServer({ server })
  wss.on('connection', (socket, request) => {
    record(received, request, true)
    socket.on('message', (data) => socket.send(`${name}:${data.toString()}`))
  })
  let connections = 0
  server.on('connection', () => connections++)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    name,
    port: (server.address() as AddressInfo).port,
    received,
    connections: () => connections,
    close: async () => {
      for (const client of wss.clients) client.terminate()
      wss.close()
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}
