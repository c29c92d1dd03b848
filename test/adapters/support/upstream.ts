// Stand-in upstreams on 127.0.0.1: HTTPS (and plain HTTP) servers that record every request and
// WebSocket upgrade they receive, so tests can check what really left the proxy.
import http from 'node:http'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'

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
  /** Lets every held `…/stream` response send its last event and end. */
  readonly releaseStreams: () => void
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

const streamed = new WeakSet<Received>()

// Server-sent events in the shapes the SDKs parse: Anthropic's messages stream, else OpenAI's chunks.
const firstEvent = (url: string): string =>
  url.startsWith('/v1/messages')
    ? `event: message_start\ndata: ${JSON.stringify({ type: 'message_start', message: { id: 'msg_1', type: 'message', role: 'assistant', model: 'm', content: [], stop_reason: null, usage: { input_tokens: 1, output_tokens: 0 } } })}\n\n`
    : `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 0, model: 'm', choices: [{ index: 0, delta: { content: 'first' }, finish_reason: null }] })}\n\n`
const lastEvent = (url: string): string =>
  url.startsWith('/v1/messages') ? `event: message_stop\ndata: ${JSON.stringify({ type: 'message_stop' })}\n\n` : 'data: [DONE]\n\n'

/** Starts an upstream; with `tls` it serves HTTPS with that key and certificate. */
export const startUpstream = async (name: string, tls?: { readonly key: string; readonly cert: string }, options: { readonly keepAliveTimeoutMs?: number } = {}): Promise<Upstream> => {
  const received: Array<Received> = []
  const held: Array<() => void> = []
  const handler = (request: http.IncomingMessage, response: http.ServerResponse) => {
    record(received, request, false)
    const seen = received.at(-1)
    request.on('data', (chunk: Buffer) => {
      if (seen === undefined) return
      seen.bodyBytes += chunk.length
      if (/"stream"\s*:\s*true/.test(chunk.toString())) streamed.add(seen)
    })
    request.on('end', () => {
      // `…/stream` (or a body asking `"stream": true`) answers server-sent events: the first at once,
      // the last only once the test releases it, so a client that sees the first before the end
      // proves the proxy streams.
      if (/\/stream\b/.test(request.url ?? '') || (seen !== undefined && streamed.has(seen))) {
        response.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
        response.write(firstEvent(request.url ?? ''))
        held.push(() => response.end(lastEvent(request.url ?? '')))
        return
      }
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
  const wss = new WebSocketServer({ noServer: true })
  wss.on('connection', (socket, request) => {
    record(received, request, true)
    socket.on('message', (data) => socket.send(`${name}:${data.toString()}`))
  })
  // Any other upgrade is accepted, as an upstream that speaks it would (h2c smuggling needs one
  // that does): recorded, answered 101, and each request line then sent on the spliced connection
  // recorded as method SPLICED, so a test sees what rode past the proxy's judgement.
  server.on('upgrade', (request: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    if ((request.headers.upgrade ?? '').toLowerCase() === 'websocket') {
      wss.handleUpgrade(request, socket, head, (ws) => wss.emit('connection', ws, request))
      return
    }
    record(received, request, false)
    socket.on('error', () => socket.destroy())
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${request.headers.upgrade ?? ''}\r\n\r\n`)
    const spliced = (data: Buffer) => {
      for (const line of data.toString('latin1').split('\r\n').filter((l) => /^[A-Z]+ \S+ HTTP\/1\.[01]$/.test(l))) {
        received.push({ method: 'SPLICED', path: line, headers: {}, rawNames: [], websocket: false, bodyBytes: 0 })
      }
    }
    if (head.length > 0) spliced(head)
    socket.on('data', spliced)
  })
  let connections = 0
  server.on('connection', () => connections++)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    name,
    port: (server.address() as AddressInfo).port,
    received,
    connections: () => connections,
    releaseStreams: () => {
      for (const release of held.splice(0)) release()
    },
    close: async () => {
      for (const release of held.splice(0)) release()
      for (const client of wss.clients) client.terminate()
      wss.close()
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}
