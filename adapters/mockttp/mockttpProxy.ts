import type http from 'node:http'
import { Socket, type Server } from 'node:net'
import type { Duplex } from 'node:stream'
import { TLSSocket } from 'node:tls'

import { getLocal, type Mockttp } from 'mockttp'

import { denyBody } from '../../core/Decision.js'
import { loadOrCreateCa } from '../interception/certificates.js'
import { newHostBudget, overBudgetWarning } from '../interception/newHostBudget.js'
import { stderrLogger, type RunningProxy } from '../ports.js'
import { DEFAULT_CLIENT_BOUNDS, watchClients } from '../proxy/clientBounds.js'
import type { EngineOptions } from '../proxy/engineOptions.js'
import { answer, createPipeline, type IncomingRequest, type RequestStep, type TunnelPin } from '../proxy/pipeline.js'
import { http1Alpn, rawAnswer, writeAnswer } from '../proxy/rawAnswer.js'
import { refuseOrTunnel } from '../proxy/refuseOrTunnel.js'
import { gateBody } from '../proxy/bodyTripwire.js'
import { announcedBody } from '../proxy/requestSecrets.js'
import { scrubResponseWrites } from '../proxy/responseScrubbing.js'
import { scrubSocketWrites } from '../proxy/webSocketScrubbing.js'
import { runningProxy } from '../proxy/runningProxy.js'
import { hostForUrl } from '../upstream/connectTo.js'
import { isWebSocketUpgrade, NOT_A_WEBSOCKET_UPGRADE } from '../upstream/forwardedHeaders.js'
import { PLAIN_TEXT } from '../upstream/tunnel.js'
import { upstreamErrorCode, upstreamFailureBody } from '../upstream/upstreamFailure.js'
import { upstreamTrust } from '../upstream/upstreamTrust.js'
import { newHostHandOver } from './newHostHandOver.js'
import { catchServer, clientSocketOf, decideRequestsFirst, guardPassthrough, HTTP2_REFUSED, malformed, wrapListeners, type Middleware, type SocketListener } from './internals.js'

// The guard on mockttp: its CONNECT and upgrade listeners and its first middleware translated into
// the request pipeline (adapters/proxy/pipeline.ts), each step carried out by rewriting what
// mockttp forwards. The internals it needs are in internals.ts; docs/mockttp.md lists the
// library's traps this answers.

/** A running proxy on mockttp, which can also tell what mockttp keeps of the traffic. */
export interface RunningMockttpProxy extends RunningProxy {
  /** Requests mockttp holds in memory for inspection: always 0, since traffic is never recorded. */
  readonly recordedRequests: () => Promise<number>
}

/** How to run the proxy: the options every engine takes, less two mockttp has no use for (it keeps its own certificates). */
export type MockttpProxyOptions = Omit<EngineOptions, 'maxInterceptedHosts' | 'now'>

/** Intercepted hosts remembered for the new-host budget. */
const MAX_REMEMBERED_HOSTS = 4_096

