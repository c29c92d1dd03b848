import type { Server } from 'node:net'

import type { CertificateAuthority } from '../interception/certificates.js'
import type { RunningProxy } from '../ports.js'
import type { ClientWatch } from './clientBounds.js'
import { hostForUrl } from '../upstream/connectTo.js'

/** The handle of an engine listening on `server` at `host:port`: its URL, its CA, and how to hand it a socket or stop it. */
export const runningProxy = (listening: { readonly server: Server; readonly host: string; readonly port: number }, ca: CertificateAuthority, watch: Pick<ClientWatch, 'open'>, close: () => Promise<void>): RunningProxy => ({
  url: `http://${hostForUrl(listening.host)}:${listening.port}`,
  port: listening.port,
  caCertPath: ca.certPath,
  caCertPem: ca.certPem,
  accept: (socket) => {
    listening.server.emit('connection', socket)
  },
  open: () => watch.open(),
  close
})
