import type { Server } from 'node:net'

import type { CertificateAuthority } from '../interception/certificates.js'
import type { RunningProxy } from '../ports.js'
import type { ClientWatch } from './clientBounds.js'
import { hostForUrl } from '../upstream/connectTo.js'

/** How long a stopping proxy waits for the requests in flight before it closes their connections. */
export const DRAIN_MS = 10_000

/**
 * The handle of an engine listening on `server` at `host:port`: its URL, its CA, and how to hand it
 * a socket or stop it. Stopping stops accepting, lets the requests in flight finish (DRAIN_MS at
 * most), then closes the engine.
 */
export const runningProxy = (listening: { readonly server: Server; readonly host: string; readonly port: number }, ca: CertificateAuthority, watch: Pick<ClientWatch, 'open' | 'drain'>, close: () => Promise<void>): RunningProxy => ({
  url: `http://${hostForUrl(listening.host)}:${listening.port}`,
  port: listening.port,
  caCertPath: ca.certPath,
  caCertPem: ca.certPem,
  accept: (socket) => {
    listening.server.emit('connection', socket)
  },
  open: () => watch.open(),
  close: async () => {
    listening.server.close()
    await watch.drain(DRAIN_MS)
    await close()
  }
})
