import http from 'node:http'
import https from 'node:https'
import { join } from 'node:path'
import type { Duplex } from 'node:stream'
import type { TLSSocket } from 'node:tls'

import { Proxy, type IContext } from 'http-mitm-proxy'

import { atLeastOne } from '../interception/atLeastOne.js'
import { loadOrCreateCa } from '../interception/certificates.js'
import { newHostBudget, overBudgetWarning } from '../interception/newHostBudget.js'
import { stderrLogger, type RunningProxy } from '../ports.js'
import { DEFAULT_CLIENT_BOUNDS, watchClients } from '../proxy/clientBounds.js'
import type { EngineOptions } from '../proxy/engineOptions.js'
import { createPipeline, type IncomingRequest, type RequestStep, type TunnelPin } from '../proxy/pipeline.js'
import { answerClientErrors, offerHttp10, writeAnswer } from '../proxy/rawAnswer.js'
import { refuseOrTunnel } from '../proxy/refuseOrTunnel.js'
import { gateBody } from '../proxy/bodyTripwire.js'
import { announcedBody, injectedHeaders } from '../proxy/requestSecrets.js'
import { scrubResponseWrites } from '../proxy/responseScrubbing.js'
import { scrub } from '../../core/index.js'
import { runningProxy } from '../proxy/runningProxy.js'
import { hostForUrl } from '../upstream/connectTo.js'
import { injectHeaders, NOT_A_PROXY_REQUEST, stripProxyHeaders } from '../upstream/forwardedHeaders.js'
import { upstreamErrorCode, upstreamFailureBody } from '../upstream/upstreamFailure.js'
import { upstreamTrust } from '../upstream/upstreamTrust.js'
import { manageHostServers, type HostServers, type LibraryServerTable } from './hostServers.js'
import { acceptOnlyTheLibrary, fromLibrary, listeningServer, refuseWebSocket, serverKey, watchIncoming, type LibraryWebSocket } from './internals.js'

// The guard on http-mitm-proxy: the library's CONNECT, request, WebSocket and error hooks
// translated into the request pipeline (adapters/proxy/pipeline.ts), and its steps carried out
// with the library's request options. The internals it needs are in internals.ts.

/** How to run the proxy: the options every engine takes. */
export type HttpMitmProxyOptions = EngineOptions

/** How long an idle upstream connection is kept for reuse, at most. */
const UPSTREAM_IDLE_MS = 30_000

const answer = (ctx: IContext, status: number, body: string, headers: Readonly<Record<string, string>> = {}): void => {
  ctx.clientToProxyRequest.resume()
  writeAnswer(ctx.proxyToClientResponse, { status, body, headers })
}

