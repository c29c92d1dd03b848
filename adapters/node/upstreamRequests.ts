import type { IncomingHttpHeaders } from 'node:http'
import { performance } from 'node:perf_hooks'
import type { Readable } from 'node:stream'
import { checkServerIdentity, type PeerCertificate, type SecureContext } from 'node:tls'

import type { Dispatcher, Pool } from 'undici'

import type { Logger, Telemetry } from '../ports.js'
import type { BodyGate } from '../proxy/bodyTripwire.js'
import type { Forward } from '../proxy/pipeline.js'
import { writeAnswer, type AnswerableResponse } from '../proxy/rawAnswer.js'
import { plainWriter, scrubbingWriter, type ClientResponse, type ResponseWriter } from './responseWriters.js'
import { hostForUrl } from '../upstream/connectTo.js'
import { upstreamErrorCode, upstreamFailureBody } from '../upstream/upstreamFailure.js'

// Requests to upstreams, over undici connection pools: one pool per dialled address, port and TLS
// server name (so two names on one address never share a connection verified for the other),
// HTTP/2 where the upstream offers it, HTTP/1.1 keep-alive otherwise. Bodies stream both ways
// with backpressure: the response is read from the upstream only as fast as the client takes it,
// and the request body only as fast as the upstream takes it.

export type { ClientResponse } from './responseWriters.js'

/** True when the client can no longer be answered (an HTTP/2 response tells by its stream). */
export const clientGone = (response: ClientResponse): boolean =>
  response.destroyed === true || response.writableEnded || (response as ClientResponse & { stream?: { destroyed: boolean } }).stream?.destroyed === true

/** What forwards judged requests upstream. */
export interface UpstreamRequests {
  /** Sends `step` with `body` (null when the request has none; its gate opened here) and streams the answer into `response`. */
  readonly forward: (step: Forward, tls: boolean, body: { readonly stream: Readable; readonly gate: BodyGate } | null, response: ClientResponse, http2Client: boolean) => void
  readonly close: () => Promise<void>
}

/**
 * undici's Pool alone, loaded after the proxy listens: the package's entry also loads fetch,
 * WebSocket, caches and more (120 ms of `run`'s start-up here, against 40 ms for the pool), and
 * `egress-guard run` starts its child before any request needs it. undici is pinned exactly in
 * package.json; this module path is part of what the pin holds.
 */
const POOL_MODULE: string = 'undici/lib/dispatcher/pool.js'
let PoolClass: typeof Pool | undefined
const poolLoading: { promise?: Promise<typeof Pool> } = {}
const loadPool = (): Promise<typeof Pool> =>
  (poolLoading.promise ??= (import(POOL_MODULE) as Promise<{ default: typeof Pool }>).then((module) => (PoolClass = module.default)))

/** How long an idle upstream connection is kept for reuse, at most (undici also honours a shorter `Keep-Alive` hint). */
const UPSTREAM_IDLE_MS = 30_000
/**
 * Connections to one upstream (address, port, name) at once. An HTTP/2 client multiplexes up to
 * 100 streams on one connection; without a cap, each would open an upstream connection of its own
 * (3,375 from one client connection, measured in review).
 */
const MAX_CONNECTIONS = 128
/** Pools kept at once; beyond this the least recently used is closed once its requests finish. */
const MAX_POOLS = 512
/** Methods sent again, once, when a reused connection was reset before any response byte (RFC 9110 §9.2.2). */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE'])
const RESET = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET'])

/** Response headers that belong to one hop (and that HTTP/2 forbids). */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'http2-settings', 'te', 'trailer'])

const text = (value: Buffer | string): string => (typeof value === 'string' ? value : value.toString('latin1'))

/** Headers as undici reports them (raw name/value pairs, or an object for HTTP/2 trailers) as one object; repeated names become lists. */
const headersOf = (raw: ReadonlyArray<Buffer | string | ReadonlyArray<Buffer | string>> | Record<string, string | string[] | undefined> | null): Record<string, string | string[]> => {
  if (raw === null) return {}
  if (!Array.isArray(raw)) return Object.fromEntries(Object.entries(raw).filter((entry): entry is [string, string | string[]] => entry[1] !== undefined))
  const out: Record<string, string | string[]> = Object.create(null) as Record<string, string | string[]>
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = text(raw[i] as Buffer | string).toLowerCase()
    const value = raw[i + 1] as Buffer | string | ReadonlyArray<Buffer | string>
    const values = Array.isArray(value) ? value.map(text) : [text(value as Buffer | string)]
    const known = out[name]
    out[name] = known === undefined ? (values.length === 1 ? (values[0] as string) : values) : [...(Array.isArray(known) ? known : [known]), ...values]
  }
  return out
}

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