/** Starts mockttp as a proxy with every CONNECT, request and WebSocket upgrade decided by the guard before mockttp acts on it. */
export const startMockttpProxy = async (options: MockttpProxyOptions): Promise<RunningMockttpProxy> => {
  const log = options.log ?? stderrLogger
  const listenHost = options.host ?? '127.0.0.1'
  const ca = options.ca ?? (await loadOrCreateCa(options.configDir))
  // Traffic is not recorded (it would grow without bound). HTTP/2 is refused: mockttp's own ALPN
  // callback accepts a client that offers only h2 even with `http2: false`, so ours replaces it.
  const mock: Mockttp = getLocal({
    https: { certPath: ca.certPath, keyPath: ca.keyPath, tlsServerOptions: { ALPNCallback: ({ protocols }: { protocols: Array<string> }) => http1Alpn(protocols) } as never },
    recordTraffic: false,
    http2: false
  })
  const watch = watchClients({ ...DEFAULT_CLIENT_BOUNDS, ...options.clientBounds })
  const budget = newHostBudget({ ...options.newHosts, onRefused: overBudgetWarning(log) })
  const handOver = newHostHandOver(MAX_REMEMBERED_HOSTS, budget)
  const pipeline = createPipeline({ guard: options.guard, connectTo: options.connectTo ?? [], proxyAuthentication: options.proxyAuthentication, admitHost: handOver.admit })
  // Intercepted tunnels by client socket, so a request inside one is judged against its CONNECT
  // target, never its Host header. Entries go with their sockets.
  const tunnels = new WeakMap<Duplex, TunnelPin>()
  // Responses to requests whose body the tripwire stopped.
  const stopped = new WeakSet<http.ServerResponse>()

  const decideConnect = (original: ReadonlyArray<SocketListener>, server: Server): SocketListener => (request, socket, head) => {
    if (!(socket instanceof Socket) || (request as { httpVersionMajor?: number }).httpVersionMajor === 2) {
      // An HTTP/2 CONNECT hands a stream response, not a socket.
      const response = socket as unknown as http.ServerResponse
      response.writeHead(400, { 'content-type': PLAIN_TEXT })
      response.end(HTTP2_REFUSED)
      return
    }
    // Node removes its own error handler before emitting `connect`: one is needed before any await.
    socket.on('error', () => socket.destroy())
    watch.connect(socket)
    // A CONNECT inside a tunnel would make mockttp think the last hop was plain: refused.
    if (socket instanceof TLSSocket || tunnels.has(clientSocketOf(socket))) {
      socket.end(rawAnswer(400, 'Bad request: egress-guard does not open a tunnel inside a tunnel'))
      return
    }
    const step = refuseOrTunnel(pipeline.connect(request.url, request.headers['proxy-authorization']), socket, head, watch)
    if (step === undefined) return
    const { target } = step
    const wasKnown = handOver.lastWasKnown()
    const pin = pipeline.pin(step)
    tunnels.set(socket, pin)
    const intercept = async (): Promise<void> => {
      const where = await pin.pending
      if (socket.destroyed) return
      // mockttp dials the CONNECT authority for what arrives in the tunnel: it is handed the pinned
      // address. Its TLS name for the upstream then comes from the Host header, which the policy
      // checks against the target before anything is injected.
      request.url = `${hostForUrl(where.upstream.host)}:${where.upstream.port}`
      // mockttp ignores bytes that arrived with the CONNECT; they are handed back to the socket.
      if (head.length > 0) socket.unshift(head)
      const give = (): void => {
        for (const listener of original) listener.call(server, request, socket, Buffer.alloc(0))
      }
      if (wasKnown) give()
      else await handOver.run(target.host, socket, give)
    }
    intercept().catch(() => (socket.destroyed ? undefined : socket.end(rawAnswer(403, denyBody('internal_error', null)))))
  }

  /** Decides one request or upgrade; `act` gets the outcome, at once when it needed no wait. */
  const decide = (request: http.IncomingMessage, upgrade: boolean, act: (step: RequestStep) => void, broken: () => void): void => {
    handOver.firstRequest(clientSocketOf(request.socket))
    const tls = request.socket instanceof TLSSocket
    const incoming: IncomingRequest = {
      tls,
      target: request.url ?? '/',
      method: request.method ?? 'GET',
      headers: request.headers,
      sni: tls ? (request.socket as TLSSocket & { servername?: string | false }).servername : undefined,
      upgrade
    }
    const carry = (step: RequestStep): void => {
      try {
        act(step)
      } catch {
        broken()
      }
    }
    const refused = malformed(request)
    if (refused !== undefined) return carry(refused)
    const step = pipeline.request(incoming, tunnels.get(clientSocketOf(request.socket)))
    if (step instanceof Promise) step.then(carry, broken)
    else carry(step)
  }

  /** Hands a judged request to mockttp: exactly the pipeline's headers, and the judged scheme, address and path. */
  const rewrite = (request: http.IncomingMessage, step: RequestStep & { _tag: 'Forward' }, upgrade: boolean): void => {
    const raw: Array<string> = []
    for (const [name, value] of Object.entries(step.headers)) for (const one of Array.isArray(value) ? value : [value]) raw.push(name, one)
    request.headers = step.headers
    request.rawHeaders = raw
    // INVARIANT: mockttp sends a request exactly where, and with the scheme, the policy judged: an
    // absolute URL takes precedence over what it would read from the socket or the target. Its
    // WebSocket step takes the TLS name from the URL, so an upgrade in a tunnel keeps origin form
    // and goes to the pinned CONNECT authority.
    const tls = request.socket instanceof TLSSocket
    const inTunnel = tunnels.has(clientSocketOf(request.socket))
    request.url = upgrade && inTunnel ? step.path : `${tls ? 'https' : 'http'}://${hostForUrl(step.where.upstream.host)}:${step.where.upstream.port}${step.path}`
  }

  const decideRequest: Middleware = (request, response, next) => {
    watch.request(clientSocketOf(request.socket), response)
    // A body is gated before mockttp can read it, for the tripwire (bodyTripwire.ts).
    const body = announcedBody(request) === null ? undefined : gateBody(request)
    decide(
      request,
      false,
      (step) => {
        if (step._tag === 'Answer') {
          body?.open(undefined, () => undefined)
          return writeAnswer(response, step)
        }
        // A stopped body: the client is refused, and its connection (which mockttp's upstream
        // request is still reading from) closed once the refusal is out.
        body?.open(step.body, (refusal) => {
          stopped.add(response)
          if (response.headersSent) return void request.socket.destroy()
          response.once('finish', () => request.socket.destroy())
          writeAnswer(response, refusal)
        })
        rewrite(request, step, false)
        // The response to an injection is scrubbed of the injected values as mockttp writes it.
        scrubResponseWrites(response, step.verdict.secrets?.scrub ?? [])
        next()
      },
      () => response.destroy()
    )
  }

  const decideUpgrade = (original: ReadonlyArray<SocketListener>, server: Server): SocketListener => (request, socket, head) => {
    // A WebSocket is in flight until it closes, however quiet it is.
    watch.request(clientSocketOf(socket), socket)
    socket.on('error', () => socket.destroy())
    // Only WebSocket upgrades: mockttp would splice any other (`h2c`, …) to the upstream.
    if (!isWebSocketUpgrade({ method: request.method ?? '', headers: request.headers })) return void socket.end(rawAnswer(400, NOT_A_WEBSOCKET_UPGRADE))
    decide(
      request,
      true,
      (step) => {
        if (step._tag === 'Answer') return void socket.end(rawAnswer(step.status, step.body, step.headers))
        rewrite(request, step, true)
        scrubSocketWrites(socket, step.verdict.secrets?.scrub ?? [])
        for (const listener of original) listener.call(server, request, socket, head)
      },
      () => socket.destroy()
    )
  }

  const startedServer = catchServer(mock, (server) => {
    // mockttp calls `listen(port)` with no host, which listens on every interface: bound to ours.
    const listen = server.listen.bind(server) as (options: { port: number; host: string }) => Server
    server.listen = ((port: number) => listen({ port, host: listenHost })) as typeof server.listen
    wrapListeners(server, 'connect', decideConnect)
    // httpolyglot hands its listeners to the servers inside it too: only raw client sockets count.
    server.on('connection', (socket: Duplex) => socket instanceof TLSSocket || watch.accepted(clientSocketOf(socket)))
  })
  decideRequestsFirst(mock, decideRequest)
  // Extra CAs go in one secure context, handed to mockttp through its per-host client certificate
  // options ('*': every host), which it spreads into each upstream TLS connection. As
  // `additionalTrustedCAs` Node would join every root certificate into each request's agent key
  // (measured: 40% of the proxy's CPU).
  const trust = upstreamTrust(options.upstreamCa ?? [])
  await mock.forAnyRequest().thenPassThrough((trust === undefined ? {} : { clientCertificateHostMap: { '*': { secureContext: trust } } }) as never)
  // An upstream that refuses, resets or fails TLS verification: our 502 before any response, or a
  // cut connection after one began.
  guardPassthrough(mock, (error, response) => {
    // What fails after the tripwire stopped a body is the stop itself, already answered.
    if (stopped.has(response)) return
    const code = upstreamErrorCode(error)
    log('warn', `upstream request failed: ${code}`)
    if (response.headersSent) response.destroy()
    else writeAnswer(response, answer(502, upstreamFailureBody(code)))
  })
  await mock.forAnyWebSocket().thenPassThrough({ additionalTrustedCAs: (options.upstreamCa ?? []).map((cert) => ({ cert })) } as never)
  await mock.start(options.port ?? 0)
  const server = startedServer()
  wrapListeners(server, 'upgrade', decideUpgrade)
  const address = server.address()
  if (address === null || typeof address === 'string' || address.address !== listenHost) {
    await mock.stop()
    throw new Error(`mockttp did not listen on ${listenHost} only; refusing to run`)
  }
  return {
    ...runningProxy({ server, host: listenHost, port: address.port }, ca, watch, async () => {
      // A failure to stop mockttp is said, never thrown: the caller still flushes its audit records.
      // Its server is closed already (runningProxy stops accepting before it drains), which its
      // stop reports as an error: then its rules are reset here, as stop would have.
      await mock.stop().catch((error: unknown) => {
        if (server.listening) log('warn', `mockttp did not stop cleanly (${error instanceof Error ? error.message : 'error'})`)
        else void mock.reset()
      })
      watch.close() // what mockttp no longer counts as its own (CONNECT sockets before their first byte)
    }),
    recordedRequests: async () => {
      const endpoints = await mock.getMockedEndpoints()
      const seen = await Promise.all(endpoints.map((endpoint) => endpoint.getSeenRequests()))
      return seen.reduce((n, requests) => n + requests.length, 0)
    }
  }
}
