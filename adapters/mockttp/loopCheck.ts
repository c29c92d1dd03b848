import type { Socket } from 'node:net'

// mockttp refuses a request as a "passthrough loop" when the client's address and port equal the
// local address and port of one of its own upstream connections. On one machine two connections
// can share a local port when their peers differ, so a client on loopback that the kernel gave the
// same port as an upstream connection was refused on every request of its connection (the load
// test, 64 clients and a loopback upstream, hit it about one run in ten). A real loop also has the
// upstream connection's peer equal to the client connection's local end: the half mockttp misses.

/** The two ends of a connection, as a socket reports them. */
export type SocketEnds = Pick<Socket, 'localAddress' | 'localPort' | 'remoteAddress' | 'remotePort'>

const plain = (address: string | undefined): string | undefined => address?.replace(/^::ffff:/i, '').toLowerCase()

/**
 * The upstream sockets mockttp's loop check would match against `incoming` although they are not
 * the other end of it: same local address and port as the client's, but another peer.
 */
export const falseLoopMatches = <S extends SocketEnds>(outgoing: Iterable<S>, incoming: SocketEnds): Array<S> => {
  const matches: Array<S> = []
  const port = incoming.remotePort
  for (const socket of outgoing) {
    // The port first: it rules out nearly every socket before any address is read (measured: this
    // check, run on every request against every upstream connection, was 4% of the proxy's CPU).
    if (socket.localPort !== port || port === undefined || socket.localAddress === undefined) continue
    const looksLikeLoop = plain(socket.localAddress) === plain(incoming.remoteAddress) && socket.localPort === incoming.remotePort
    const isLoop = looksLikeLoop && plain(socket.remoteAddress) === plain(incoming.localAddress) && socket.remotePort === incoming.localPort
    if (looksLikeLoop && !isLoop) matches.push(socket)
  }
  return matches
}
