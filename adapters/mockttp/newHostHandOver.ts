import type { Duplex } from 'node:stream'

import { fairQueue, hostGroup } from '../interception/fairQueue.js'
import type { NewHostBudget } from '../interception/newHostBudget.js'

// mockttp issues its own leaf for a new host, outside the CA's fair issuer (fairQueue.ts). So new
// hosts are handed to it through a fair queue too: two at a time, domains in turn, each holding
// its turn until its first request arrives (its leaf and handshake done), its socket closes, or
// 250 ms pass (a leaf takes about 5 ms; a client slow to finish its handshake must not hold it).

/** The hand-over of new hosts' tunnels to mockttp. */
export interface NewHostHandOver {
  /** Admits a host for interception: one intercepted lately always, a new one within the budget. */
  readonly admit: (host: string) => boolean
  /** Whether the host last admitted had been intercepted lately (its tunnel needs no turn). */
  readonly lastWasKnown: () => boolean
  /** Hands `socket` (a tunnel to a new `host`) over with `give` in its turn; resolves when the turn ends. */
  readonly run: (host: string, socket: Duplex, give: () => void) => Promise<void>
  /** A request arrived on the tunnel under `socket`: its turn, if it holds one, ends. */
  readonly firstRequest: (socket: Duplex) => void
}

/** How long a new host may hold its turn without a first request. */
const TURN_MS = 250

/** Makes the hand-over; it remembers `maxHosts` hosts (least recently used forgotten), and at most as many tunnels wait for a turn. */
export const newHostHandOver = (maxHosts: number, budget: NewHostBudget): NewHostHandOver => {
  const turns = fairQueue({ concurrency: 2, maxWaiting: maxHosts })
  const waiting = new WeakMap<Duplex, () => void>()
  // Hosts intercepted lately (least recently used first), which the budget does not count again.
  const intercepted = new Map<string, true>()
  let known = false
  return {
    admit: (host) => {
      known = intercepted.delete(host)
      if (!known && !budget.admit(host)) return false
      intercepted.set(host, true)
      if (intercepted.size > maxHosts) intercepted.delete(intercepted.keys().next().value as string)
      return true
    },
    lastWasKnown: () => known,
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
