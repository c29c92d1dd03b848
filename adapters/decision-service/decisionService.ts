import { timingSafeEqual } from 'node:crypto'
import http from 'node:http'
import type { AddressInfo } from 'node:net'

import * as E from 'fp-ts/lib/Either.js'

import type { RequestFacts } from '../../core/index.js'
import type { Guard } from '../guard/createGuard.js'
import { decideFacts } from '../proxy/pipeline.js'
import { parseTarget } from '../proxy/requestFacts.js'
import { decodeFacts, decodeTunnel } from './codecs.js'

/** How to run the decision service. */
export interface DecisionServiceOptions {
  readonly guard: Guard
  /** Listen address; loopback by default. It speaks plain HTTP and hands out credentials: put TLS in front of any other. */
  readonly host?: string
  readonly port?: number
  /**
   * Every call needs `Authorization: Bearer <token>` or `X-Egress-Guard-Token: <token>`: the
   * service hands out credentials, so it never answers an anonymous caller.
   */
  readonly token: string
}

/** A running decision service. */
export interface RunningDecisionService {
  readonly url: string
  readonly port: number
  readonly close: () => Promise<void>
}

const MAX_BODY = 64 * 1024
const NGINX_HEADER_PREFIX = 'x-egress-guard-header-'

const header = (request: http.IncomingMessage, name: string): string | undefined => {
  const value = request.headers[name]
  return Array.isArray(value) ? value.join(', ') : value
}

const send = (response: http.ServerResponse, status: number, body: string | object, headers: Record<string, string> = {}): void => {
  const text = typeof body === 'string' ? body : JSON.stringify(body)
  response.writeHead(status, {
    'content-type': typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json',
    'content-length': String(Buffer.byteLength(text)),
    'cache-control': 'no-store',
    ...headers
  })
  response.end(text)
}

/**
 * Reads a body of at most MAX_BODY bytes; undefined beyond that. The rest of an oversized body is
 * read and dropped (up to 16 times the bound) rather than cut off, so the caller receives the 413:
 * closing a socket with unread data resets it, and the answer is lost.
 */
const readBody = (request: http.IncomingMessage): Promise<string | undefined> =>
  new Promise((resolve) => {
    let size = 0
    let chunks: Array<Buffer> | undefined = []
    request.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size <= MAX_BODY) chunks?.push(chunk)
      else if (size > MAX_BODY * 16) request.destroy()
      else if (chunks !== undefined) {
        chunks = undefined
        resolve(undefined)
      }
    })
    request.on('end', () => resolve(chunks === undefined ? undefined : Buffer.concat(chunks).toString('utf8')))
    request.on('error', () => resolve(undefined))
  })

const tokenMatches = (expected: string, request: http.IncomingMessage): boolean => {
  const bearer = /^Bearer (.+)$/.exec(header(request, 'authorization') ?? '')?.[1]
  const given = header(request, 'x-egress-guard-token') ?? bearer ?? ''
  const a = Buffer.from(given)
  const b = Buffer.from(expected)
  return a.length === b.length && timingSafeEqual(a, b)
}

// Gateways tell the service the upstream they will call; without a declared https upstream the
// request counts as plain http, which never receives credentials (fail closed). The host is never
// taken from the check request's own Host: that is the client's, and the client would choose
// whose credentials the gateway sends to the upstream it routes to.
const gatewayFacts = (request: http.IncomingMessage, path: string, prefix: 'x-original-' | 'x-egress-guard-upstream-'): E.Either<string, RequestFacts> => {
  const host = header(request, `${prefix}host`)
  if (host === undefined || host === '') return E.left(`missing ${prefix}host header: set it to the upstream host in the gateway configuration`)
  const scheme = header(request, `${prefix}scheme`) ?? 'http'
  const port = Number(header(request, `${prefix}port`) ?? (scheme === 'https' ? 443 : 80))
  const method = (prefix === 'x-original-' ? header(request, 'x-original-method') : request.method) ?? 'GET'
  // The target is read as every engine reads it (an absolute-form one by WHATWG; see requestFacts.ts).
  const target = parseTarget(path)
  return E.right({ scheme, host: host.replace(/:\d+$/, ''), port, path: target.path, method, ...(target.absoluteUriHost === undefined ? {} : { absoluteUriHost: target.absoluteUriHost }) })
}

/**
 * Starts the decision service: "what should happen to this request?" for proxies that are not
 * Node. JSON (`/v1/decide`, `/v1/tunnel`), nginx `auth_request` (`/v1/nginx`) and Envoy `ext_authz`
 * (`/v1/envoy/…`). Credentials are returned only in an Inject decision, which the core makes only
 * for a matched request.
 */
