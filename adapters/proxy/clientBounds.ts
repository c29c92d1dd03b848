import type { Duplex } from 'node:stream'

// Bounds on client connections, the same for every engine: neither proxy library closes a CONNECT
// that sends nothing, a tunnel or connection left idle, or (http-mitm-proxy) a CONNECT socket whose
// client closed before its first byte (it stayed in CLOSE-WAIT for good). Activity is read from
// the raw client socket's byte counters, which move under TLS too; a connection with a request
// in flight is never closed by these bounds, however long its response takes.

/** How long a client connection may stay silent. */
export interface ClientBounds {
  /** A CONNECT whose client sends no byte (no TLS ClientHello) within this is closed. */
  readonly helloMs: number
  /** A connection with nothing in flight and no byte either way for this long is closed; 0 turns it off. */
  readonly idleMs: number
  /**
   * The same for an untouched tunnel, whose requests the proxy cannot see: a long answer (a
   * reasoning model's) looks idle, so the bound is longer; 0 turns it off.
   */
  readonly tunnelIdleMs: number
}

/** How long a connection ended by a stopping proxy may stay half-open before it is closed. */
const DRAIN_GRACE_MS = 500

/** A TLS client sends its ClientHello at once; reasoning models may be silent for minutes, but only inside a request. */
export const DEFAULT_CLIENT_BOUNDS: ClientBounds = { helloMs: 10_000, idleMs: 300_000, tunnelIdleMs: 1_800_000 }

/** Watches client connections and closes those past their bounds. */
export interface ClientWatch {
  /** A connection accepted on the proxy port. */
  readonly accepted: (socket: Duplex) => void
  /** A CONNECT accepted on `socket` (intercepted or tunnelled): the hello bound starts, and a client that half-closes ends it. */
  readonly connect: (socket: Duplex) => void
  /** A request (or WebSocket) on the connection under `socket`: it is in flight until `done` closes. */
  readonly request: (socket: Duplex, done: Closing) => void
  /** The CONNECT on `socket` became an untouched tunnel: the tunnel idle bound applies to it. */
  readonly tunnel: (socket: Duplex) => void
  /** The proxy stops: every watched connection is closed, and the clock stops. */
  readonly close: () => void
  /** Client connections open now, and how many of them carry a CONNECT tunnel (intercepted or untouched). */
  readonly open: () => { readonly connections: number; readonly tunnels: number }
  /**
   * The proxy is stopping (docs/spec.md §14, scale-out): every connection is ended as soon as it has
   * no request in flight; resolves once all are gone, or after `ms` (the rest are then closed).
   * An untouched tunnel's requests cannot be seen: it is ended at once.
   */
  readonly drain: (ms: number) => Promise<void>
}

/** What tells that a request is over: a response, a WebSocket, a socket. */
export interface Closing {
  readonly once: (event: 'close', listener: () => void) => unknown
}

interface Watched {
  /** The idle bound that applies: idleMs, or tunnelIdleMs for an untouched tunnel. */
  idleMs: number
  /** Bytes read and written when last seen. */
  bytes: number
  /** When a byte last moved, or a request ended. */
  active: number
  inFlight: number
  /** Set while a CONNECT waits for its first byte: the bytes read at the CONNECT, and when. */
  hello: { readonly read: number; readonly at: number } | undefined
  /** The connection carries a CONNECT tunnel. */
  tunnel: boolean
}

const bytesOf = (socket: Duplex): number => {
  const counted = socket as Duplex & { bytesRead?: number; bytesWritten?: number }
  return (counted.bytesRead ?? 0) + (counted.bytesWritten ?? 0)
}

const readOf = (socket: Duplex): number => (socket as Duplex & { bytesRead?: number }).bytesRead ?? 0

