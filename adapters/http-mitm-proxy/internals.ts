import type http from 'node:http'
import type { Server, Socket } from 'node:net'

import type { Proxy } from 'http-mitm-proxy'

import { hostHeaderFor } from '../upstream/forwardedHeaders.js'
import { connectTarget } from '../upstream/tunnel.js'

// The http-mitm-proxy internals the adapter needs, in one place, each checked when the proxy
// starts (tested with http-mitm-proxy 1.1.x; the peer range is ^1.1.0). A release that moves one
// makes the proxy refuse to start, naming it, rather than run unguarded.

/** The library's WebSocket wrapper of a client connection (the `ws` library's socket). */
export interface LibraryWebSocket {
  readonly upgradeReq: http.IncomingMessage
  readonly close: (code: number, reason: string) => void
  readonly terminate: () => void
  readonly removeAllListeners: (event: string) => void
  readonly on: (event: string, listener: () => void) => void
  readonly _socket: Socket
}

interface Internals {
  _onHttpServerRequest?: (isSSL: boolean, request: http.IncomingMessage, response: http.ServerResponse) => void
  _onWebSocketServerConnect?: (isSSL: boolean, socket: LibraryWebSocket, request: http.IncomingMessage) => void
  /** The CONNECTs by tunnel socket (`remotePort:localPort`), made anew when it listens. */
  readonly connectRequests?: Record<string, http.IncomingMessage>
  readonly httpServer?: http.Server
  readonly httpPort?: number
}

const changed = (what: string): Error => new Error(`http-mitm-proxy internals changed: ${what}; use http-mitm-proxy 1.1.x`)

/**
 * Closes a client WebSocket the policy refused (1008). The library accepts the upgrade before any
 * hook runs, and its frame and close handlers assume an upstream socket exists: they throw, and
 * kill the process, on a refused one. Its listeners are detached first; the paused socket is
 * resumed so the close handshake can finish, and cut after two seconds if it does not.
 */
export const refuseWebSocket = (socket: LibraryWebSocket, reason: string): void => {
  for (const event of ['message', 'ping', 'pong', 'close', 'error']) socket.removeAllListeners(event)
  socket.on('error', () => undefined)
  socket.close(1008, reason.slice(0, 120))
  socket._socket.resume()
  setTimeout(() => socket.terminate(), 2_000).unref()
}

/**
 * Every request and WebSocket upgrade, on the proxy port and inside every tunnel, passes one of
 * the library's two handlers first. The target is kept there (`targets`) before the library
 * parses and rewrites it, and a missing Host is filled in from the tunnel's CONNECT: HTTP/1.0 may
 * omit it, the library would refuse such a request and throw on such an upgrade (which ended the
 * process). An upgrade with neither is refused.
 */
export const watchIncoming = (proxy: Proxy, targets: WeakMap<http.IncomingMessage, string>): void => {
  const library = proxy as unknown as Internals
  const handleRequest = library._onHttpServerRequest
  const handleUpgrade = library._onWebSocketServerConnect
  if (typeof handleRequest !== 'function' || typeof handleUpgrade !== 'function') throw changed('no request or upgrade handler')
  const withHost = (request: http.IncomingMessage, socket: Socket, isSSL: boolean): boolean => {
    if (request.headers.host !== undefined) return true
    const connect = fromLibrary(socket) ? library.connectRequests?.[`${socket.remotePort}:${socket.localPort}`] : undefined
    const target = connect === undefined ? undefined : connectTarget(connect.url)
    if (target === undefined) return false
    request.headers.host = hostHeaderFor(target, isSSL)
    return true
  }
  library._onHttpServerRequest = function (this: unknown, isSSL, request, response) {
    targets.set(request, request.url ?? '')
    withHost(request, request.socket, isSSL)
    handleRequest.call(this, isSSL, request, response)
  }
  library._onWebSocketServerConnect = function (this: unknown, isSSL, socket, request) {
    if (!withHost(request, socket._socket, isSSL)) {
      refuseWebSocket(socket, 'Bad request: a WebSocket upgrade needs a Host header')
      return
    }
    handleUpgrade.call(this, isSSL, socket, request)
  }
}

/** The listening server and its port, once the library listens. */
export const listeningServer = (proxy: Proxy): { readonly server: http.Server; readonly port: number } => {
  const library = proxy as unknown as Internals
  if (library.httpServer === undefined || typeof library.httpPort !== 'number') throw changed('no HTTP server after listen')
  return { server: library.httpServer, port: library.httpPort }
}

/** The library's key for a host's TLS server: the CONNECT authority up to its first colon. */
export const serverKey = (authority: string): string => authority.split(':', 2)[0] ?? ''

/**
 * True when a socket comes from the address the library dials its own servers from. The library
 * finds a tunnel again by the source port and server port of its loopback connection alone
 * (`connectRequests`), so a local process connecting from another loopback address (127.0.0.2)
 * with the same source port would be taken for the tunnel, and for its client. Only 127.0.0.1
 * is the library's: the same port pair from it is the library's own connection.
 */
export const fromLibrary = (socket: { readonly remoteAddress?: string | undefined }): boolean =>
  socket.remoteAddress === '127.0.0.1' || socket.remoteAddress === '::ffff:127.0.0.1'

/** Closes, before any TLS, every connection to a per-host server that is not the library's own. */
export const acceptOnlyTheLibrary = (server: Server): void => {
  server.prependListener('connection', (socket: Socket) => {
    if (!fromLibrary(socket)) socket.destroy()
  })
}
