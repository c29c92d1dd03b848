import { createHash, timingSafeEqual } from 'node:crypto'

import { parseProxyAuthorization, type ProxyCredentials } from '../../core/index.js'

// The transport's half of proxy authentication (docs/spec.md §9): is the `Proxy-Authorization` a
// request carries the expected one? The comparison is in constant time, over digests, so neither
// the token's length nor its first differing byte shows in the time taken.

/** A token's SHA-256 digest, the form in which tokens are compared (and kept, for clients). */
export const digest = (text: string): Buffer => createHash('sha256').update(text, 'latin1').digest()

/** True when `header` is `Basic base64(name:token)` for exactly the expected name and token. */
export const authenticates = (header: string | ReadonlyArray<string> | undefined, expected: ProxyCredentials): boolean => {
  const sent = parseProxyAuthorization(Array.isArray(header) ? undefined : header)
  // INVARIANT: both comparisons always run, so a wrong name takes as long as a wrong token.
  const name = timingSafeEqual(digest(sent?.name ?? ''), digest(expected.name))
  const token = timingSafeEqual(digest(sent?.token ?? ''), digest(expected.token))
  return sent !== undefined && name && token
}

// A stand-in compared against when the name is unknown, so that an unknown name takes as long as a wrong token.
const NO_TOKEN = digest('egress-guard: no such client')

/**
 * The client `header` authenticates as among `clients` (name → the digest of its token), in
 * constant time: an unknown name is compared against a stand-in, so it takes as long as a wrong
 * token. Undefined for none.
 */
export const authenticatedClient = (header: string | ReadonlyArray<string> | undefined, clients: ReadonlyMap<string, Buffer>): string | undefined => {
  const sent = parseProxyAuthorization(Array.isArray(header) ? undefined : header)
  const expected = sent === undefined ? undefined : clients.get(sent.name)
  const token = timingSafeEqual(digest(sent?.token ?? ''), expected ?? NO_TOKEN)
  return sent !== undefined && expected !== undefined && token ? sent.name : undefined
}
