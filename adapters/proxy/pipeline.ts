import type { IncomingHttpHeaders } from 'node:http'

import * as E from 'fp-ts/lib/Either.js'

import { denyBody } from '../../core/Decision.js'
import { parseHost, type ProxyCredentials, type RequestFacts } from '../../core/index.js'
import { ANONYMOUS, REFUSED, type Authentication, type Guard, type Verdict } from '../guard/createGuard.js'
import { upstreamFor, type ConnectTo, type Upstream } from '../upstream/connectTo.js'
import { forwardedHeaders, headerText, isWebSocketUpgrade, NOT_A_PROXY_REQUEST, NOT_A_WEBSOCKET_UPGRADE } from '../upstream/forwardedHeaders.js'
import { pinDestination, type PinnedDestination } from '../upstream/pinnedDestination.js'
import { connectTarget, type ConnectTarget } from '../upstream/tunnel.js'
import { authenticates } from './proxyAuthentication.js'
import { bodyTripwire, type BodyTripwire } from './bodyTripwire.js'
import { carriedTexts, injectedHeaders } from './requestSecrets.js'
import { rawAnswer } from './rawAnswer.js'
import { plainProxyDestination, requestFacts } from './requestFacts.js'

// The request pipeline every transport translates into: what to do with a CONNECT, and with each
// request (inside a tunnel or as an absolute `http://` URI), as plain values. An engine reads its
// library's events into these descriptions and carries out the step it gets back; the policy,
// proxy authentication, destination pinning, header rewriting and the failure policy live here.

/** What to do with a CONNECT. */
export type ConnectStep =
  /** Write these raw bytes (a whole HTTP answer) and close: the tunnel is never opened. */
  | { readonly _tag: 'Refuse'; readonly answer: string }
  /** Splice the client to this upstream untouched. */
  | { readonly _tag: 'Tunnel'; readonly upstream: Upstream }
  /** Terminate TLS for this target (host normalised) and judge each request inside. */
  | InterceptStep

/** Terminate TLS for a CONNECT's target and judge each request inside, as the client that opened it. */
export interface InterceptStep {
  readonly _tag: 'Intercept'
  readonly target: ConnectTarget
  /** The client that opened the tunnel (docs/spec.md §9); its requests are that client's. Undefined when the policy lists none. */
  readonly client: string | undefined
  /** The `Proxy-Authorization` the CONNECT carried, checked again after a policy change. */
  readonly proxyAuthorization: string | ReadonlyArray<string> | undefined
}

/** A request as a transport received it, before any rewriting. */
export interface IncomingRequest {
  /** The hop from the client was TLS: the request came inside an intercepted tunnel. */
  readonly tls: boolean
  /** The request target exactly as sent (`:path` for HTTP/2). */
  readonly target: string
  readonly method: string
  /** Header names in lower case, as Node gives them (HTTP/2 pseudo-headers included). */
  readonly headers: IncomingHttpHeaders
  /** The TLS server name the client sent, if any. */
  readonly sni?: string | false | undefined
  /** A WebSocket (or other) upgrade: its `Connection`/`Upgrade` headers are kept. */
  readonly upgrade?: boolean
}

/** An answer egress-guard gives itself. */
export interface Answer {
  readonly _tag: 'Answer'
  readonly status: number
  readonly headers: Readonly<Record<string, string>>
  readonly body: string
}

/** Send the request to `where`, with this origin-form path and exactly these headers. */
export interface Forward {
  readonly _tag: 'Forward'
  readonly where: PinnedDestination
  readonly method: string
  readonly path: string
  readonly headers: Record<string, string | string[]>
  readonly verdict: Verdict
  /** The tripwire its body goes through (gateBody), when the guard knows secrets (docs/spec.md §13). */
  readonly body: BodyTripwire | undefined
}

/** What to do with one request. */
export type RequestStep = Answer | Forward

/** Send the request as it is, with these credential headers set (replacing any of the same name): for a caller that sends it itself. */
export interface Send {
  readonly _tag: 'Send'
  readonly credentials: Readonly<Record<string, string>>
  readonly verdict: Verdict
}

/** A tunnel's pinned destination (settled, or still being resolved), and the client that opened it. */
export interface TunnelPin {
  readonly settled: PinnedDestination | undefined
  readonly pending: Promise<PinnedDestination>
  readonly client: string | undefined
  readonly proxyAuthorization: string | ReadonlyArray<string> | undefined
  /** The guard's generation the client was last authenticated in. */
  readonly generation: number
}

