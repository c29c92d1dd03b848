import type { ProxyCredentials } from '../../core/index.js'
import type { Guard } from '../guard/createGuard.js'
import type { CertificateAuthority } from '../interception/certificates.js'
import type { NewHostBudgetOptions } from '../interception/newHostBudget.js'
import type { Logger, Telemetry } from '../ports.js'
import type { ConnectTo } from '../upstream/connectTo.js'
import type { ClientBounds } from './clientBounds.js'

/** How to run a guarded proxy: the same options for every engine. */
export interface EngineOptions {
  readonly guard: Guard
  /** Holds the CA (key 0600, directory 0700); created on first start. */
  readonly configDir: string
  /** The CA to issue from, when one is shared (workers); by default loaded from `configDir`. */
  readonly ca?: CertificateAuthority
  /** Listen address; loopback by default. */
  readonly host?: string
  /** Listen port; 0 (the default) picks a free one. */
  readonly port?: number
  /** Extra CAs (PEM) trusted for upstream TLS, on top of Node's bundled roots. Verification is never off. */
  readonly upstreamCa?: ReadonlyArray<string>
  /** Dial another address for a host and port (tests, stand-ins); the policy and TLS still see the host. */
  readonly connectTo?: ReadonlyArray<ConnectTo>
  /** Intercepted hosts whose TLS server is kept; beyond this the least recently used is closed. Default 256. */
  readonly maxInterceptedHosts?: number
  /** How long a client may stay silent: before its first byte after CONNECT, and with nothing in flight. */
  readonly clientBounds?: Partial<ClientBounds>
  /** How many new intercepted hosts a domain may bring at once and per second (newHostBudget.ts). */
  readonly newHosts?: Pick<NewHostBudgetOptions, 'perSecond' | 'burst'>
  /** The `Proxy-Authorization: Basic` every CONNECT and plain request must carry; others get 407. */
  readonly proxyAuthentication?: ProxyCredentials
  /** The clock certificates are dated and aged by (tests); `Date.now` by default. */
  readonly now?: () => number
  readonly log?: Logger
  /** Where upstream latencies go (the admin listener's metrics, docs/spec.md §14). */
  readonly telemetry?: Telemetry
}
