import { STATUS_CODES, type Server } from 'node:http'
import type { Duplex } from 'node:stream'

import { PLAIN_TEXT } from '../upstream/tunnel.js'

/** A response an answer can be written to: HTTP/1 or HTTP/2 (Node's compatibility API). */
export interface AnswerableResponse {
  readonly headersSent: boolean
  readonly writableEnded: boolean
  writeHead(status: number, headers: Record<string, string>): unknown
  end(body: string): unknown
  destroy(): unknown
}

/** Writes an answer egress-guard gives itself (status, headers, plain-text body); a response already under way is cut instead. */
export const writeAnswer = (response: AnswerableResponse, answer: { readonly status: number; readonly headers?: Readonly<Record<string, string>>; readonly body: string }): void => {
  // An answer after a response began cuts it; after one ended, there is nothing to answer.
  if (response.headersSent) {
    if (!response.writableEnded) response.destroy()
    return
  }
  response.writeHead(answer.status, { 'content-type': PLAIN_TEXT, ...answer.headers, 'content-length': String(Buffer.byteLength(answer.body)) })
  response.end(answer.body)
}

/** A whole HTTP/1.1 answer as raw bytes, with its standard status text, that closes the connection (plain text unless `headers` name a content type). */
export const rawAnswer = (status: number, body: string, headers: Readonly<Record<string, string>> = {}): string =>
  `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}\r\n${Object.entries(headers)
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('')}${Object.keys(headers).some((name) => name.toLowerCase() === 'content-type') ? '' : `Content-Type: ${PLAIN_TEXT}\r\n`}Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`

const CLIENT_ERRORS: Readonly<Record<string, readonly [number, string]>> = {
  HPE_HEADER_OVERFLOW: [431, 'Request header fields too large: egress-guard accepts at most 16 KiB of headers'],
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'Request timeout: the request did not arrive in time'],
  ERR_HTTP_HEADERS_TIMEOUT: [408, 'Request timeout: the request did not arrive in time']
}

/**
 * Makes a server answer a request it cannot parse (431 for headers over Node's limit, 408 when they
 * are too slow, else 400) and close, instead of whatever its other `clientError` listeners do:
 * http-mitm-proxy's only log (with the client's raw bytes) and leave the client hanging.
 */
export const answerClientErrors = (server: Server): void => {
  server.removeAllListeners('clientError')
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => {
    socket.on('error', () => socket.destroy())
    const [status, body] = CLIENT_ERRORS[error.code ?? ''] ?? [400, 'Bad request: egress-guard could not parse this request']
    const inResponse = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage?.headersSent === true
    if (!socket.writable || inResponse) {
      socket.destroy()
      return
    }
    socket.end(rawAnswer(status, body))
    setTimeout(() => socket.destroy(), 1_000).unref()
  })
}

/** The HTTP versions an intercepting server offers in ALPN: HTTP/1.1, and HTTP/1.0 for clients that offer only that (`curl --http1.0`). */
const HTTP1_ALPN: ReadonlyArray<string> = ['http/1.1', 'http/1.0']

/** Picks the HTTP/1 protocol a client offers in ALPN, preferring 1.1; undefined (refused) when it offers neither, as an h2-only client. */
export const http1Alpn = (offered: ReadonlyArray<string>): string | undefined => HTTP1_ALPN.find((p) => offered.includes(p))

/** Makes an HTTPS server (one the proxy library made) offer HTTP/1.0 in ALPN as well as HTTP/1.1. */
export const offerHttp10 = (server: Server): void => {
  ;(server as Server & { ALPNProtocols?: Buffer }).ALPNProtocols = Buffer.concat(HTTP1_ALPN.map((p) => Buffer.concat([Buffer.from([p.length]), Buffer.from(p)])))
}