/** What the pipeline is built from. */
export interface PipelineOptions {
  readonly guard: Guard
  readonly connectTo: ReadonlyArray<ConnectTo>
  /** `run`'s private credentials: when given, they alone authenticate, and requests have no client; otherwise the guard's clients do (docs/spec.md §9). */
  readonly proxyAuthentication: ProxyCredentials | undefined
  /** Whether a new intercepted host may be admitted now (the new-host budget); known hosts always are. */
  readonly admitHost: (host: string) => boolean
}

/** The steps of the request pipeline. */
export interface Pipeline {
  readonly connect: (authority: string | undefined, proxyAuthorization: string | ReadonlyArray<string> | undefined) => ConnectStep
  /** Starts pinning an intercepted tunnel's destination (see pinDestination). */
  readonly pin: (intercept: InterceptStep) => TunnelPin
  /**
   * Decides a request inside a tunnel (`tunnel` given) or on the proxy port. Never rejects: a
   * failure is decided by the failure policy (deny modes 403 `internal_error`, allow modes 502).
   */
  readonly request: (request: IncomingRequest, tunnel: TunnelPin | undefined) => RequestStep | Promise<RequestStep>
  /** The failure policy's answer, for an engine that failed to carry out a step. */
  readonly failure: (request: IncomingRequest) => Answer
}

/** A request's `Accept` header, which picks a refusal's form. */
type Accept = string | ReadonlyArray<string> | undefined

/** An answer with egress-guard's plain-text body. */
export const answer = (status: number, body: string, headers: Readonly<Record<string, string>> = {}): Answer => ({ _tag: 'Answer', status, headers, body })

/**
 * A refusal by policy (403, 407, 429): it names its reason in `X-Egress-Guard-Reason`, and a client
 * that accepts JSON gets `{"error": "egress_guard_denied", "reason", "message"}` (the text body as
 * the message) instead of the text (docs/spec.md §14).
 */
export const refusal = (status: number, reason: string, body: string, accept: Accept, headers: Readonly<Record<string, string>> = {}): Answer => {
  const named = { ...headers, 'X-Egress-Guard-Reason': reason }
  return /\bapplication\/json\b/i.test(headerText(accept) ?? '')
    ? answer(status, JSON.stringify({ error: 'egress_guard_denied', reason, message: body }), { ...named, 'content-type': 'application/json; charset=utf-8' })
    : answer(status, body, named)
}

/** A rate limit's `Retry-After` (docs/spec.md §14), when the refusal has one. */
const retryAfter = (seconds: number | undefined): Readonly<Record<string, string>> => (seconds === undefined ? {} : { 'Retry-After': String(seconds) })

/** A verdict carried out: the policy's refusal (403 with its reason), or send with the verdict's credentials. */
const applyVerdict = (verdict: Verdict, accept: Accept): Answer | Send => {
  const { decision } = verdict
  if (decision._tag === 'Deny') return refusal(decision.status, decision.reason, decision.body, accept, retryAfter(decision.retryAfterSeconds))
  return { _tag: 'Send', credentials: decision._tag === 'Inject' ? decision.headers : {}, verdict }
}

/** The failure policy, for a request that could not be decided: deny modes refuse (403 `internal_error`), allow modes answer 502; the guard records it either way. */
const failureAnswer = (guard: Guard, request: Partial<RequestFacts>, accept: Accept): Answer => {
  const verdict = guard.failClosed(request)
  return verdict.decision._tag === 'Deny'
    ? refusal(403, verdict.decision.reason, verdict.decision.body, accept)
    : answer(502, 'Bad gateway: egress-guard could not forward this request')
}

/**
 * Decides a request its caller sends itself, to the destination its facts name (the in-process
 * undici dispatcher; a gateway asking the decision service): a refusal, the failure policy's
 * answer, or Send. `facts` undefined is a request the caller could not read. Never rejects.
 */
export const decideFacts = async (guard: Guard, facts: RequestFacts | undefined, accept: Accept, unread: Partial<RequestFacts> = {}): Promise<Answer | Send> => {
  if (facts === undefined) return failureAnswer(guard, unread, accept)
  try {
    return applyVerdict(await guard.evaluate(facts), accept)
  } catch {
    return failureAnswer(guard, facts, accept)
  }
}

