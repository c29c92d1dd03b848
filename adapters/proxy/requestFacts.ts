import type { RequestFacts } from '../../core/index.js'
import { headerText } from '../upstream/forwardedHeaders.js'
import type { PinnedDestination } from '../upstream/pinnedDestination.js'

// The one place request facts are built, for every engine: each translates what its library saw
// into a ReceivedRequest (with the target exactly as the client sent it, before any library
// rewrote it), and the policy judges these facts. Absolute-form targets are read as the WHATWG
// URL parser reads them, so `http://api.example.com:443@evil.test/` names `evil.test`, whatever
// a library's own parsing made of it.

/** A request as a transport received it. */
export interface ReceivedRequest {
  /** The hop from the client was TLS: the request came inside an intercepted tunnel. */
  readonly tls: boolean
  /** Where it goes: the CONNECT target (pinned), or outside a tunnel its absolute URI's host and port. */
  readonly destination: PinnedDestination
  /** The request target as the client sent it. */
  readonly target: string
  readonly method: string
  readonly hostHeader?: string | ReadonlyArray<string> | undefined
  /** The TLS server name the client sent, if any. */
  readonly sni?: string | false | undefined
  /** The client that authenticated (docs/spec.md §9), for the tunnel or this request. */
  readonly client?: string | undefined
}

/** A request target split into what is forwarded (origin form) and the host an absolute URI names. */
export interface ParsedTarget {
  /** Origin form (`/path?query`) as sent; an opaque target (`*`, …) as is, and it matches no route. */
  readonly path: string
  /** The host (and port) of an absolute-form target as WHATWG reads it; `''` when it does not parse. */
  readonly absoluteUriHost?: string
}

const SCHEME = /^[a-z][a-z0-9+.-]*:/i
const AUTHORITY_END = /[/\\?#]/

/**
 * Splits a request target. Origin form is kept as is. Absolute form (`scheme://authority/rest`) is
 * cut where the WHATWG parser starts and ends the authority (after any run of `/` and `\`; at `/`,
 * `\`, `?` or `#`), its path kept as sent (dot segments and all, for the policy to judge), its
 * host taken from the parser.
 */
export const parseTarget = (target: string): ParsedTarget => {
  if (target.startsWith('/') || !SCHEME.test(target)) return { path: target === '' ? '/' : target }
  let host = ''
  try {
    host = new URL(target).host
  } catch {
    // Unreadable: an empty name, which the core counts as a mismatch.
  }
  // As WHATWG does for special schemes: any run of `/` and `\` after the scheme, then the authority.
  const colon = target.indexOf(':') + 1
  const start = colon + (/^[/\\]*/.exec(target.slice(colon))?.[0].length ?? 0)
  const afterAuthority = target.slice(start).search(AUTHORITY_END)
  const rest = afterAuthority < 0 ? '' : target.slice(start + afterAuthority)
  return { path: rest.startsWith('/') || rest.startsWith('\\') ? rest : `/${rest}`, absoluteUriHost: host }
}

/** The facts the policy judges a request by. */
export const requestFacts = (request: ReceivedRequest): RequestFacts => {
  const { destination } = request
  const parsed = parseTarget(request.target)
  const hostHeader = headerText(request.hostHeader)
  return {
    scheme: request.tls ? 'https' : 'http',
    host: destination.target.host,
    port: destination.target.port,
    path: parsed.path,
    method: request.method,
    ...(hostHeader === undefined ? {} : { hostHeader }),
    ...(typeof request.sni === 'string' && request.sni !== '' ? { sni: request.sni } : {}),
    ...(parsed.absoluteUriHost === undefined ? {} : { absoluteUriHost: parsed.absoluteUriHost }),
    ...(destination.dialed === undefined ? {} : { dialedAddress: destination.dialed }),
    ...(request.client === undefined ? {} : { client: request.client })
  }
}

/** The host and port an absolute `http://` target names (as WHATWG reads it), for a request outside a tunnel; undefined for any other. */
export const plainProxyDestination = (target: string): { readonly host: string; readonly port: number } | undefined => {
  if (!/^http:\/\//i.test(target)) return undefined
  try {
    const url = new URL(target)
    return { host: url.hostname.replace(/^\[(.*)\]$/, '$1'), port: url.port === '' ? 80 : Number(url.port) }
  } catch {
    return undefined
  }
}
