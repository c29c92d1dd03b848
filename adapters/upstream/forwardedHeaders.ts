import type { IncomingHttpHeaders } from 'node:http'

import { hostForUrl } from './connectTo.js'

/** One header value as text: repeated values joined with `, `. */
export const headerText = (value: string | ReadonlyArray<string> | undefined): string | undefined =>
  value === undefined ? undefined : Array.isArray(value) ? value.join(', ') : (value as string)

/**
 * Sets the credential headers, replacing any header of the same name (in any case) the client sent.
 * A `Connection` header loses every token that names one of them (`Connection: authorization`
 * would have the next hop drop the key as hop-by-hop), and goes when none is left.
 */
export const injectHeaders = (headers: Record<string, unknown>, credentials: Readonly<Record<string, string>>): void => {
  const names = new Set(Object.keys(credentials).map((n) => n.toLowerCase()))
  for (const name of Object.keys(headers)) {
    const lower = name.toLowerCase()
    if (names.has(lower)) delete headers[name]
    else if (lower === 'connection') {
      // INVARIANT: an injected credential is never listed as hop-by-hop, so no hop may strip or mark it.
      const kept = (Array.isArray(headers[name]) ? (headers[name] as ReadonlyArray<unknown>) : [headers[name]])
        .flatMap((value) => String(value).split(','))
        .map((token) => token.trim())
        .filter((token) => token !== '' && !names.has(token.toLowerCase()))
      if (kept.length === 0) delete headers[name]
      else headers[name] = kept.join(', ')
    }
  }
  Object.assign(headers, credentials)
}

/** The Host header naming a destination: its name, with the port unless it is the scheme's default. */
export const hostHeaderFor = (target: { readonly host: string; readonly port: number }, tls: boolean): string =>
  target.port === (tls ? 443 : 80) ? hostForUrl(target.host) : `${hostForUrl(target.host)}:${target.port}`

/** Removes every `Proxy-*` header: they are meant for this proxy, never for the upstream. */
export const stripProxyHeaders = (headers: Record<string, unknown>): void => {
  for (const name of Object.keys(headers)) if (/^proxy-/i.test(name)) delete headers[name]
}

/** The answer (400) to a request outside a tunnel that is not a proxy request: no engine forwards it. */
export const NOT_A_PROXY_REQUEST = 'Bad request: egress-guard forwards proxy requests only (CONNECT, or an absolute http:// URI)'

/** Headers that belong to one hop only (RFC 9110 §7.6.1; `expect` is answered here), never forwarded as they are; `host` is set below. */
const NOT_FORWARDED = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'upgrade', 'http2-settings', 'expect', 'host'])

/**
 * The headers a request is forwarded with: the client's, less HTTP/2 pseudo-headers, `Proxy-*`,
 * hop-by-hop headers and every header its `Connection` names; `te: trailers` (gRPC) and, for an
 * upgrade, `Connection: Upgrade` with its `Upgrade` kept; `Host` from the client (`:authority` on
 * HTTP/2) or else the judged destination; then the credentials, replacing any header of the same
 * name. INVARIANT: an injected credential is set last, so nothing the client sent can remove it.
 */
export const forwardedHeaders = (
  request: { readonly headers: IncomingHttpHeaders; readonly upgrade?: boolean | undefined; readonly tls: boolean },
  target: { readonly host: string; readonly port: number },
  credentials: Readonly<Record<string, string>>
): Record<string, string | string[]> => {
  const { headers } = request
  const named = new Set(
    (headerText(headers['connection']) ?? '')
      .split(',')
      .map((token) => token.trim().toLowerCase())
      .filter((token) => token !== '')
  )
  const out: Record<string, string | string[]> = {}
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || name.startsWith(':') || name.startsWith('proxy-') || NOT_FORWARDED.has(name) || named.has(name)) continue
    out[name] = value
  }
  const te = headerText(headers['te'])
  if (te !== undefined && /(?:^|,)\s*trailers\s*(?:,|;|$)/i.test(te)) out['te'] = 'trailers'
  if (request.upgrade === true && headers['upgrade'] !== undefined) {
    out['connection'] = 'Upgrade'
    out['upgrade'] = headers['upgrade']
  }
  out['host'] = headerText(headers['host']) ?? headerText(headers[':authority']) ?? hostHeaderFor(target, request.tls)
  for (const [name, value] of Object.entries(credentials)) out[name.toLowerCase()] = value
  return out
}

/** The answer (400) to an upgrade that is not a WebSocket handshake: no engine splices one. */
export const NOT_A_WEBSOCKET_UPGRADE = 'Bad request: egress-guard forwards only WebSocket upgrades (a GET with `Upgrade: websocket`)'

/** A WebSocket opening handshake: a GET asking to upgrade to `websocket` (RFC 6455 §4.1), and nothing else. */
export const isWebSocketUpgrade = (request: { readonly method: string; readonly headers: IncomingHttpHeaders }): boolean =>
  request.method === 'GET' && (headerText(request.headers['upgrade']) ?? '').trim().toLowerCase() === 'websocket'