/** Builds the pipeline for one proxy. */
export const createPipeline = (options: PipelineOptions): Pipeline => {
  const { guard, connectTo, proxyAuthentication } = options

  // A refused CONNECT gets a status line and the deny body, then the socket closes. docs/spec.md §5 says
  // "close without a response", but undici's ProxyAgent (7.30) retries a silently closed CONNECT
  // without end (4,746 attempts in 2 s here), spinning the client and flooding the audit log.
  const refuse = (status: number, reasonBody: string, headers: Readonly<Record<string, string>> = {}): ConnectStep => ({ _tag: 'Refuse', answer: rawAnswer(status, reasonBody, headers) })

  // Who a request or CONNECT is: run's private credentials when given, else the guard's clients.
  const identify = (proxyAuthorization: string | ReadonlyArray<string> | undefined): Authentication => {
    if (proxyAuthentication === undefined) return guard.authenticate(proxyAuthorization)
    return authenticates(proxyAuthorization, proxyAuthentication) ? ANONYMOUS : REFUSED
  }

  const connect: Pipeline['connect'] = (authority, proxyAuthorization) => {
    const target = connectTarget(authority)
    const who = identify(proxyAuthorization)
    if (who._tag === 'Refused') {
      const unauthenticated = guard.refuseUnauthenticated(target?.host ?? '')
      return refuse(unauthenticated.status, unauthenticated.body, unauthenticated.headers)
    }
    const client = who._tag === 'Client' ? who.name : undefined
    try {
      const verdict = target === undefined ? undefined : guard.evaluateTunnel(target.host, target.port, client)
      if (target === undefined || verdict === undefined) return refuse(403, denyBody('no_match', null), { 'X-Egress-Guard-Reason': 'no_match' })
      switch (verdict.decision._tag) {
        case 'Deny':
          return refuse(verdict.decision.reason === 'rate_limited' ? 429 : 403, denyBody(verdict.decision.reason, null), { 'X-Egress-Guard-Reason': verdict.decision.reason, ...retryAfter(verdict.decision.retryAfterSeconds) })
        case 'Tunnel':
          return { _tag: 'Tunnel', upstream: upstreamFor(connectTo, target.host, target.port) }
        case 'Intercept': {
          const normalised = parseHost(target.host)
          const host = E.isRight(normalised) ? normalised.right : target.host.toLowerCase()
          if (!options.admitHost(host)) return refuse(503, 'Service unavailable: too many new hosts under this domain at once; retry shortly', { 'Retry-After': '1' })
          return { _tag: 'Intercept', target: { host, port: target.port }, client, proxyAuthorization }
        }
      }
    } catch {
      // An adapter failure never tunnels or intercepts.
      return refuse(403, denyBody('internal_error', null), { 'X-Egress-Guard-Reason': 'internal_error' })
    }
  }

  const pin: Pipeline['pin'] = (intercept) => {
    const state: { -readonly [K in keyof TunnelPin]: TunnelPin[K] } = {
      settled: undefined,
      pending: pinDestination(intercept.target, true, connectTo),
      client: intercept.client,
      proxyAuthorization: intercept.proxyAuthorization,
      generation: guard.generation()
    }
    state.pending.then(
      (where) => {
        state.settled = where
      },
      () => undefined
    )
    return state
  }

  const failClosed = (request: IncomingRequest, host: string | undefined, client: string | undefined): Answer =>
    failureAnswer(guard, { scheme: request.tls ? 'https' : 'http', host: host ?? '', method: request.method, path: request.target, ...(client === undefined ? {} : { client }) }, request.headers['accept'])

  // After a policy change, a tunnel's client is authenticated again with what its CONNECT carried:
  // a revoked or changed token, or clients where there were none, ends what the tunnel may do.
  const stillAuthenticated = (tunnel: TunnelPin): boolean => {
    const now = guard.generation()
    if (tunnel.generation === now) return true
    const who = identify(tunnel.proxyAuthorization)
    if (who._tag === 'Refused' || (who._tag === 'Client' ? who.name : undefined) !== tunnel.client) return false
    ;(tunnel as { generation: number }).generation = now
    return true
  }

  const unauthenticated = (incoming: IncomingRequest, host: string): Answer => {
    const refused = guard.refuseUnauthenticated(host)
    return refusal(refused.status, refused.reason, refused.body, incoming.headers['accept'], refused.headers)
  }

  const apply = (request: IncomingRequest, where: PinnedDestination, facts: RequestFacts, verdict: Verdict): RequestStep => {
    const step = applyVerdict(verdict, request.headers['accept'])
    if (step._tag === 'Answer') return step
    // INVARIANT: credentials go only to an address the policy saw (or the operator chose).
    if (verdict.decision._tag === 'Inject' && !where.resolved) return answer(502, `Bad gateway: egress-guard could not resolve ${where.target.host}`)
    const headers = forwardedHeaders(request, where.target, step.credentials)
    const body = verdict.body === undefined ? undefined : bodyTripwire(verdict.body, (stopped) => applyVerdict(stopped, request.headers['accept']))
    return { _tag: 'Forward', where, method: request.method, path: facts.path, headers: verdict.secrets === undefined ? headers : injectedHeaders(headers, verdict.secrets), verdict, body }
  }

  const factsOf = (request: IncomingRequest, where: PinnedDestination, client: string | undefined): RequestFacts =>
    requestFacts({
      tls: request.tls,
      destination: where,
      target: request.target,
      method: request.method,
      hostHeader: request.headers['host'] ?? request.headers[':authority'],
      sni: request.sni,
      client
    })

  // What the tripwire searches (docs/spec.md §13), when the guard knows a secret: the request's
  // method, headers (names and values), path and query (its body is searched as it streams, see
  // bodyTripwire.ts).
  const carried = (request: IncomingRequest) => (guard.inspects() ? carriedTexts(request.headers, request.target, request.method) : undefined)

  const judge = async (request: IncomingRequest, pending: Promise<PinnedDestination>, client: string | undefined): Promise<RequestStep> => {
    const where = await pending
    const facts = factsOf(request, where, client)
    return apply(request, where, facts, await guard.evaluate(facts, carried(request)))
  }

  // Only WebSocket upgrades are forwarded: after any other (`h2c`, …) the connection would be
  // spliced, and every request on it would reach the upstream without a decision.
  const notWebSocket = (incoming: IncomingRequest): boolean => incoming.upgrade === true && !isWebSocketUpgrade(incoming)

  const request: Pipeline['request'] = (incoming, tunnel) => {
    try {
      if (tunnel !== undefined) {
        if (notWebSocket(incoming)) return answer(400, NOT_A_WEBSOCKET_UPGRADE)
        if (!stillAuthenticated(tunnel)) return unauthenticated(incoming, tunnel.settled?.target.host ?? '')
        const where = tunnel.settled
        // Most requests are decided in this same turn: their tunnel is pinned, their credentials cached.
        if (where !== undefined) {
          const facts = factsOf(incoming, where, tunnel.client)
          const verdict = guard.evaluateNow(facts, carried(incoming))
          if (verdict !== undefined) return apply(incoming, where, facts, verdict)
        }
        return judge(incoming, tunnel.pending, tunnel.client).catch(() => failClosed(incoming, where?.target.host, tunnel.client))
      }
      // On the proxy port: a proxy request (an absolute http:// URI) that authenticates, to the
      // host and port WHATWG reads in it. Anything else would be sent wherever its Host header says.
      const who = identify(incoming.headers['proxy-authorization'])
      if (who._tag === 'Refused') return unauthenticated(incoming, plainProxyDestination(incoming.target)?.host ?? '')
      const client = who._tag === 'Client' ? who.name : undefined
      if (notWebSocket(incoming)) return answer(400, NOT_A_WEBSOCKET_UPGRADE)
      const plain = incoming.upgrade === true ? undefined : plainProxyDestination(incoming.target)
      if (plain === undefined) return answer(400, NOT_A_PROXY_REQUEST)
      if (!(Number.isInteger(plain.port) && plain.port >= 1 && plain.port <= 65535)) return answer(400, 'Bad request: egress-guard needs a port from 1 to 65535')
      // A name that carries a secret is refused before it is looked up (a DNS query would carry it out).
      const screened = guard.screenHost(plain.host, plain.port, incoming.method, client)
      if (screened !== undefined) return applyVerdict(screened, incoming.headers['accept']) as Answer
      return judge(incoming, pinDestination(plain, false, connectTo), client).catch(() => failClosed(incoming, plain.host, client))
    } catch {
      return failClosed(incoming, tunnel?.settled?.target.host, tunnel?.client)
    }
  }

  return { connect, pin, request, failure: (incoming) => failClosed(incoming, undefined, undefined) }
}
