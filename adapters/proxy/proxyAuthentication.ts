import { createHash, timingSafeEqual } from 'node:crypto'

import { parseProxyAuthorization, type ProxyCredentials } from '../../core/index.js'

// The transport's half of proxy authentication (docs/spec.md §9): is the `Proxy-Authorization` a
// request carries the expected one? The comparison is in constant time, over digests, so neither
// the token's length nor its first differing byte shows in the time taken.

const digest = (text: string): Buffer => createHash('sha256').update(text, 'latin1').digest()

/** True when `header` is `Basic base64(name:token)` for exactly the expected name and token. */
export const authenticates = (header: string | ReadonlyArray<string> | undefined, expected: ProxyCredentials): boolean => {
  const sent = parseProxyAuthorization(Array.isArray(header) ? undefined : header)
  // INVARIANT: both comparisons always run, so a wrong name takes as long as a wrong token.
  const name = timingSafeEqual(digest(sent?.name ?? ''), digest(expected.name))
  const token = timingSafeEqual(digest(sent?.token ?? ''), digest(expected.token))
  return sent !== undefined && name && token
}
