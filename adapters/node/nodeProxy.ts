import http from 'node:http'
import type { Http2ServerRequest, ServerHttp2Session } from 'node:http2'
import type { Duplex, Readable } from 'node:stream'
import type { TLSSocket } from 'node:tls'

import { atLeastOne } from '../interception/atLeastOne.js'
import { loadOrCreateCa } from '../interception/certificates.js'
import { newHostBudget, overBudgetWarning } from '../interception/newHostBudget.js'
import { NO_TELEMETRY, stderrLogger, type RunningProxy } from '../ports.js'
import { DEFAULT_CLIENT_BOUNDS, watchClients } from '../proxy/clientBounds.js'
import type { EngineOptions } from '../proxy/engineOptions.js'
import { gateBody } from '../proxy/bodyTripwire.js'
import { createPipeline, type IncomingRequest, type RequestStep, type TunnelPin } from '../proxy/pipeline.js'
import { answerClientErrors, rawAnswer, writeAnswer, type AnswerableResponse } from '../proxy/rawAnswer.js'
import { refuseOrTunnel } from '../proxy/refuseOrTunnel.js'
import { runningProxy } from '../proxy/runningProxy.js'
import { interceptedHosts, type InterceptedHosts } from './interceptedHosts.js'
import { forwardUpgrade } from './upgradeRequests.js'
import { upstreamTrust } from '../upstream/upstreamTrust.js'
import { clientGone, upstreamRequests, type ClientResponse } from './upstreamRequests.js'

// egress-guard's own engine (`--engine node`): Node's HTTP/1 and HTTP/2 servers towards clients,
// undici pools towards upstreams, and the request pipeline between them. This module only wires
// events to pipeline steps: what each step means is decided in adapters/proxy/pipeline.ts.

/** An intercepted CONNECT: its client socket (for the client bounds) and its pinned destination. */
interface Tunnel {
  readonly socket: Duplex
  readonly pin: TunnelPin
}

type ClientRequest = http.IncomingMessage | Http2ServerRequest

/** The accept queue asked for; the kernel caps it at net.core.somaxconn (4,096 on current Linux). */
const LISTEN_BACKLOG = 4_096

/** Whether a request carries no body, so it can be sent again (and undici sends none). */
const hasNoBody = (request: ClientRequest): boolean =>
  'stream' in request
    ? request.stream.endAfterHeaders
    : (request.headers['content-length'] === undefined || request.headers['content-length'] === '0') && request.headers['transfer-encoding'] === undefined

