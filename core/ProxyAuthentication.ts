import { denyRecord, type AuditRecord } from './Audit.js'
import { shownHost } from './Decision.js'

// A proxy that hands out credentials may demand that its clients authenticate (docs/spec.md §9): a
// request without the right `Proxy-Authorization` is refused before any policy is asked, with
// 407 and the challenge every common client answers, and an `unauthenticated` record that names
// no client. The comparison of secrets is the transport's (constant time, outside the core).

// -------------------------------------------------------------------------------------
// model
// -------------------------------------------------------------------------------------

/** The answer to a request that did not authenticate to the proxy. */
export interface Unauthenticated {
  readonly _tag: 'Unauthenticated'
  readonly reason: 'unauthenticated'
  readonly status: 407
  readonly headers: Readonly<Record<string, string>>
  readonly body: string
}

/** The name and secret a client sent in `Proxy-Authorization: Basic …`. */
export interface ProxyCredentials {
  readonly name: string
  readonly token: string
}

// -------------------------------------------------------------------------------------
// constructors
// -------------------------------------------------------------------------------------

/** The challenge of a 407: Basic, which clients answer for `http://name:token@host:port` proxy URLs. */
export const PROXY_AUTHENTICATE = 'Basic realm="egress-guard"'

const UNAUTHENTICATED: Unauthenticated = {
  _tag: 'Unauthenticated',
  reason: 'unauthenticated',
  status: 407,
  headers: { 'Proxy-Authenticate': PROXY_AUTHENTICATE, 'X-Egress-Guard-Reason': 'unauthenticated' },
  body: 'Proxy authentication required: egress-guard needs Proxy-Authorization: Basic (use a proxy URL of the form http://name:token@host:port)'
}

/** Refuses a request (or CONNECT) to `host` that did not authenticate; its record names no client. */
export const refuseUnauthenticated = (host: unknown): { readonly decision: Unauthenticated; readonly audit: ReadonlyArray<AuditRecord> } => ({
  decision: UNAUTHENTICATED,
  audit: [denyRecord(null, shownHost(host), 'unauthenticated')]
})

/** Reads `Proxy-Authorization: Basic base64(name:token)`; undefined when absent or malformed. */
export const parseProxyAuthorization = (header: unknown): ProxyCredentials | undefined => {
  if (typeof header !== 'string') return undefined
  const match = /^\s*basic\s+([A-Za-z0-9+/]+={0,2})\s*$/i.exec(header)
  if (match === null) return undefined
  let decoded: string
  try {
    decoded = atob(match[1] ?? '')
  } catch {
    return undefined
  }
  const colon = decoded.indexOf(':')
  if (colon < 0) return undefined
  return { name: decoded.slice(0, colon), token: decoded.slice(colon + 1) }
}
