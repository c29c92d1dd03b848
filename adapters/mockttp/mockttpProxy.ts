import type http from 'node:http'
import { Socket, type Server } from 'node:net'
import type { Duplex } from 'node:stream'
import { createSecureContext, rootCertificates, TLSSocket } from 'node:tls'

import { getLocal, type Mockttp } from 'mockttp'

import * as E from 'fp-ts/lib/Either.js'

import { parseHost, type RequestFacts } from '../../core/index.js'
import type { Verdict } from '../guard/createGuard.js'
import { loadOrCreateCa } from '../interception/certificates.js'
import { fairQueue, hostGroup } from '../interception/fairQueue.js'
import { newHostBudget, overBudgetWarning } from '../interception/newHostBudget.js'
import { stderrLogger, type RunningProxy } from '../ports.js'
import { hostForUrl, upstreamFor } from '../upstream/connectTo.js'
import { DEFAULT_CLIENT_BOUNDS, watchClients } from '../proxy/clientBounds.js'
import type { EngineOptions } from '../proxy/engineOptions.js'
import { authenticates, refuseSocket } from '../proxy/proxyAuthentication.js'
import { isWebSocketUpgrade, NOT_A_WEBSOCKET_UPGRADE } from '../proxy/pipeline.js'
import { http1Alpn, rawAnswer, refuseOverBudget } from '../proxy/rawAnswer.js'
import { plainProxyDestination, requestFacts } from '../proxy/requestFacts.js'
import { ensureHostHeader, injectHeaders, NOT_A_PROXY_REQUEST, stripProxyHeaders } from '../upstream/forwardedHeaders.js'
import { pinDestination, type PinnedDestination } from '../upstream/pinnedDestination.js'
import { connectTarget, openTunnel, PLAIN_TEXT, refuseTunnel } from '../upstream/tunnel.js'
import { upstreamErrorCode, upstreamFailureBody } from '../upstream/upstreamFailure.js'
import { falseLoopMatches } from './loopCheck.js'

/** A running proxy on mockttp, which can also tell what mockttp keeps of the traffic. */
export interface RunningMockttpProxy extends RunningProxy {
  /** Requests mockttp holds in memory for inspection: always 0, since traffic is never recorded. */
  readonly recordedRequests: () => Promise<number>
}

/** How to run the proxy: the options every engine takes, less two mockttp has no use for (it keeps its own certificates). */
export type MockttpProxyOptions = Omit<EngineOptions, 'maxInterceptedHosts' | 'now'>

// mockttp 4.6.5 keeps these private; the adapter needs them to decide before the library acts.
// Each is checked at start, and the proxy refuses to start if one is missing (see README).
interface MockttpInternals {
  /** The connect app whose middleware stack handles every request; ours goes first. */
  readonly app: { readonly stack: Array<{ route: string; handle: Middleware }> }
  /** The listening server, assigned inside `start()`. */
  server?: Server
  /**
   * The request rules by priority; the passthrough rule's `handle` is wrapped for its failures, and
   * its step's set of upstream sockets is what mockttp's loop check reads.
   */
  readonly requestRuleSets?: Record<string, Array<{ handle: RuleHandle; readonly steps?: ReadonlyArray<{ readonly outgoingSockets?: Set<Socket> }> }>>
}

type RuleHandle = (request: http.IncomingMessage, response: http.ServerResponse, options: unknown) => Promise<void>

type Middleware = (request: http.IncomingMessage, response: http.ServerResponse, next: () => void) => void
type SocketListener = (request: http.IncomingMessage, socket: Duplex, head: Buffer) => void

/** What an intercepted tunnel was judged as: the CONNECT target, pinned (undefined while it is being resolved). */
interface Tunnel {
  where: PinnedDestination | undefined
}

/** The client connection under a request's socket: the raw socket beneath mockttp's TLS wrapper. */
const clientSocketOf = (socket: Duplex): Duplex => (socket as Duplex & { _parent?: Duplex })._parent ?? socket

