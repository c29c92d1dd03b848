import http from 'node:http'
import https from 'node:https'
import type { Socket } from 'node:net'
import { join } from 'node:path'
import type { Duplex } from 'node:stream'
import { createSecureContext, rootCertificates, type TLSSocket } from 'node:tls'

import { Proxy, type IContext, type IWebSocketContext } from 'http-mitm-proxy'

import * as E from 'fp-ts/lib/Either.js'

import { parseHost, type Deny, type RequestFacts } from '../../core/index.js'
import type { Verdict } from '../guard/createGuard.js'
import { atLeastOne } from '../interception/atLeastOne.js'
import { loadOrCreateCa } from '../interception/certificates.js'
import { stderrLogger, type RunningProxy } from '../ports.js'
import { hostForUrl, upstreamFor } from '../upstream/connectTo.js'
import { DEFAULT_CLIENT_BOUNDS, watchClients } from '../proxy/clientBounds.js'
import type { EngineOptions } from '../proxy/engineOptions.js'
import { newHostBudget, overBudgetWarning } from '../interception/newHostBudget.js'
import { authenticates, refuseSocket } from '../proxy/proxyAuthentication.js'
import { answerClientErrors, offerHttp10, refuseOverBudget } from '../proxy/rawAnswer.js'
import { plainProxyDestination, requestFacts } from '../proxy/requestFacts.js'
import { ensureHostHeader, hostHeaderFor, injectHeaders, NOT_A_PROXY_REQUEST, stripProxyHeaders } from '../upstream/forwardedHeaders.js'
import { pinDestination, type PinnedDestination } from '../upstream/pinnedDestination.js'
import { connectTarget, openTunnel, PLAIN_TEXT, refuseTunnel, type ConnectTarget } from '../upstream/tunnel.js'
import { upstreamErrorCode, upstreamFailureBody } from '../upstream/upstreamFailure.js'
import { manageHostServers, type HostServers, type LibraryServerTable } from './hostServers.js'

/** How to run the proxy: the options every engine takes. */
export type HttpMitmProxyOptions = EngineOptions

interface RefusableWebSocket {
  readonly upgradeReq: http.IncomingMessage
  readonly close: (code: number, reason: string) => void
  readonly terminate: () => void
  readonly removeAllListeners: (event: string) => void
  readonly on: (event: string, listener: () => void) => void
  readonly _socket: Socket
}

/**
 * Closes a client WebSocket the policy refused (1008). http-mitm-proxy accepts the upgrade before
 * any hook runs, and its frame and close handlers assume an upstream socket exists: they throw,
 * and kill the process, on a refused one. Its listeners are detached first; the paused socket is
 * resumed so the close handshake can finish, and cut after two seconds if it does not.
 */
const refuseWebSocket = (socket: RefusableWebSocket, reason: string): void => {
  for (const event of ['message', 'ping', 'pong', 'close', 'error']) socket.removeAllListeners(event)
  socket.on('error', () => undefined)
  socket.close(1008, reason.slice(0, 120))
  socket._socket.resume()
  setTimeout(() => socket.terminate(), 2_000).unref()
}

/** How long an idle upstream connection is kept for reuse, at most. */
const UPSTREAM_IDLE_MS = 30_000

const answer = (ctx: IContext, status: number, body: string, headers: Readonly<Record<string, string>> = {}): void => {
  const response = ctx.proxyToClientResponse
  ctx.clientToProxyRequest.resume()
  if (response.headersSent) {
    response.destroy()
    return
  }
  response.writeHead(status, { ...headers, 'content-type': PLAIN_TEXT, 'content-length': String(Buffer.byteLength(body)) })
  response.end(body)
}