/** Starts watching with `bounds` (validated: whole milliseconds, hello at least 1). */
export const watchClients = (bounds: ClientBounds, now: () => number = Date.now): ClientWatch => {
  for (const [name, value] of Object.entries(bounds)) {
    if (!Number.isInteger(value) || value < (name === 'helloMs' ? 1 : 0)) throw new Error(`client bound \`${name}\` is \`${value}\`: expected a whole number of milliseconds${name === 'helloMs' ? ' of at least 1' : ''}`)
  }
  const watched = new Map<Duplex, Watched>()
  let draining = false
  // A connection is ended (FIN, after what was written), and closed a moment later if its client
  // keeps its side open.
  const endSoon = (socket: Duplex): void => {
    socket.end()
    setTimeout(() => socket.destroy(), DRAIN_GRACE_MS).unref()
  }
  const entry = (socket: Duplex): Watched | undefined => {
    if (socket.destroyed) return undefined
    let known = watched.get(socket)
    if (known === undefined) {
      known = { idleMs: bounds.idleMs, bytes: bytesOf(socket), active: now(), inFlight: 0, hello: undefined, tunnel: false }
      watched.set(socket, known)
      socket.once('close', () => watched.delete(socket))
    }
    return known
  }

  const tick = (): void => {
    const at = now()
    for (const [socket, w] of watched) {
      if (socket.destroyed) {
        watched.delete(socket)
        continue
      }
      const bytes = bytesOf(socket)
      if (bytes !== w.bytes) {
        w.bytes = bytes
        w.active = at
      }
      if (w.hello !== undefined && readOf(socket) !== w.hello.read) w.hello = undefined
      const silentHello = w.hello !== undefined && at - w.hello.at >= bounds.helloMs
      const idle = w.idleMs > 0 && w.inFlight === 0 && at - w.active >= w.idleMs
      if (silentHello || idle) {
        watched.delete(socket)
        socket.destroy()
      }
    }
  }
  const period = Math.max(20, Math.min(1_000, Math.floor(Math.min(bounds.helloMs, bounds.idleMs || bounds.helloMs, bounds.tunnelIdleMs || bounds.helloMs) / 4)))
  const clock = setInterval(tick, period)
  clock.unref()

  return {
    accepted: (socket) => {
      entry(socket)
    },
    connect: (socket) => {
      const w = entry(socket)
      if (w === undefined) return
      const read = readOf(socket)
      w.hello = { read, at: now() }
      w.tunnel = true
      // INVARIANT: a client that half-closes its CONNECT before its first byte ends it: Node accepts
      // proxy sockets half-open and, once it hands a CONNECT over, no longer ends them itself
      // (http-mitm-proxy then kept them in CLOSE-WAIT for good). Later on, the engine's own pipes
      // end the tunnel, and a response still on its way is not cut.
      socket.once('end', () => {
        if (readOf(socket) === read) socket.end()
      })
    },
    request: (socket, done) => {
      const w = entry(socket)
      if (w === undefined) return
      w.inFlight++
      done.once('close', () => {
        w.inFlight--
        w.active = now()
        if (draining && w.inFlight === 0) endSoon(socket)
      })
    },
    tunnel: (socket) => {
      const w = entry(socket)
      if (w !== undefined) w.idleMs = bounds.tunnelIdleMs
    },
    drain: async (ms) => {
      draining = true
      for (const [socket, w] of watched) if (w.inFlight === 0 || w.idleMs === bounds.tunnelIdleMs) endSoon(socket)
      const until = now() + ms
      while (watched.size > 0 && now() < until) {
        await new Promise((resolve) => setTimeout(resolve, 20))
        for (const socket of watched.keys()) if (socket.destroyed) watched.delete(socket)
      }
    },
    open: () => {
      let tunnels = 0
      for (const w of watched.values()) if (w.tunnel) tunnels++
      return { connections: watched.size, tunnels }
    },
    close: () => {
      clearInterval(clock)
      for (const socket of watched.keys()) socket.destroy()
      watched.clear()
    }
  }
}