/** Starts the node engine with every CONNECT, request and upgrade decided by the guard. */
export const startNodeProxy = async (options: EngineOptions): Promise<RunningProxy> => {
  const { guard } = options
  const log = options.log ?? stderrLogger
  const maxHosts = atLeastOne('maxInterceptedHosts', options.maxInterceptedHosts ?? 256)
  const ca = options.ca ?? (await loadOrCreateCa(options.configDir, { now: options.now ?? Date.now }))
  const trust = upstreamTrust(options.upstreamCa ?? [])
  const watch = watchClients({ ...DEFAULT_CLIENT_BOUNDS, ...options.clientBounds })
  const budget = newHostBudget({ ...options.newHosts, onRefused: overBudgetWarning(log) })
  const upstreams = upstreamRequests({ trust, log, telemetry: options.telemetry ?? NO_TELEMETRY })
  const outer = http.createServer()
  // The HTTP/1 server for intercepted connections never listens (tunnels are handed to it), so it
  // is told it does: Node then tracks its connections and enforces `headersTimeout` (60 s, a client
  // trickling header bytes gets 408) inside tunnels too. The whole-request timeout is off there:
  // a long upload is not a slow client.
  const inner = http.createServer({ requestTimeout: 0 })
  inner.emit('listening')
  const hosts: InterceptedHosts<Tunnel> = interceptedHosts<Tunnel>({
    ca,
    max: maxHosts,
    onHttp1: (socket) => inner.emit('connection', socket),
    onHttp2Request: (request, response) => serve(request, response, hosts.tunnelOf(request.stream.session as ServerHttp2Session))
  })
  const pipeline = createPipeline({
    guard,
    connectTo: options.connectTo ?? [],
    proxyAuthentication: options.proxyAuthentication,
    admitHost: (host) => hosts.has(host) || budget.admit(host)
  })

  const incoming = (request: ClientRequest, tunnel: Tunnel | undefined, upgrade: boolean): IncomingRequest => ({
    tls: tunnel !== undefined,
    target: request.url ?? '/',
    method: request.method ?? 'GET',
    headers: request.headers,
    sni: tunnel === undefined ? undefined : (request.socket as TLSSocket & { servername?: string | false }).servername,
    upgrade
  })

  const serve = (request: ClientRequest, response: ClientResponse, tunnel: Tunnel | undefined): void => {
    watch.request(tunnel?.socket ?? request.socket, response)
    // A body is gated before anything can read it, for the tripwire (bodyTripwire.ts).
    const body = hasNoBody(request) ? undefined : gateBody(request as Readable)
    const carry = (step: RequestStep): void => {
      if (step._tag === 'Forward') {
        upstreams.forward(step, tunnel !== undefined, body === undefined ? null : { stream: request as Readable, gate: body }, response, 'stream' in request)
        return
      }
      body?.open(undefined, () => undefined)
      request.resume()
      if (clientGone(response)) response.destroy()
      else writeAnswer(response as ClientResponse & AnswerableResponse, step)
    }
    const step = pipeline.request(incoming(request, tunnel, false), tunnel?.pin)
    if (step instanceof Promise) step.then(carry, () => response.destroy())
    else carry(step)
  }

  const upgrade = (request: http.IncomingMessage, socket: Duplex, head: Buffer, tunnel: Tunnel | undefined): void => {
    // An upgraded connection is in flight until it closes, however quiet it is.
    watch.request(tunnel?.socket ?? socket, socket)
    socket.on('error', () => socket.destroy())
    const carry = (step: RequestStep): void => {
      if (step._tag === 'Forward') forwardUpgrade(step, tunnel !== undefined, socket, head, trust, log)
      else socket.end(rawAnswer(step.status, step.body, step.headers))
    }
    const step = pipeline.request(incoming(request, tunnel, true), tunnel?.pin)
    if (step instanceof Promise) step.then(carry, () => socket.destroy())
    else carry(step)
  }

  outer.on('connection', watch.accepted)
  outer.on('request', (request: http.IncomingMessage, response: http.ServerResponse) => serve(request, response as unknown as ClientResponse, undefined))
  outer.on('upgrade', (request: http.IncomingMessage, socket: Duplex, head: Buffer) => upgrade(request, socket, head, undefined))
  outer.on('connect', (request: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    watch.connect(socket)
    socket.on('error', () => socket.destroy())
    const intercept = refuseOrTunnel(pipeline.connect(request.url, request.headers['proxy-authorization']), socket, head, watch)
    if (intercept === undefined) return
    const { target } = intercept
    const tunnel: Tunnel = { socket, pin: pipeline.pin(intercept) }
    socket.write('HTTP/1.1 200 Connection Established\r\n\r\n')
    if (head.length > 0) socket.unshift(head)
    hosts.accept(target.host, socket, tunnel)
  })
  const tunnelOf = (socket: Duplex): Tunnel | undefined => hosts.tunnelOf(socket as TLSSocket)
  inner.on('request', (request: http.IncomingMessage, response: http.ServerResponse) => {
    const tunnel = tunnelOf(request.socket)
    if (tunnel === undefined) request.socket.destroy()
    else serve(request, response as unknown as ClientResponse, tunnel)
  })
  inner.on('upgrade', (request: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    const tunnel = tunnelOf(socket)
    if (tunnel === undefined) socket.destroy()
    else upgrade(request, socket, head, tunnel)
  })
  answerClientErrors(outer)
  answerClientErrors(inner)

  const host = options.host ?? '127.0.0.1'
  await new Promise<void>((resolve, reject) => {
    outer.once('error', reject)
    // Node's default accept queue (511) overflows under a burst of connections (the benchmark's
    // flood: 600 at once), and each SYN the kernel drops costs its client a 1 s retransmit. The
    // queue is as long as the system allows (net.core.somaxconn).
    outer.listen({ port: options.port ?? 0, host, backlog: LISTEN_BACKLOG }, () => {
      outer.off('error', reject)
      resolve()
    })
  })
  const address = outer.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  return runningProxy({ server: outer, host, port }, ca, watch, async () => {
    outer.close()
    outer.closeAllConnections()
    inner.closeAllConnections()
    inner.close(() => undefined)
    hosts.close()
    watch.close()
    await upstreams.close()
  })
}
