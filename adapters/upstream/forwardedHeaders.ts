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
