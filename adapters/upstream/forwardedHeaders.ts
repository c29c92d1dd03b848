import { hostForUrl } from './connectTo.js'

/** One header value as text: repeated values joined with `, `. */
export const headerText = (value: string | ReadonlyArray<string> | undefined): string | undefined =>
  value === undefined ? undefined : Array.isArray(value) ? value.join(', ') : (value as string)

/**
 * Sets the credential headers, replacing any header of the same name (in any case) the client sent.
 * A `Connection` header that names one of them (`Connection: authorization`, which would make the
 * next hop drop it as hop-by-hop) is not forwarded at all.
 */
export const injectHeaders = (headers: Record<string, unknown>, credentials: Readonly<Record<string, string>>): void => {
  const names = new Set(Object.keys(credentials).map((n) => n.toLowerCase()))
  for (const name of Object.keys(headers)) {
    const lower = name.toLowerCase()
    if (names.has(lower)) delete headers[name]
    else if (lower === 'connection' && namesAny(headers[name], names)) delete headers[name]
  }
  Object.assign(headers, credentials)
}

// INVARIANT: an injected credential is never listed as hop-by-hop, so no hop may strip or mark it.
const namesAny = (connection: unknown, names: ReadonlySet<string>): boolean =>
  (Array.isArray(connection) ? connection : [connection]).some((value) =>
    String(value)
      .split(',')
      .some((token) => names.has(token.trim().toLowerCase()))
  )

/** The Host header naming a destination: its name, with the port unless it is the scheme's default. */
export const hostHeaderFor = (target: { readonly host: string; readonly port: number }, tls: boolean): string =>
  target.port === (tls ? 443 : 80) ? hostForUrl(target.host) : `${hostForUrl(target.host)}:${target.port}`

/**
 * Adds a Host header naming the judged destination when the client sent none (HTTP/1.0 allows
 * that): otherwise the upstream would be told the address the proxy dials.
 */
export const ensureHostHeader = (headers: Record<string, unknown>, target: { readonly host: string; readonly port: number }, tls: boolean): void => {
  for (const name of Object.keys(headers)) if (name.toLowerCase() === 'host') return
  headers['host'] = hostHeaderFor(target, tls)
}

/** Removes every `Proxy-*` header: they are meant for this proxy, never for the upstream. */
export const stripProxyHeaders = (headers: Record<string, unknown>): void => {
  for (const name of Object.keys(headers)) if (/^proxy-/i.test(name)) delete headers[name]
}

/** The answer (400) to a request outside a tunnel that is not a proxy request: neither adapter forwards it. */
export const NOT_A_PROXY_REQUEST = 'Bad request: egress-guard forwards proxy requests only (CONNECT, or an absolute http:// URI)'
