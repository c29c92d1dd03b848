import type { Duplex } from 'node:stream'

import { openTunnel } from '../upstream/tunnel.js'
import type { ClientWatch } from './clientBounds.js'
import type { ConnectStep, InterceptStep } from './pipeline.js'

/**
 * Carries out the CONNECT steps every engine carries out alike: a refusal (its bytes, then close)
 * or an untouched tunnel (under the tunnel idle bound). Returns the step when it is to intercept,
 * which each engine does its own way; undefined when nothing is left to do.
 */
export const refuseOrTunnel = (step: ConnectStep, socket: Duplex, head: Buffer, watch: ClientWatch): InterceptStep | undefined => {
  switch (step._tag) {
    case 'Refuse':
      socket.on('error', () => socket.destroy())
      socket.end(step.answer)
      return undefined
    case 'Tunnel':
      watch.tunnel(socket)
      openTunnel(socket, head, step.upstream)
      return undefined
    case 'Intercept':
      return step
  }
}
