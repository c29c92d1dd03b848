import type { Duplex } from 'node:stream'

import { fairQueue, hostGroup } from '../interception/fairQueue.js'

// mockttp issues its own leaf for a new host, outside the CA's fair issuer (fairQueue.ts). So new
// hosts are handed to it through a fair queue too: two at a time, domains in turn, each holding
// its turn until its first request arrives (its leaf and handshake done), its socket closes, or
// 250 ms pass (a leaf takes about 5 ms; a client slow to finish its handshake must not hold it).

/** The hand-over of new hosts' tunnels to mockttp. */
export interface NewHostHandOver {
  /** Hands `socket` (a tunnel to a new `host`) over with `give` in its turn; resolves when the turn ends. */
  readonly run: (host: string, socket: Duplex, give: () => void) => Promise<void>
  /** A request arrived on the tunnel under `socket`: its turn, if it holds one, ends. */
  readonly firstRequest: (socket: Duplex) => void
}

/** How long a new host may hold its turn without a first request. */
const TURN_MS = 250

/** Makes the hand-over; at most `maxWaiting` tunnels wait for a turn. */
export const newHostHandOver = (maxWaiting: number): NewHostHandOver => {
  const turns = fairQueue({ concurrency: 2, maxWaiting })
  const waiting = new WeakMap<Duplex, () => void>()
  return {
    run: (host, socket, give) =>
      turns.run(hostGroup(host), () => new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer)
          waiting.delete(socket)
          resolve()
        }
        const timer = setTimeout(done, TURN_MS)
        waiting.set(socket, done)
        socket.once('close', done)
        if (socket.destroyed) return done()
        give()
      })),
    firstRequest: (socket) => waiting.get(socket)?.()
  }
}
