import { lookup } from 'node:dns/promises'
import { isIP } from 'node:net'

import * as E from 'fp-ts/lib/Either.js'

import { parseHost } from '../../core/index.js'
import { upstreamFor, type ConnectTo, type Upstream } from './connectTo.js'
import type { ConnectTarget } from './tunnel.js'

/** Where a request is judged to go and where it is really sent. */
export interface PinnedDestination {
  /** The normalised CONNECT (or absolute-URI) target the policy judges. */
  readonly target: ConnectTarget
  /** The address and port dialled: a resolved address, or the operator's `connectTo` choice. */
  readonly upstream: Upstream
  /** The address the policy checks as the dialled address (absent when a rule chose it). */
  readonly dialed: string | undefined
  /** False when the name could not be resolved ahead: such a request is never sent credentials. */
  readonly resolved: boolean
  /** The name upstream TLS verifies: the target host, unless it is an IP address. */
  readonly servername: string | undefined
}

/**
 * Pins a destination: for TLS (the only requests that can receive credentials) the name is
 * resolved once, here, and the connection goes to that address, which the policy checks as the
 * dialled address; a DNS answer that changes later cannot redirect a judged request. A
 * `connectTo` rule is the operator's choice of address and is not checked.
 */
export const pinDestination = async (raw: ConnectTarget, tls: boolean, rules: ReadonlyArray<ConnectTo>): Promise<PinnedDestination> => {
  const normalised = parseHost(raw.host)
  const host = E.isRight(normalised) ? normalised.right : raw.host
  const target = { host, port: raw.port }
  const servername = isIP(host) === 0 ? host : undefined
  const mapped = upstreamFor(rules, host, raw.port)
  if (mapped.overridden) return { target, upstream: mapped, dialed: undefined, resolved: true, servername }
  if (servername === undefined) return { target, upstream: mapped, dialed: host, resolved: true, servername }
  if (!tls) return { target, upstream: mapped, dialed: undefined, resolved: false, servername }
  try {
    const { address } = await lookup(host)
    return { target, upstream: { host: address, port: raw.port, overridden: false }, dialed: address, resolved: true, servername }
  } catch {
    return { target, upstream: mapped, dialed: undefined, resolved: false, servername }
  }
}
