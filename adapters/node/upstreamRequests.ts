import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http'
import type { Readable, Writable } from 'node:stream'
import { createSecureContext, rootCertificates, type SecureContext } from 'node:tls'

import { Pool } from 'undici'

import type { Logger } from '../ports.js'
import type { Forward } from '../proxy/pipeline.js'
import { hostForUrl } from '../upstream/connectTo.js'
import { upstreamErrorCode, upstreamFailureBody } from '../upstream/upstreamFailure.js'

// Requests to upstreams, over undici connection pools: one pool per dialled address, port and TLS
// server name (so two names on one address never share a connection verified for the other),
// HTTP/2 where the upstream offers it, HTTP/1.1 keep-alive otherwise. Bodies stream both ways
// with backpressure: the response is read from the upstream only as fast as the client takes it,
// and the request body only as fast as the upstream takes it.

/** A client's response, HTTP/1 or HTTP/2 (Node's compatibility API). */
export interface ClientResponse extends Writable {
  headersSent: boolean
  readonly writableFinished: boolean
  writeHead(status: number, headers: OutgoingHttpHeaders): unknown
  addTrailers(headers: OutgoingHttpHeaders): void
}

/** What forwards judged requests upstream. */
export interface UpstreamRequests {
  /** Sends `step` with `body` (null when the request has none) and streams the answer into `response`. */
  readonly forward: (step: Forward, tls: boolean, body: Readable | null, response: ClientResponse, http2Client: boolean) => void
  readonly close: () => Promise<void>
}

/** How long an idle upstream connection is kept for reuse, at most (undici also honours a shorter `Keep-Alive` hint). */
const UPSTREAM_IDLE_MS = 30_000
/** Pools kept at once; beyond this the least recently used is closed once its requests finish. */
const MAX_POOLS = 512
/** Methods sent again, once, when a reused connection was reset before any response byte (RFC 9110 §9.2.2). */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE'])
const RESET = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET'])

/** Response headers that belong to one hop (and that HTTP/2 forbids). */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'http2-settings', 'te', 'trailer'])

/** The upstream's response headers, less hop-by-hop ones and any its `Connection` names. */
export const responseHeaders = (headers: IncomingHttpHeaders | Record<string, string | string[] | undefined>): Record<string, string | string[]> => {
  const connection = headers['connection']
  const named = new Set((Array.isArray(connection) ? connection.join(',') : (connection ?? '')).split(',').map((t) => t.trim().toLowerCase()))
  const out: Record<string, string | string[]> = {}
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || named.has(name) || name.startsWith(':')) continue
    out[name] = value
  }
  return out
}

/** The TLS trust for upstreams: Node's roots plus `extraCa`, built once (never per connection). */
export const upstreamTrust = (extraCa: ReadonlyArray<string>): SecureContext | undefined =>
  extraCa.length === 0 ? undefined : createSecureContext({ ca: [...rootCertificates, ...extraCa] })

/** Starts the pools. */
export const upstreamRequests = (options: { readonly trust: SecureContext | undefined; readonly log: Logger }): UpstreamRequests => {
  const pools = new Map<string, Pool>()

  const poolFor = (step: Forward, tls: boolean): Pool => {
    const { upstream, servername } = step.where
    const key = `${tls ? 's' : 'p'} ${upstream.host} ${upstream.port} ${servername ?? ''}`
    const known = pools.get(key)
    if (known !== undefined) {
      pools.delete(key)
      pools.set(key, known)
      return known
    }
    const pool = new Pool(`${tls ? 'https' : 'http'}://${hostForUrl(upstream.host)}:${upstream.port}`, {
      keepAliveTimeout: UPSTREAM_IDLE_MS,
      keepAliveMaxTimeout: UPSTREAM_IDLE_MS,
      allowH2: tls,
      connect: {
        ...(servername === undefined ? {} : { servername }),
        ...(options.trust === undefined ? {} : { secureContext: options.trust })
      }
    })
    pools.set(key, pool)
    if (pools.size > MAX_POOLS) {
      const [oldest, evicted] = pools.entries().next().value as [string, Pool]
      pools.delete(oldest)
      evicted.close().catch(() => undefined)
    }
    return pool
  }

  const forward: UpstreamRequests['forward'] = (step, tls, body, response, http2Client) => {
    const aborted = new AbortController()
    response.once('close', () => response.writableFinished || aborted.abort())
    const send = (retry: boolean): void => {
      poolFor(step, tls)
        .request({
          path: step.path,
          method: step.method,
          headers: step.headers,
          body,
          signal: aborted.signal,
          ...(step.where.servername === undefined ? {} : { servername: step.where.servername })
        })
        .then(
          ({ statusCode, headers, body: answer, trailers }) => {
            if (response.destroyed) {
              answer.destroy()
              return
            }
            response.writeHead(statusCode, responseHeaders(headers))
            answer.on('data', (chunk: Buffer) => response.write(chunk) || answer.pause())
            response.on('drain', () => answer.resume())
            answer.once('error', () => response.destroy())
            answer.once('end', () => {
              if (http2Client && Object.keys(trailers).length > 0) response.addTrailers(responseHeaders(trailers))
              response.end()
            })
          },
          (error: unknown) => {
            if (aborted.signal.aborted) return
            const code = upstreamErrorCode(error)
            if (retry && body === null && IDEMPOTENT.has(step.method) && RESET.has(code)) {
              send(false)
              return
            }
            options.log('warn', `upstream request failed: ${code}`)
            if (response.headersSent || response.destroyed) {
              response.destroy()
              return
            }
            const text = upstreamFailureBody(code)
            response.writeHead(502, { 'content-type': 'text/plain; charset=utf-8', 'content-length': String(Buffer.byteLength(text)) })
            response.end(text)
          }
        )
    }
    send(true)
  }

  return {
    forward,
    close: async () => {
      const all = [...pools.values()]
      pools.clear()
      await Promise.all(all.map((pool) => pool.destroy().catch(() => undefined)))
    }
  }
}
