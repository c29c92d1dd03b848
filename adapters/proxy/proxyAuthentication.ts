import { createHash, timingSafeEqual } from 'node:crypto'
import type { Duplex } from 'node:stream'

import { parseProxyAuthorization, type ProxyCredentials, type Unauthenticated } from '../../core/index.js'
import { rawAnswer } from './rawAnswer.js'

// The transport's half of proxy authentication (SPEC.md §9): is the `Proxy-Authorization` a
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

/** Answers a CONNECT (or any raw socket) that did not authenticate: 407 with the Basic challenge, then close. */
export const refuseSocket = (socket: Duplex, refusal: Unauthenticated): void => {
  socket.on('error', () => socket.destroy())
  socket.end(rawAnswer(refusal.status, refusal.body, refusal.headers))
}
