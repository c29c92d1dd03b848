// An upstream that reflects what it was sent, the way echo endpoints, error bodies and streams do:
// the request's credentials come back in headers, JSON, compressed bodies, chunks split mid-value,
// server-sent events, base64 and URL-encoded text, and WebSocket frames. The scrubbing tests check
// that none of it reaches the client.
import { constants as zlibConstants, brotliCompressSync, deflateSync, gzipSync } from 'node:zlib'
import https from 'node:https'
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

import { WebSocketServer } from 'ws'

/** One request as the echo upstream saw it. */
export interface Echoed {
  readonly method: string
  readonly path: string
  readonly headers: IncomingHttpHeaders
  readonly body: string
}

export interface EchoUpstream {
  readonly port: number
  readonly received: Array<Echoed>
  readonly close: () => Promise<void>
}

/** The credential an echo reflects: the `Authorization` token, else `x-api-key`. */
const secretOf = (headers: IncomingHttpHeaders): string => (headers.authorization ?? '').replace(/^Bearer\s+/i, '') || String(headers['x-api-key'] ?? '')

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

const answer = async (request: IncomingMessage, response: ServerResponse, body: string): Promise<void> => {
  const secret = secretOf(request.headers)
  const path = (request.url ?? '/').split('?')[0] ?? '/'
  const json = JSON.stringify({ headers: request.headers, path: request.url, body })
  const reflected = { 'x-echo-authorization': request.headers.authorization ?? '', 'x-echo-secret': secret }
  switch (path) {
    case '/echo/gzip':
    case '/echo/deflate':
    case '/echo/br': {
      const coding = path.slice('/echo/'.length)
      const encoded = coding === 'gzip' ? gzipSync(json) : coding === 'deflate' ? deflateSync(json) : brotliCompressSync(json, { params: { [zlibConstants.BROTLI_PARAM_QUALITY]: 4 } })
      response.writeHead(200, { ...reflected, 'content-type': 'application/json', 'content-encoding': coding, 'content-length': String(encoded.length) })
      response.end(encoded)
      return
    }
    case '/echo/te-gzip': {
      // A transfer coding the HTTP layer does not undo: the body is gzip inside the chunks.
      response.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'gzip, chunked' })
      response.end(gzipSync(json))
      return
    }
    case '/echo/status':
      response.writeHead(200, `OK ${secret}`, { 'content-type': 'text/plain' })
      response.end('status')
      return
    case '/echo/trailer':
      response.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-t' })
      response.write('trailer')
      response.addTrailers({ 'x-t': secret })
      response.end()
      return
    case '/echo/early':
      response.writeEarlyHints({ link: `</${secret}>; rel=preload` })
      response.writeHead(200, { 'content-type': 'text/plain' })
      response.end('early')
      return
    case '/echo/interactive':
      // Answers once the first bytes of the body are in, without waiting for its end.
      request.once('data', (chunk: Buffer) => response.end(`got ${chunk.toString()}`))
      return
    case '/echo/zstd':
      response.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'zstd' })
      response.end(Buffer.from(json))
      return
    case '/echo/split': {
      // The secret cut in two, each half in its own chunk, some time apart.
      const half = Math.floor(secret.length / 2)
      response.writeHead(200, { 'content-type': 'text/plain' })
      response.write(`before ${secret.slice(0, half)}`)
      await pause(30)
      response.end(`${secret.slice(half)} after`)
      return
    }
    case '/echo/sse': {
      const half = Math.floor(secret.length / 2)
      response.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
      response.write(`data: {"key": "${secret.slice(0, half)}`)
      await pause(30)
      response.write(`${secret.slice(half)}"}\n\n`)
      await pause(30)
      response.end('data: [DONE]\n\n')
      return
    }
    case '/echo/encoded': {
      const base64 = Buffer.from(secret).toString('base64')
      const inBasic = Buffer.from(`user:${secret}`).toString('base64')
      const url = [...Buffer.from(secret)].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('')
      response.writeHead(200, { 'content-type': 'text/plain' })
      response.end(`b64=${base64}\nbasic=${inBasic}\nurl=${url}\ncomponent=${encodeURIComponent(secret)}\n`)
      return
    }
    default:
      response.writeHead(200, { ...reflected, 'content-type': 'application/json' })
      response.end(json)
  }
}

/** Starts the echo upstream on 127.0.0.1 with the given TLS key and certificate. */
export const startEchoUpstream = async (tls: { readonly key: string; readonly cert: string }): Promise<EchoUpstream> => {
  const received: Array<Echoed> = []
  const server = https.createServer(tls, (request, response) => {
    if (request.url === '/echo/interactive') {
      received.push({ method: request.method ?? '', path: request.url, headers: request.headers, body: '' })
      answer(request, response, '').catch(() => response.destroy())
      return
    }
    const chunks: Array<Buffer> = []
    request.on('data', (chunk: Buffer) => chunks.push(chunk))
    request.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8')
      received.push({ method: request.method ?? '', path: request.url ?? '', headers: request.headers, body })
      answer(request, response, body).catch(() => response.destroy())
    })
  })
  // WebSocket: the credential comes back in a whole text frame, then split across two fragments.
  const wss = new WebSocketServer({ noServer: true })
  server.on('upgrade', (request, socket, head) => {
    received.push({ method: 'GET', path: request.url ?? '', headers: request.headers, body: '' })
    wss.handleUpgrade(request, socket, head, (ws) => {
      const secret = secretOf(request.headers)
      const half = Math.floor(secret.length / 2)
      ws.send(`whole ${secret}`)
      ws.send(`split ${secret.slice(0, half)}`, { fin: false })
      ws.send(`${secret.slice(half)} end`, { fin: true })
      ws.send(Buffer.from(`binary ${secret}`), { binary: true })
      ws.ping(`ping ${secret}`)
      ws.on('message', (data) => (data.toString() === 'close-me' ? ws.close(1000, `bye ${secret}`) : ws.send(`echo ${data.toString()}`)))
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as AddressInfo).port,
    received,
    close: async () => {
      for (const client of wss.clients) client.terminate()
      wss.close()
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}