/** Starts http-mitm-proxy with every CONNECT, request and WebSocket upgrade decided by the guard. */
export const startHttpMitmProxy = async (options: HttpMitmProxyOptions): Promise<RunningProxy> => {
  const { guard } = options
  const log = options.log ?? stderrLogger
  const rules = options.connectTo ?? []
  const now = options.now ?? Date.now
  const maxInterceptedHosts = atLeastOne('maxInterceptedHosts', options.maxInterceptedHosts ?? 256)
  const ca = options.ca ?? (await loadOrCreateCa(options.configDir, { now }))
  const extraCa = options.upstreamCa ?? []
  // Upstream TLS is verified by the agent; per-request `ca` would be ignored once the agent has one.
  // Extra CAs go in one secure context built here: as an agent `ca` list, Node would parse every
  // root certificate again for each connection and join them all into each request's pool key
  // (measured: a fifth of the proxy's CPU time).
  const trust = extraCa.length === 0 ? {} : { secureContext: createSecureContext({ ca: [...rootCertificates, ...extraCa] }) }
  // An idle upstream connection is closed after 30 s, or a second before the upstream's own
  // `Keep-Alive: timeout=N` (Node's agent reads that hint only when it has a timeout of its own):
  // reusing a connection the upstream is closing at that moment fails the request (ECONNRESET),
  // measured in the 60-second load test. An active request is never cut by it.
  const httpsAgent = new https.Agent({ keepAlive: true, timeout: UPSTREAM_IDLE_MS, ...trust })
  const httpAgent = new http.Agent({ keepAlive: true, timeout: UPSTREAM_IDLE_MS })
  const proxy = new Proxy()
  const watch = watchClients({ ...DEFAULT_CLIENT_BOUNDS, ...options.clientBounds })
  const budget = newHostBudget({ ...options.newHosts, onRefused: overBudgetWarning(log) })
  const required = options.proxyAuthentication
  // Set once the proxy listens (the library makes its server table then).
  let hostServers: HostServers | undefined

  // Leaf certificates come from our CA, asynchronously; nothing is read from or written to disk.
  const nowhere = join(options.configDir, '.leaf-certificates-are-kept-in-memory')
  proxy.onCertificateRequired = (hostname, callback) => callback(null, { keyFile: nowhere, certFile: nowhere, hosts: [hostname] })
  proxy.onCertificateMissing = (ctx, _files, callback) => {
    ca.leafFor(ctx.hostname).then(
      (leaf) => callback(null, { keyFileData: leaf.key, certFileData: leaf.cert, hosts: [ctx.hostname] } as never),
      (error: Error) => callback(error, undefined as never)
    )
  }

  // Where a request goes: the CONNECT authority (never its Host header), or the absolute URI of a
  // plain proxy request, pinned to one resolved address (see pinDestination). A tunnel is pinned
  // once, as the mockttp adapter does: every request inside it goes to the address judged for its
  // first one, and no request pays for a name lookup. A lookup that failed is not kept.
  const pins = new WeakMap<http.IncomingMessage, Promise<PinnedDestination>>()
  // The same pins once settled, for requests decided without waiting.
  const pinnedNow = new WeakMap<http.IncomingMessage, PinnedDestination>()
  const destination = (ctx: IContext | IWebSocketContext, fallback: ConnectTarget | undefined): Promise<PinnedDestination | undefined> => {
    const connect = ctx.connectRequest
    if (connect === undefined) return fallback === undefined ? Promise.resolve(undefined) : pinDestination(fallback, ctx.isSSL, rules)
    const known = pins.get(connect)
    if (known !== undefined) return known
    const raw = connectTarget(connect.url)
    if (raw === undefined) return Promise.resolve(undefined)
    const pinned = pinDestination(raw, ctx.isSSL, rules)
    pins.set(connect, pinned)
    pinned.then(
      (where) => (where.resolved ? pinnedNow.set(connect, where) : pins.delete(connect)),
      () => pins.delete(connect)
    )
    return pinned
  }

  // Each request's target as the client sent it: the library rewrites an `http://…` target to its
  // path (parsing the host naively) before any hook runs.
  const receivedTargets = new WeakMap<http.IncomingMessage, string>()
  const factsOf = (request: http.IncomingMessage, isSSL: boolean, where: PinnedDestination, method: string): RequestFacts =>
    requestFacts({
      tls: isSSL,
      destination: where,
      target: receivedTargets.get(request) ?? request.url ?? '/',
      method,
      hostHeader: request.headers.host,
      sni: isSSL ? (request.socket as TLSSocket & { servername?: string | false }).servername : undefined
    })

  proxy.onConnect((request, socket: Duplex, head: Buffer, callback) => {
    watch.connect(socket)
    if (required !== undefined && !authenticates(request.headers['proxy-authorization'], required)) {
      refuseSocket(socket, guard.refuseUnauthenticated(connectTarget(request.url)?.host ?? ''))
      return
    }
    try {
      const target = connectTarget(request.url)
      const verdict = target === undefined ? undefined : guard.evaluateTunnel(target.host, target.port)
      if (target === undefined || verdict === undefined) {
        refuseTunnel(socket, 'no_match')
        return
      }
      if (verdict.decision._tag === 'Deny') {
        refuseTunnel(socket, verdict.decision.reason)
        return
      }
      if (verdict.decision._tag === 'Intercept') {
        // The library keys its per-host TLS servers by the raw authority: hand it the normalised
        // host, so `API.Example.com.` and `api.example.com` share one server and one certificate.
        const normalised = parseHost(target.host)
        if (E.isRight(normalised)) request.url = `${hostForUrl(normalised.right)}:${target.port}`
        // The library's key for this host's server: the authority up to its first colon.
        const hostKey = (request.url ?? '').split(':', 2)[0] ?? ''
        if (hostServers?.has(hostKey) !== true && !budget.admit(hostKey)) {
          refuseOverBudget(socket)
          return
        }
        hostServers?.use(hostKey)
        callback()
        return
      }
      watch.tunnel(socket)
      openTunnel(socket, head, upstreamFor(rules, target.host, target.port))
    } catch {
      refuseTunnel(socket, 'internal_error') // an adapter failure never tunnels or intercepts
    }
  })

  const deny = (ctx: IContext, decision: Deny): void => answer(ctx, decision.status, decision.body)

  proxy.onRequest((ctx, callback) => {
    const request = ctx.clientToProxyRequest
    const options_ = ctx.proxyToServerRequestOptions
    watch.request(ctx.connectRequest?.socket ?? request.socket, ctx.proxyToClientResponse)
    // A plain proxy request authenticates itself; one inside a tunnel belongs to its CONNECT's client.
    if (ctx.connectRequest === undefined && required !== undefined && !authenticates(request.headers['proxy-authorization'], required)) {
      const refusal = guard.refuseUnauthenticated(plainProxyDestination(receivedTargets.get(request) ?? '')?.host ?? '')
      answer(ctx, refusal.status, refusal.body, refusal.headers)
      return
    }
    const factsFor = (where: PinnedDestination): RequestFacts => factsOf(request, ctx.isSSL, where, request.method ?? 'GET')

    // Applies a verdict to the request; true when it is to be forwarded.
    const apply = (where: PinnedDestination, facts: RequestFacts, verdict: Verdict): boolean => {
      if (options_ === undefined) throw new Error('http-mitm-proxy gave no request options')
      const headers = options_.headers as Record<string, unknown>
      stripProxyHeaders(headers)
      switch (verdict.decision._tag) {
        case 'Deny':
          deny(ctx, verdict.decision)
          return false
        case 'Inject':
          if (!where.resolved) {
            answer(ctx, 502, `Bad gateway: egress-guard could not resolve ${where.target.host}`)
            return false
          }
          injectHeaders(headers, verdict.decision.headers)
          break
        case 'Pass':
          break
      }
      ensureHostHeader(headers, where.target, ctx.isSSL)
      // INVARIANT: the request goes to the destination the policy judged, whatever Host says.
      const pinned = options_ as typeof options_ & https.RequestOptions
      // INVARIANT: the path forwarded is the one the policy judged (origin form, as sent).
      pinned.path = facts.path
      pinned.host = where.upstream.host
      pinned.port = where.upstream.port
      if (ctx.isSSL && where.servername !== undefined) pinned.servername = where.servername
      return true
    }

    const forward = (): void => {
      // The library may still throw while it builds the upstream request: never let that escape.
      try {
        callback()
      } catch {
        answer(ctx, 502, 'Bad gateway: egress-guard could not forward this request')
      }
    }

    const failClosed = (): void => {
      // An adapter failure never injects: deny modes deny, allow modes pass nothing on either.
      const verdict = guard.failClosed({ scheme: ctx.isSSL ? 'https' : 'http', host: options_?.host ?? '', method: request.method ?? '', path: request.url ?? '' })
      answer(ctx, verdict.decision._tag === 'Deny' ? 403 : 502, verdict.decision._tag === 'Deny' ? verdict.decision.body : 'Bad gateway: egress-guard could not forward this request')
    }

    // Most requests are decided and forwarded in this same turn: their tunnel is pinned already,
    // and their credentials (if any) are cached. The rest wait for the pin or the credentials.
    try {
      const where = ctx.connectRequest === undefined ? undefined : pinnedNow.get(ctx.connectRequest)
      const facts = where === undefined ? undefined : factsFor(where)
      const verdict = facts === undefined ? undefined : guard.evaluateNow(facts)
      if (where !== undefined && facts !== undefined && verdict !== undefined) {
        if (apply(where, facts, verdict)) forward()
        return
      }
    } catch {
      failClosed()
      return
    }
    const handle = async (): Promise<boolean> => {
      // Outside a tunnel only a proxy request (an absolute http:// URI) is forwarded, to the host
      // and port WHATWG reads in it. The library would take the destination of an origin-form
      // request from its Host header, and a request naming the proxy itself was then forwarded to
      // itself, again and again (thousands of connections a second from one request).
      const plain = ctx.connectRequest === undefined ? plainProxyDestination(receivedTargets.get(request) ?? '') : undefined
      if (ctx.connectRequest === undefined && plain === undefined) {
        answer(ctx, 400, NOT_A_PROXY_REQUEST)
        return false
      }
      // A plain proxy request names its own port; one the socket layer would throw on is refused here.
      if (plain !== undefined && !(Number.isInteger(plain.port) && plain.port >= 1 && plain.port <= 65535)) {
        answer(ctx, 400, 'Bad request: egress-guard needs a port from 1 to 65535')
        return false
      }
      const where = await destination(ctx, plain)
      if (where === undefined) throw new Error('unreadable CONNECT authority')
      const facts = factsFor(where)
      return apply(where, facts, await guard.evaluate(facts))
    }
    handle().then((forwarded) => forwarded && forward(), failClosed)
  })

  proxy.onWebSocketConnection((ctx, callback) => {
    const socket = ctx.clientToProxyWebSocket as unknown as RefusableWebSocket
    const request = socket.upgradeReq
    // A WebSocket is in flight until it closes, however quiet it is.
    watch.request(ctx.connectRequest?.socket ?? socket._socket, socket._socket)
    const wsOptions = ctx.proxyToServerWebSocketOptions
    // Outside a tunnel the library takes an upgrade's destination from its Host header, and one
    // addressed to the proxy itself was forwarded to itself, again and again. Only upgrades inside
    // a CONNECT tunnel are proxied (as with mockttp).
    if (ctx.connectRequest === undefined) {
      refuseWebSocket(socket, NOT_A_PROXY_REQUEST)
      return
    }
    const handle = async (): Promise<boolean> => {
      if (wsOptions === undefined) throw new Error('http-mitm-proxy gave no WebSocket options')
      if (!(request.url ?? '/').startsWith('/')) throw new Error('only origin-form WebSocket targets are forwarded')
      const where = await destination(ctx, undefined)
      if (where === undefined) throw new Error('unreadable destination')
      const verdict = await guard.evaluate(factsOf(request, ctx.isSSL, where, 'GET'))
      const headers = (wsOptions.headers ?? {}) as Record<string, unknown>
      stripProxyHeaders(headers)
      if (verdict.decision._tag === 'Deny') {
        refuseWebSocket(socket, verdict.decision.body)
        return false
      }
      if (verdict.decision._tag === 'Inject') {
        if (!where.resolved) throw new Error('unresolved destination')
        injectHeaders(headers, verdict.decision.headers)
      }
      wsOptions.headers = headers as Record<string, string>
      wsOptions.url = `${ctx.isSSL ? 'wss' : 'ws'}://${hostForUrl(where.upstream.host)}:${where.upstream.port}${request.url ?? '/'}`
      if (ctx.isSSL && where.servername !== undefined) (wsOptions as { servername?: string }).servername = where.servername
      return true
    }
    handle().then(
      (forward) => {
        if (!forward) return
        try {
          callback()
        } catch {
          refuseWebSocket(socket, 'Forbidden by egress-guard proxy policy (internal_error)')
        }
      },
      () => refuseWebSocket(socket, 'Forbidden by egress-guard proxy policy (internal_error)')
    )
  })

  // Upstream failures (refused, reset, a certificate that does not verify) get our own 502; the
  // library would otherwise answer 504 with its internal error text.
  proxy.onError((ctx, error, kind) => {
    if (ctx === null || ctx === undefined || ctx.proxyToClientResponse === undefined) return
    const code = upstreamErrorCode(error, kind ?? 'ERROR')
    log('warn', `upstream request failed: ${code}`)
    answer(ctx, 502, upstreamFailureBody(code))
  })

  // Every request and WebSocket upgrade, on the proxy port and inside every tunnel, passes one of
  // the library's two handlers first: the target is kept there before the library parses and
  // rewrites it, and a missing Host is filled in (HTTP/1.0 may omit it; the library would refuse
  // a request without one, and throw on such an upgrade, which ended the process).
  const library = proxy as unknown as {
    _onHttpServerRequest?: (isSSL: boolean, request: http.IncomingMessage, response: http.ServerResponse) => void
    _onWebSocketServerConnect?: (isSSL: boolean, socket: RefusableWebSocket, request: http.IncomingMessage) => void
    connectRequests?: Record<string, http.IncomingMessage>
  }
  const handleRequest = library._onHttpServerRequest
  const handleUpgrade = library._onWebSocketServerConnect
  if (typeof handleRequest !== 'function' || typeof handleUpgrade !== 'function') throw new Error('http-mitm-proxy internals changed: no request or upgrade handler; pin http-mitm-proxy 1.1.0')
  /** Gives a request without Host its tunnel's host; false when it has neither. */
  const withHost = (request: http.IncomingMessage, socket: Socket, isSSL: boolean): boolean => {
    if (request.headers.host !== undefined) return true
    // The library's table of CONNECTs by tunnel socket (made anew when it listens).
    const connect = library.connectRequests?.[`${socket.remotePort}:${socket.localPort}`]
    const target = connect === undefined ? undefined : connectTarget(connect.url)
    if (target === undefined) return false
    request.headers.host = hostHeaderFor(target, isSSL)
    return true
  }
  library._onHttpServerRequest = function (this: unknown, isSSL, request, response) {
    receivedTargets.set(request, request.url ?? '')
    withHost(request, request.socket, isSSL)
    handleRequest.call(this, isSSL, request, response)
  }
  library._onWebSocketServerConnect = function (this: unknown, isSSL, socket, request) {
    if (!withHost(request, socket._socket, isSSL)) {
      refuseWebSocket(socket, 'Bad request: a WebSocket upgrade needs a Host header')
      return
    }
    handleUpgrade.call(this, isSSL, socket, request)
  }

  await new Promise<void>((resolve, reject) => {
    proxy.listen({ host: options.host ?? '127.0.0.1', port: options.port ?? 0, sslCaDir: options.configDir, keepAlive: true, httpsAgent, httpAgent }, (error?: Error | null) =>
      error ? reject(error) : resolve()
    )
  })
  const listener = (proxy as unknown as { httpServer?: http.Server }).httpServer
  if (listener === undefined) {
    proxy.close()
    throw new Error('http-mitm-proxy internals changed: no HTTP server after listen; pin http-mitm-proxy 1.1.0')
  }
  listener.on('connection', watch.accepted)
  try {
    const prepare = (server: http.Server): void => {
      answerClientErrors(server)
      offerHttp10(server)
    }
    hostServers = manageHostServers(proxy as unknown as LibraryServerTable, { max: maxInterceptedHosts, now, onServer: prepare })
  } catch (error) {
    proxy.close()
    throw error
  }
  const port = (proxy as unknown as { httpPort: number }).httpPort
  const host = options.host ?? '127.0.0.1'
  return {
    url: `http://${hostForUrl(host)}:${port}`,
    port,
    caCertPath: ca.certPath,
    caCertPem: ca.certPem,
    accept: (socket) => {
      listener.emit('connection', socket)
    },
    close: async () => {
      // The library closes its listening servers but leaves kept-alive connections open.
      const open = [listener, ...(hostServers?.open() ?? [])]
      hostServers?.close()
      proxy.close()
      for (const server of open) server.closeAllConnections()
      watch.close() // CONNECT sockets, which the servers no longer count as theirs
      httpsAgent.destroy()
      httpAgent.destroy()
    }
  }
}