/** A CONNECT target refused for a reason that is not a policy decision. */
const refuseWith = (socket: Duplex, status: string, body: string): void => {
  socket.on('error', () => socket.destroy())
  socket.end(`HTTP/1.1 ${status}\r\nContent-Type: ${PLAIN_TEXT}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`)
}

/** Intercepted hosts remembered for the new-host budget. */
const MAX_REMEMBERED_HOSTS = 4_096

const HTTP2_REFUSED = 'Bad request: egress-guard does not accept HTTP/2 from clients; use HTTP/1.1'

const writeAnswer = (response: http.ServerResponse, status: number, body: string, headers: Readonly<Record<string, string>> = {}): void => {
  if (response.headersSent) {
    response.destroy()
    return
  }
  response.writeHead(status, { ...headers, 'content-type': PLAIN_TEXT, 'content-length': String(Buffer.byteLength(body)) })
  response.end(body)
}

/** Replaces a request's headers (object and raw form, which mockttp forwards) with `headers`. */
const setHeaders = (request: http.IncomingMessage, headers: Record<string, unknown>): void => {
  const raw: Array<string> = []
  for (const [name, value] of Object.entries(headers)) {
    for (const one of Array.isArray(value) ? value : [value]) raw.push(name, String(one))
  }
  request.headers = headers as http.IncomingHttpHeaders
  request.rawHeaders = raw
}

/** Headers keyed as the client spelled them (mockttp forwards raw names), repeats kept as arrays. */
const rawHeaderObject = (request: http.IncomingMessage): Record<string, unknown> => {
  const headers: Record<string, string | Array<string>> = {}
  const raw = request.rawHeaders
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] ?? ''
    const value = raw[i + 1] ?? ''
    const seen = headers[name]
    headers[name] = seen === undefined ? value : Array.isArray(seen) ? [...seen, value] : [seen, value]
  }
  return headers
}

/**
 * Starts mockttp as a proxy with every CONNECT, request and WebSocket upgrade decided by the
 * guard before mockttp acts on it. mockttp has no public hook for any of the three that does not
 * buffer whole bodies, so the adapter wraps four of its internals (the CONNECT and upgrade
 * listeners, the first middleware, and the passthrough rule's handler, whose failures it answers
 * itself); it fails to start if they are not where it expects.
 */