export const startDecisionService = async (options: DecisionServiceOptions): Promise<RunningDecisionService> => {
  const { guard } = options
  if (options.token.length < 16) throw new Error('the decision service needs a token of at least 16 characters')
  const server = http.createServer((request, response) => {
    void handle(request, response).catch(() => {
      if (!response.headersSent) send(response, 500, { error: 'the decision service failed; the caller should deny' })
    })
  })

  // The caller authenticated the client it names (docs/spec.md §9); a name the policy does not list is an error, never a guess.
  const knownClient = (client: string | undefined): boolean => client === undefined || guard.clients().includes(client)
  const unknownClient = (response: http.ServerResponse, client: string): void =>
    send(response, 400, { error: 'unknown client', details: [`client: the policy lists no client \`${client.slice(0, 64)}\`; name one of its clients`] })

  const handle = async (request: http.IncomingMessage, response: http.ServerResponse): Promise<void> => {
    const url = new URL(request.url ?? '/', 'http://decision-service')
    if (url.pathname === '/healthz') return send(response, 200, { mode: guard.mode() })
    if (!tokenMatches(options.token, request)) {
      return send(response, 401, { error: 'missing or wrong token: send Authorization: Bearer <token> or X-Egress-Guard-Token' }, { 'www-authenticate': 'Bearer' })
    }
    if (url.pathname === '/v1/decide' || url.pathname === '/v1/tunnel') {
      if (request.method !== 'POST') return send(response, 405, { error: `use POST for ${url.pathname}` }, { allow: 'POST' })
      const body = await readBody(request)
      if (body === undefined) return send(response, 413, { error: `the body must be JSON of at most ${MAX_BODY} bytes` }, { connection: 'close' })
      let json: unknown
      try {
        json = JSON.parse(body)
      } catch {
        return send(response, 400, { error: 'the body is not JSON', details: [] })
      }
      if (url.pathname === '/v1/tunnel') {
        const query = decodeTunnel(json)
        if (E.isLeft(query)) return send(response, 400, { error: 'malformed tunnel query', details: query.left })
        if (!knownClient(query.right.client)) return unknownClient(response, query.right.client ?? '')
        const verdict = guard.evaluateTunnel(query.right.host, query.right.port, query.right.client)
        return send(response, 200, { decision: verdict.decision, audit: verdict.audit, decisionId: verdict.decisionId })
      }
      const facts = decodeFacts(json)
      if (E.isLeft(facts)) return send(response, 400, { error: 'malformed request facts', details: facts.left })
      if (!knownClient(facts.right.client)) return unknownClient(response, facts.right.client ?? '')
      const verdict = await guard.evaluate(facts.right)
      return send(response, 200, { decision: verdict.decision, audit: verdict.audit, decisionId: verdict.decisionId })
    }
    if (url.pathname === '/v1/nginx') {
      const facts = gatewayFacts(request, header(request, 'x-original-uri') ?? '/', 'x-original-')
      if (E.isLeft(facts)) return send(response, 400, facts.left)
      const step = await decideFacts(guard, facts.right, header(request, 'accept'))
      // nginx cannot forward an auth subrequest's body: a refusal's body and type travel in headers too.
      if (step._tag === 'Answer') {
        const type = step.headers['content-type'] ?? 'text/plain; charset=utf-8'
        // auth_request passes on only 401 and 403 (any other status is nginx's 500): a rate limit's
        // 429 is answered 403, its reason `rate_limited`, its Retry-After in X-Egress-Guard-Retry-After.
        const limited = step.headers['Retry-After'] === undefined ? {} : { 'x-egress-guard-retry-after': step.headers['Retry-After'] }
        return send(response, step.status === 429 ? 403 : step.status, step.body, { ...step.headers, ...limited, 'x-egress-guard-decision': 'deny', 'x-egress-guard-body': step.body.replace(/[^\x20-\x7e]/g, '?'), 'x-egress-guard-body-type': type })
      }
      const headers = Object.fromEntries(Object.entries(step.credentials).map(([k, v]) => [`${NGINX_HEADER_PREFIX}${k.toLowerCase()}`, v]))
      return send(response, 200, '', { 'x-egress-guard-decision': step.verdict.decision._tag === 'Inject' ? 'inject' : 'pass', ...headers })
    }
    if (url.pathname === '/v1/envoy' || url.pathname.startsWith('/v1/envoy/')) {
      // The raw target, as Envoy forwards it: URL parsing would resolve `..` and turn `\` into `/`.
      const raw = request.url ?? '/'
      const path = raw.startsWith('/v1/envoy') ? raw.slice('/v1/envoy'.length) || '/' : '/'
      const facts = gatewayFacts(request, path, 'x-egress-guard-upstream-')
      if (E.isLeft(facts)) return send(response, 403, `Forbidden: ${facts.left}`, { 'x-egress-guard-reason': 'no_match' })
      // Envoy hands a denial's status, headers and body to the client as they are.
      const step = await decideFacts(guard, facts.right, header(request, 'accept'))
      if (step._tag === 'Answer') return send(response, step.status, step.body, step.headers)
      return send(response, 200, '', { ...step.credentials })
    }
    return send(response, 404, { error: `no endpoint ${url.pathname}: use /v1/decide, /v1/tunnel, /v1/nginx, /v1/envoy/<path> or /healthz` })
  }

  await new Promise<void>((resolve) => server.listen(options.port ?? 0, options.host ?? '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://${options.host ?? '127.0.0.1'}:${port}`,
    port,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}