/** Starts http-mitm-proxy with every CONNECT, request and WebSocket upgrade decided by the guard. */
export const startHttpMitmProxy = async (options: HttpMitmProxyOptions): Promise<RunningProxy> => {
  const log = options.log ?? stderrLogger
  const now = options.now ?? Date.now
  const maxInterceptedHosts = atLeastOne('maxInterceptedHosts', options.maxInterceptedHosts ?? 256)
  const ca = options.ca ?? (await loadOrCreateCa(options.configDir, { now }))
  // Upstream TLS is verified by the agent, with extra CAs in one secure context built once: as an
  // agent `ca` list, Node would parse every root certificate again for each connection (measured:
  // a fifth of the proxy's CPU time). An idle upstream connection is closed after 30 s, or a second
  // before the upstream's own `Keep-Alive: timeout=N` (Node's agent reads that hint only when it
  // has a timeout of its own); reusing one the upstream is closing fails the request.
  const trust = upstreamTrust(options.upstreamCa ?? [])
  const httpsAgent = new https.Agent({ keepAlive: true, timeout: UPSTREAM_IDLE_MS, ...(trust === undefined ? {} : { secureContext: trust }) })
  const httpAgent = new http.Agent({ keepAlive: true, timeout: UPSTREAM_IDLE_MS })
  const proxy = new Proxy()
  const watch = watchClients({ ...DEFAULT_CLIENT_BOUNDS, ...options.clientBounds })
  const budget = newHostBudget({ ...options.newHosts, onRefused: overBudgetWarning(log) })
  // Set once the proxy listens (the library makes its server table then).
  let hostServers: HostServers | undefined
  const pipeline = createPipeline({
    guard: options.guard,
    connectTo: options.connectTo ?? [],
    proxyAuthentication: options.proxyAuthentication,
    admitHost: (host) => hostServers?.has(serverKey(hostForUrl(host))) === true || budget.admit(host)
  })
  // Each intercepted CONNECT's pinned destination, and each request's target as the client sent it.
  const tunnels = new WeakMap<http.IncomingMessage, TunnelPin>()
  const targets = new WeakMap<http.IncomingMessage, string>()
  // Requests whose body the tripwire stopped: what fails after that is not an upstream failure.
  const stopped = new WeakSet<IContext>()

  // Leaf certificates come from our CA, asynchronously; nothing is read from or written to disk.
  const nowhere = join(options.configDir, '.leaf-certificates-are-kept-in-memory')
  proxy.onCertificateRequired = (hostname, callback) => callback(null, { keyFile: nowhere, certFile: nowhere, hosts: [hostname] })
  proxy.onCertificateMissing = (ctx, _files, callback) => {
    ca.leafFor(ctx.hostname).then(
      (leaf) => callback(null, { keyFileData: leaf.key, certFileData: leaf.cert, hosts: [ctx.hostname] } as never),
      (error: Error) => callback(error, undefined as never)
    )
  }

  proxy.onConnect((request, socket: Duplex, head: Buffer, callback) => {
    watch.connect(socket)
    const intercept = refuseOrTunnel(pipeline.connect(request.url, request.headers['proxy-authorization']), socket, head, watch)
    if (intercept === undefined) return
    const { target } = intercept
    // The library keys its per-host TLS servers by the authority: hand it the normalised one, so
    // `API.Example.com.` and `api.example.com` share one server and one certificate.
    request.url = `${hostForUrl(target.host)}:${target.port}`
    hostServers?.use(serverKey(request.url))
    tunnels.set(request, pipeline.pin(intercept))
    callback()
  })

  const incoming = (ctx: { readonly isSSL: boolean }, request: http.IncomingMessage, upgrade: boolean): IncomingRequest => ({
    tls: ctx.isSSL,
    target: targets.get(request) ?? request.url ?? '/',
    method: request.method ?? 'GET',
    headers: request.headers,
    sni: ctx.isSSL ? (request.socket as TLSSocket & { servername?: string | false }).servername : undefined,
    upgrade
  })

  proxy.onRequest((ctx, callback) => {
    const request = ctx.clientToProxyRequest
    watch.request(ctx.connectRequest?.socket ?? request.socket, ctx.proxyToClientResponse)
    const received = incoming(ctx, request, false)
    // A body is gated before the library can read it, for the tripwire (bodyTripwire.ts).
    const body = announcedBody(request) === null ? undefined : gateBody(request)
    const carry = (step: RequestStep): void => {
      if (step._tag === 'Answer') {
        body?.open(undefined, () => undefined)
        return answer(ctx, step.status, step.body, step.headers)
      }
      body?.open(step.body, (refusal) => {
        stopped.add(ctx)
        ctx.proxyToServerRequest?.destroy()
        if (ctx.proxyToClientResponse.headersSent) ctx.proxyToClientResponse.destroy()
        else answer(ctx, refusal.status, refusal.body, refusal.headers)
      })
      const forwarded = ctx.proxyToServerRequestOptions as (typeof ctx.proxyToServerRequestOptions & https.RequestOptions) | undefined
      if (forwarded === undefined) return answer(ctx, 502, 'Bad gateway: egress-guard could not forward this request')
      // INVARIANT: the request goes to the destination the policy judged, on the path it judged,
      // with the headers the pipeline made, whatever Host says.
      forwarded.headers = step.headers as typeof forwarded.headers
      forwarded.path = step.path
      forwarded.host = step.where.upstream.host
      forwarded.port = step.where.upstream.port
      if (ctx.isSSL && step.where.servername !== undefined) forwarded.servername = step.where.servername
      // The response to an injection is scrubbed of the injected values as the library writes it.
      scrubResponseWrites(ctx.proxyToClientResponse, step.verdict.secrets?.scrub ?? [])
      try {
        callback()
      } catch {
        answer(ctx, 502, 'Bad gateway: egress-guard could not forward this request')
      }
    }
    // A request is taken for a tunnel's only on the library's own connection (internals.ts, fromLibrary).
    const tunnel = ctx.connectRequest === undefined || !fromLibrary(request.socket) ? undefined : tunnels.get(ctx.connectRequest)
    if (ctx.connectRequest !== undefined && tunnel === undefined) return carry(pipeline.failure(received))
    const step = pipeline.request(received, tunnel)
    if (step instanceof Promise) step.then(carry, () => ctx.proxyToClientResponse.destroy())
    else carry(step)
  })

  proxy.onWebSocketConnection((ctx, callback) => {
    const socket = ctx.clientToProxyWebSocket as unknown as LibraryWebSocket
    const request = socket.upgradeReq
    // A WebSocket is in flight until it closes, however quiet it is.
    watch.request(ctx.connectRequest?.socket ?? socket._socket, socket._socket)
    // Outside a tunnel the library takes an upgrade's destination from its Host header (one naming
    // the proxy was forwarded to itself, again and again): only upgrades in a tunnel are proxied.
    const tunnel = ctx.connectRequest === undefined || !fromLibrary(socket._socket) ? undefined : tunnels.get(ctx.connectRequest)
    const wsOptions = ctx.proxyToServerWebSocketOptions
    if (tunnel === undefined || wsOptions === undefined || !(request.url ?? '/').startsWith('/')) {
      refuseWebSocket(socket, NOT_A_PROXY_REQUEST)
      return
    }
    const carry = (step: RequestStep): void => {
      if (step._tag === 'Answer') return refuseWebSocket(socket, step.body)
      // The `ws` client makes its own handshake headers: the library's are kept, less `Proxy-*`,
      // with the credential set.
      const headers = (wsOptions.headers ?? {}) as Record<string, unknown>
      stripProxyHeaders(headers)
      if (step.verdict.decision._tag === 'Inject') injectHeaders(headers, step.verdict.decision.headers)
      const { secrets } = step.verdict
      wsOptions.headers = (secrets === undefined ? headers : injectedHeaders(headers as Record<string, string>, secrets)) as Record<string, string>
      // Messages (text and binary), pings and pongs from the upstream of an injected WebSocket are
      // scrubbed (the library hands them whole; a close reason it sends itself is not seen here).
      if (secrets !== undefined && secrets.scrub.length > 0) {
        ctx.onWebSocketFrame((_ctx, _type, fromServer, data, flags, done) => {
          if (!fromServer) return done(null, data, flags)
          const text = Buffer.isBuffer(data) ? data.toString('latin1') : Buffer.from(String(data)).toString('latin1')
          done(null, Buffer.from(scrub(secrets.scrub, text), 'latin1'), flags)
        })
        // The library would close the client with the upstream's own reason: it is closed first,
        // with the reason scrubbed (a code the library could not send goes without one).
        ctx.onWebSocketClose((closeCtx, code, message, done) => {
          const client = closeCtx.clientToProxyWebSocket as unknown as { readyState: number; close: (code?: number, reason?: Buffer) => void } | undefined
          if (closeCtx.closedByServer === true && client?.readyState === 1) {
            const reason = Buffer.from(scrub(secrets.scrub, Buffer.from(message ?? '').toString('latin1')), 'latin1').subarray(0, 123)
            try {
              client.close(code, reason)
            } catch {
              client.close()
            }
          }
          done(null)
        })
      }
      wsOptions.url = `${ctx.isSSL ? 'wss' : 'ws'}://${hostForUrl(step.where.upstream.host)}:${step.where.upstream.port}${step.path}`
      if (ctx.isSSL && step.where.servername !== undefined) (wsOptions as { servername?: string }).servername = step.where.servername
      try {
        callback()
      } catch {
        refuseWebSocket(socket, 'Forbidden by egress-guard proxy policy (internal_error)')
      }
    }
    const step = pipeline.request(incoming(ctx, request, true), tunnel)
    if (step instanceof Promise) step.then(carry, () => refuseWebSocket(socket, 'Forbidden by egress-guard proxy policy (internal_error)'))
    else carry(step)
  })

  // Upstream failures (refused, reset, a certificate that does not verify) get our own 502; the
  // library would otherwise answer 504 with its internal error text.
  proxy.onError((ctx, error, kind) => {
    if (ctx === null || ctx === undefined || ctx.proxyToClientResponse === undefined || stopped.has(ctx)) return
    const code = upstreamErrorCode(error, kind ?? 'ERROR')
    log('warn', `upstream request failed: ${code}`)
    answer(ctx, 502, upstreamFailureBody(code))
  })

  watchIncoming(proxy, targets)
  await new Promise<void>((resolve, reject) => {
    proxy.listen({ host: options.host ?? '127.0.0.1', port: options.port ?? 0, sslCaDir: options.configDir, keepAlive: true, httpsAgent, httpAgent }, (error?: Error | null) =>
      error ? reject(error) : resolve()
    )
  })
  let listening: ReturnType<typeof listeningServer>
  try {
    listening = listeningServer(proxy)
    const prepare = (server: http.Server): void => {
      acceptOnlyTheLibrary(server)
      answerClientErrors(server)
      offerHttp10(server)
    }
    hostServers = manageHostServers(proxy as unknown as LibraryServerTable, { max: maxInterceptedHosts, now, onServer: prepare })
  } catch (error) {
    proxy.close()
    throw error
  }
  const { server: listener, port } = listening
  listener.on('connection', watch.accepted)
  return runningProxy({ server: listener, host: options.host ?? '127.0.0.1', port }, ca, watch, async () => {
    // The library closes its listening servers but leaves kept-alive connections open.
    const open = [listener, ...(hostServers?.open() ?? [])]
    hostServers?.close()
    proxy.close()
    for (const server of open) server.closeAllConnections()
    watch.close() // CONNECT sockets, which the servers no longer count as theirs
    httpsAgent.destroy()
    httpAgent.destroy()
  })
}