export const startMockttpProxy = async (options: MockttpProxyOptions): Promise<RunningMockttpProxy> => {
  const { guard } = options
  const log = options.log ?? stderrLogger
  const rules = options.connectTo ?? []
  const listenHost = options.host ?? '127.0.0.1'
  const ca = options.ca ?? (await loadOrCreateCa(options.configDir))
  // Traffic is not recorded (it would grow without bound). HTTP/2 is refused: mockttp's own ALPN
  // callback accepts a client that offers only h2 even with `http2: false`, so ours replaces it.
  const mock: Mockttp = getLocal({
    https: { certPath: ca.certPath, keyPath: ca.keyPath, tlsServerOptions: { ALPNCallback: ({ protocols }: { protocols: Array<string> }) => http1Alpn(protocols) } as never },
    recordTraffic: false,
    http2: false
  })
  const internals = mock as unknown as MockttpInternals
  const watch = watchClients({ ...DEFAULT_CLIENT_BOUNDS, ...options.clientBounds })
  const budget = newHostBudget({ ...options.newHosts, onRefused: overBudgetWarning(log) })
  const handOvers = fairQueue({ concurrency: 2, maxWaiting: MAX_REMEMBERED_HOSTS })
  // New hosts' tunnels waiting for their first request, which ends their turn in `handOvers`.
  const firstRequests = new WeakMap<Duplex, () => void>()
  const required = options.proxyAuthentication
  // Hosts intercepted lately (least recently used first), which the budget does not count again.
  const intercepted = new Map<string, true>()
  const admitted = (host: string): boolean => {
    const known = intercepted.delete(host)
    if (!known && !budget.admit(host)) return false
    intercepted.set(host, true)
    if (intercepted.size > MAX_REMEMBERED_HOSTS) intercepted.delete(intercepted.keys().next().value as string)
    return true
  }
  if (!Array.isArray(internals.app?.stack)) throw new Error('mockttp internals changed: no middleware stack; pin mockttp 4.6.5')

  // Intercepted tunnels by client socket, so a request inside one is judged against its CONNECT
  // target, never its Host header. Entries go with their sockets.
  const tunnels = new WeakMap<Duplex, Tunnel>()

  const decideConnect = (original: ReadonlyArray<SocketListener>, server: Server) => (request: http.IncomingMessage, socket: Duplex, head: Buffer) => {
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
    if (required !== undefined && !(socket instanceof TLSSocket) && !authenticates(request.headers['proxy-authorization'], required)) {
      refuseSocket(socket, guard.refuseUnauthenticated(connectTarget(request.url)?.host ?? ''))
      return
    }
    if (socket instanceof TLSSocket || tunnels.has(clientSocketOf(socket))) {
      refuseWith(socket, '400 Bad Request', 'Bad request: egress-guard does not open a tunnel inside a tunnel')
      return
    }
    const decide = async (): Promise<void> => {
      const target = connectTarget(request.url)
      const verdict = target === undefined ? undefined : guard.evaluateTunnel(target.host, target.port)
      if (target === undefined || verdict === undefined) return refuseTunnel(socket, 'no_match')
      if (verdict.decision._tag === 'Deny') return refuseTunnel(socket, verdict.decision.reason)
      if (verdict.decision._tag === 'Tunnel') {
        watch.tunnel(socket)
        return openTunnel(socket, head, upstreamFor(rules, target.host, target.port))
      }
      const normalised = parseHost(target.host)
      const host = E.isRight(normalised) ? normalised.right : target.host.toLowerCase()
      const known = intercepted.has(host)
      if (!admitted(host)) return refuseOverBudget(socket)
      const tunnel: Tunnel = { where: undefined }
      tunnels.set(socket, tunnel)
      tunnel.where = await pinDestination(target, true, rules)
      if (socket.destroyed) return
      // mockttp dials the CONNECT authority for what arrives in the tunnel: it is handed the pinned
      // address. Its TLS name for the upstream then comes from the Host header, which the policy
      // checks against the target before anything is injected.
      request.url = `${hostForUrl(tunnel.where.upstream.host)}:${tunnel.where.upstream.port}`
      // mockttp ignores bytes that arrived with the CONNECT; they are handed back to the socket.
      if (head.length > 0) socket.unshift(head)
      const handOver = (): void => {
        for (const listener of original) listener.call(server, request, socket, Buffer.alloc(0))
      }
      if (known) return handOver()
      // mockttp issues its own leaf for a new host, outside the CA's fair issuer: new hosts are
      // handed to it through a fair queue too, two at a time, domains in turn, each until its
      // first request arrives (its leaf and handshake done), its socket closes, or 250 ms pass (a
      // leaf takes about 5 ms; a client slow to finish its handshake must not hold the turn).
      await handOvers.run(hostGroup(host), () => new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer)
          firstRequests.delete(socket)
          resolve()
        }
        const timer = setTimeout(done, 250)
        firstRequests.set(socket, done)
        socket.once('close', done)
        if (socket.destroyed) return done()
        handOver()
      }))
    }
    decide().catch(() => (socket.destroyed ? undefined : refuseTunnel(socket, 'internal_error')))
  }

  // The destination a request is judged against: its tunnel's target, or its own absolute URI.
  const whereFor = async (request: http.IncomingMessage, tunnel: Tunnel | undefined, tls: boolean): Promise<PinnedDestination | undefined> => {
    if (tunnel !== undefined) return tunnel.where
    if (tls) return undefined // TLS straight to the proxy port, not through CONNECT: not forwarded
    const absolute = plainProxyDestination(request.url ?? '')
    return absolute === undefined ? undefined : pinDestination(absolute, false, rules)
  }

  const factsOf = (request: http.IncomingMessage, where: PinnedDestination, tls: boolean): RequestFacts =>
    requestFacts({
      tls,
      destination: where,
      target: request.url ?? '/',
      method: request.method ?? 'GET',
      hostHeader: request.headers.host,
      sni: tls ? (request.socket as TLSSocket & { servername?: string | false }).servername : undefined
    })

  type Judged = { readonly forward: true } | { readonly forward: false; readonly status: number; readonly body: string; readonly headers?: Readonly<Record<string, string>> }

  /** Requests the policy is never asked about: a bad port, or more than one Host header. */
  const malformed = (request: http.IncomingMessage, where: PinnedDestination): Judged | undefined => {
    if (!(where.target.port >= 1 && where.target.port <= 65535)) return { forward: false, status: 400, body: 'Bad request: egress-guard needs a port from 1 to 65535' }
    // HTTP/1.1 requires Host (RFC 9112 §3.2); mockttp turns Node's own check off.
    if (request.httpVersion === '1.1' && request.headers.host === undefined) return { forward: false, status: 400, body: 'Bad request: an HTTP/1.1 request needs a Host header' }
    // mockttp would forward every Host header; an upstream could route on one the policy never saw.
    if (request.rawHeaders.filter((_, i) => i % 2 === 0 && /^host$/i.test(request.rawHeaders[i] ?? '')).length > 1) {
      return { forward: false, status: 400, body: 'Bad request: more than one Host header' }
    }
    return undefined
  }

  /** Applies a verdict: on Inject and Pass, rewrites the request's headers (and target) for mockttp to forward. */
  const applyVerdict = (request: http.IncomingMessage, where: PinnedDestination, facts: RequestFacts, verdict: Verdict, tls: boolean, upgrade: boolean, tunnel: Tunnel | undefined): Judged => {
    const headers = rawHeaderObject(request)
    stripProxyHeaders(headers)
    if (verdict.decision._tag === 'Deny') return { forward: false, status: verdict.decision.status, body: verdict.decision.body }
    if (verdict.decision._tag === 'Inject') {
      if (!where.resolved) return { forward: false, status: 502, body: `Bad gateway: egress-guard could not resolve ${where.target.host}` }
      injectHeaders(headers, verdict.decision.headers)
    }
    ensureHostHeader(headers, where.target, tls)
    setHeaders(request, headers)
    // INVARIANT: mockttp sends a request exactly where, and with the scheme, the policy judged. An
    // absolute URL takes precedence over everything it would otherwise read from the socket (the
    // CONNECT authority, whether the last hop was TLS) or from the request target. Its WebSocket
    // step, though, takes the TLS name from the URL, so an upgrade keeps origin form and goes to
    // the pinned CONNECT authority; a tunnel inside a tunnel (which would make mockttp think the
    // last hop was plain) is refused, so its scheme follows the socket as judged here.
    // INVARIANT: the path forwarded is the one the policy judged (origin form, as sent).
    if (!upgrade || tunnel === undefined) request.url = `${tls ? 'https' : 'http'}://${hostForUrl(where.upstream.host)}:${where.upstream.port}${facts.path}`
    else request.url = facts.path
    return { forward: true }
  }

  /**
   * Decides one request or upgrade. A request inside a pinned tunnel whose credentials (if any) are
   * cached, nearly every one, is decided at once; the rest wait for their destination or credentials.
   */
  const judge = (request: http.IncomingMessage, upgrade: boolean): Judged | Promise<Judged> => {
    firstRequests.get(clientSocketOf(request.socket))?.()
    if (request.httpVersionMajor === 2) return { forward: false, status: 400, body: HTTP2_REFUSED }
    const tls = request.socket instanceof TLSSocket
    const tunnel = tunnels.get(clientSocketOf(request.socket))
    // A plain proxy request authenticates itself; one inside a tunnel belongs to its CONNECT's client.
    if (tunnel === undefined && required !== undefined && !authenticates(request.headers['proxy-authorization'], required)) {
      const refusal = guard.refuseUnauthenticated(plainProxyDestination(request.url ?? '')?.host ?? '')
      return { forward: false, status: refusal.status, body: refusal.body, headers: refusal.headers }
    }
    const pinned = tunnel?.where
    if (pinned !== undefined) {
      const refused = malformed(request, pinned)
      if (refused !== undefined) return refused
      const facts = factsOf(request, pinned, tls)
      const verdict = guard.evaluateNow(facts)
      if (verdict !== undefined) return applyVerdict(request, pinned, facts, verdict, tls, upgrade, tunnel)
    }
    return (async (): Promise<Judged> => {
      const where = await whereFor(request, tunnel, tls)
      if (where === undefined) return { forward: false, status: 400, body: NOT_A_PROXY_REQUEST }
      const refused = malformed(request, where)
      if (refused !== undefined) return refused
      const facts = factsOf(request, where, tls)
      return applyVerdict(request, where, facts, await guard.evaluate(facts), tls, upgrade, tunnel)
    })()
  }

  const failClosed = (request: http.IncomingMessage): Judged => {
    log('error', 'a decision failed inside the mockttp adapter; answered fail-closed')
    const verdict = guard.failClosed({ scheme: request.socket instanceof TLSSocket ? 'https' : 'http', method: request.method ?? '', path: request.url ?? '' })
    return verdict.decision._tag === 'Deny'
      ? { forward: false, status: 403, body: verdict.decision.body }
      : { forward: false, status: 502, body: 'Bad gateway: egress-guard could not forward this request' }
  }

  /** Judges a request and hands the outcome to `act`, at once when the judgement needed no wait. */
  const judged = (request: http.IncomingMessage, upgrade: boolean, act: (judged: Judged) => void, broken: () => void): void => {
    let outcome: Judged | Promise<Judged>
    try {
      outcome = judge(request, upgrade)
    } catch {
      outcome = failClosed(request)
    }
    if (outcome instanceof Promise) {
      outcome
        .catch(() => failClosed(request))
        .then(act)
        .catch(broken)
      return
    }
    try {
      act(outcome)
    } catch {
      broken()
    }
  }

  const decideRequest: Middleware = (request, response, next) => {
    watch.request(clientSocketOf(request.socket), response)
    judged(request, false, (outcome) => (outcome.forward ? next() : writeAnswer(response, outcome.status, outcome.body, outcome.headers)), () => response.destroy())
  }

  const decideUpgrade = (original: ReadonlyArray<SocketListener>, server: Server) => (request: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    // A WebSocket is in flight until it closes, however quiet it is.
    watch.request(clientSocketOf(socket), socket)
    // Only WebSocket upgrades: mockttp would splice any other (`h2c`, …) to the upstream, and every
    // request after it on that connection would go unjudged.
    if (!isWebSocketUpgrade({ method: request.method ?? '', headers: request.headers })) {
      socket.on('error', () => socket.destroy())
      socket.end(rawAnswer(400, NOT_A_WEBSOCKET_UPGRADE))
      return
    }
    judged(
      request,
      true,
      (outcome) => {
        if (outcome.forward) {
          for (const listener of original) listener.call(server, request, socket, head)
          return
        }
        socket.on('error', () => socket.destroy())
        socket.end(rawAnswer(outcome.status, outcome.body, outcome.headers))
      },
      () => socket.destroy()
    )
  }

  /** Replaces every listener of `event` with one that decides first and then calls them. */
  const wrapListeners = (server: Server, event: 'connect' | 'upgrade', wrap: typeof decideConnect): void => {
    const original = server.listeners(event) as Array<SocketListener>
    if (original.length === 0) throw new Error(`mockttp internals changed: no ${event} listener; pin mockttp 4.6.5`)
    for (const listener of original) server.removeListener(event, listener as never)
    server.on(event, wrap(original, server))
  }

  // mockttp creates its server inside start() and then calls `listen(port)` with no host, which
  // listens on every interface. The server is caught as it is assigned: its listen is bound to
  // our host, and its CONNECT listener wrapped, before it accepts a single connection.
  let server: Server | undefined
  Object.defineProperty(mock, 'server', {
    configurable: true,
    enumerable: true,
    get: () => server,
    set: (value: Server | undefined) => {
      server = value
      if (value === undefined) return
      const listen = value.listen.bind(value) as (options: { port: number; host: string }) => Server
      value.listen = ((port: number) => listen({ port, host: listenHost })) as typeof value.listen
      wrapListeners(value, 'connect', decideConnect)
      // httpolyglot hands its listeners to the servers inside it too: only raw client sockets count.
      value.on('connection', (socket: Duplex) => socket instanceof TLSSocket || watch.accepted(clientSocketOf(socket)))
    }
  })
  internals.app.stack.unshift({ route: '', handle: decideRequest })

  const extraCa = options.upstreamCa ?? []
  // Extra CAs go in one secure context built here, handed to mockttp through its per-host client
  // certificate options ('*': every host), which it spreads into each upstream TLS connection. As
  // `additionalTrustedCAs` they would reach Node as a `ca` list of every root certificate: Node
  // joins that list into each request's agent key (measured: 40% of the proxy's CPU).
  const trust = extraCa.length === 0 ? {} : { clientCertificateHostMap: { '*': { secureContext: createSecureContext({ ca: [...rootCertificates, ...extraCa] }) } } }
  await mock.forAnyRequest().thenPassThrough(trust as never)
  // An upstream that refuses, resets or fails TLS verification: mockttp would answer with its own
  // error text (which names the internal address it dialled), or append that text to a body
  // already under way. Instead the client gets our 502 before any response, or a cut connection
  // after one began, at once.
  const passthrough = Object.values(internals.requestRuleSets ?? {}).flat()
  if (passthrough.length !== 1 || typeof passthrough[0]?.handle !== 'function') throw new Error('mockttp internals changed: no passthrough rule to guard; pin mockttp 4.6.5')
  for (const rule of passthrough) {
    const handle = rule.handle.bind(rule)
    const outgoing = rule.steps?.[0]?.outgoingSockets
    if (!(outgoing instanceof Set)) throw new Error('mockttp internals changed: no upstream socket set on the passthrough step; pin mockttp 4.6.5')
    rule.handle = (request, response, ruleOptions) => {
      // mockttp runs its loop check synchronously, as the call starts: sockets it would wrongly
      // take for this request's other end are out of its set for that moment only (see loopCheck).
      const spared = falseLoopMatches(outgoing, request.socket)
      for (const socket of spared) outgoing.delete(socket)
      let handled: Promise<void>
      try {
        handled = handle(request, response, ruleOptions)
      } finally {
        for (const socket of spared) if (!socket.destroyed) outgoing.add(socket)
      }
      return handled.catch((error: unknown) => {
        const code = upstreamErrorCode(error)
        log('warn', `upstream request failed: ${code}`)
        if (response.headersSent) response.destroy()
        else writeAnswer(response, 502, upstreamFailureBody(code))
      })
    }
  }
  await mock.forAnyWebSocket().thenPassThrough({ additionalTrustedCAs: extraCa.map((cert) => ({ cert })) } as never)
  await mock.start(options.port ?? 0)
  if (server === undefined) throw new Error('mockttp internals changed: no server was assigned; pin mockttp 4.6.5')
  wrapListeners(server, 'upgrade', decideUpgrade)
  const address = server.address()
  if (address === null || typeof address === 'string' || address.address !== listenHost) {
    await mock.stop()
    throw new Error(`mockttp did not listen on ${listenHost} only; refusing to run`)
  }
  return {
    url: `http://${hostForUrl(listenHost)}:${address.port}`,
    port: address.port,
    caCertPath: ca.certPath,
    caCertPem: ca.certPem,
    accept: (socket) => {
      server?.emit('connection', socket)
    },
    recordedRequests: async () => {
      const endpoints = await mock.getMockedEndpoints()
      const seen = await Promise.all(endpoints.map((endpoint) => endpoint.getSeenRequests()))
      return seen.reduce((n, requests) => n + requests.length, 0)
    },
    close: async () => {
      // A failure to stop mockttp is said, never thrown: the caller still flushes its audit records.
      await mock.stop().catch((error: unknown) => log('warn', `mockttp did not stop cleanly (${error instanceof Error ? error.message : 'error'})`))
      watch.close() // what mockttp no longer counts as its own (CONNECT sockets before their first byte)
    }
  }
}