/** Starts the pools. */
export const upstreamRequests = (options: { readonly trust: SecureContext | undefined; readonly log: Logger; readonly telemetry: Telemetry }): UpstreamRequests => {
  // Loaded a moment after the start, so a short command under `run` never waits for it.
  setTimeout(() => void loadPool().catch(() => undefined), 100).unref()
  const pools = new Map<string, Pool>()

  const poolFor = (step: Forward, tls: boolean, PoolConstructor: typeof Pool): Pool => {
    const { upstream, servername, target } = step.where
    // INVARIANT: a pool's connections are verified for one name (or IP address), the judged one.
    const verifiedAs = servername ?? target.host
    const key = `${tls ? 's' : 'p'} ${upstream.host} ${upstream.port} ${verifiedAs}`
    const known = pools.get(key)
    if (known !== undefined) {
      pools.delete(key)
      pools.set(key, known)
      return known
    }
    const pool = new PoolConstructor(`${tls ? 'https' : 'http'}://${hostForUrl(upstream.host)}:${upstream.port}`, {
      keepAliveTimeout: UPSTREAM_IDLE_MS,
      keepAliveMaxTimeout: UPSTREAM_IDLE_MS,
      // Requests beyond this many connections to one upstream wait their turn (see MAX_CONNECTIONS).
      connections: MAX_CONNECTIONS,
      allowH2: tls,
      connect: {
        // A name is sent as SNI and verified; an IP address target (no SNI) is verified against
        // itself, not against the address dialled (they differ under `connectTo`).
        ...(servername === undefined ? { checkServerIdentity: (_host: string, cert: PeerCertificate) => checkServerIdentity(target.host, cert) } : { servername }),
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
    // A client gone while the request was decided (a cancelled HTTP/2 stream): nothing is sent.
    if (clientGone(response)) {
      body?.gate.open(undefined, () => undefined)
      return
    }
    // Set once the upstream connection is assigned: aborts the upstream request.
    let abort: ((reason: Error) => void) | undefined
    // Set when the tripwire stopped the body: the upstream request is abandoned, the client refused.
    let stopped = false
    body?.gate.open(step.body, (refusal) => {
      stopped = true
      abort?.(new Error('the request body carried a secret it may not'))
      if (clientGone(response)) return
      if (response.headersSent) response.destroy()
      else writeAnswer(response as ClientResponse & AnswerableResponse, refusal)
    })
    // Set once the response started: lets undici read on after the client drained.
    let resume: (() => void) | undefined
    // The response to an injection is scrubbed of the injected values (docs/spec.md §13).
    const rules = step.verdict.secrets?.scrub ?? []
    const writer: ResponseWriter =
      rules.length === 0
        ? plainWriter(response, http2Client, () => resume?.())
        : scrubbingWriter(response, rules, step.method, http2Client, () => resume?.(), () => abort?.(new Error('unreadable content coding')))
    response.on('drain', writer.drained)
    response.once('close', () => response.writableFinished || abort?.(new Error('the client went away')))
    const send = (retry: boolean): void => {
      // The upstream began its answer (a scrubbed one may not have reached the client yet).
      let answered = false
      const sent = performance.now()
      const handler: Dispatcher.DispatchHandler = {
        onConnect: (abortRequest) => {
          abort = abortRequest
          if (stopped) abortRequest(new Error('the request body carried a secret it may not'))
          else if (clientGone(response)) abortRequest(new Error('the client went away'))
        },
        onHeaders: (statusCode, raw, resumeReading) => {
          // Informational answers (100, 103) are not passed on; the final one follows.
          if (statusCode < 200) return true
          resume = resumeReading
          answered = true
          options.telemetry.answered((performance.now() - sent) / 1000)
          const received = headersOf(raw)
          return writer.head(statusCode, responseHeaders(received), received['transfer-encoding'])
        },
        // False (the client's buffer is full) pauses the upstream until the client drains.
        onData: (chunk) => writer.data(chunk),
        onComplete: (trailers) => writer.end(trailers === null ? {} : responseHeaders(headersOf(trailers))),
        onError: (error) => {
          writer.failed()
          if (stopped || clientGone(response)) return
          const code = upstreamErrorCode(error)
          if (retry && !answered && body === null && IDEMPOTENT.has(step.method) && RESET.has(code)) {
            send(false)
            return
          }
          options.log('warn', `upstream request failed: ${code}`)
          // A response cut short is cut with an error, so HTTP/2 clients get a stream reset, not an
          // end; so is one whose head was kept back to be scrubbed with its body.
          if (answered || response.headersSent) {
            response.destroy(new Error(`upstream failed: ${code}`))
            return
          }
          const text = upstreamFailureBody(code)
          response.writeHead(502, { 'content-type': 'text/plain; charset=utf-8', 'content-length': String(Buffer.byteLength(text)) })
          response.end(text)
        }
      }
      const dispatch = (PoolConstructor: typeof Pool): void => {
        poolFor(step, tls, PoolConstructor).dispatch(
        { path: step.path, method: step.method as Dispatcher.HttpMethod, headers: step.headers, body: body?.stream ?? null, ...(step.where.servername === undefined ? {} : { servername: step.where.servername }) },
          handler
        )
      }
      if (PoolClass !== undefined) dispatch(PoolClass)
      else loadPool().then(dispatch, (error: unknown) => handler.onError?.(error as Error))
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
