import { createSecureServer, type Http2SecureServer, type Http2ServerRequest, type Http2ServerResponse, type ServerHttp2Session } from 'node:http2'
import type { Duplex } from 'node:stream'
import type { TLSSocket } from 'node:tls'

import type { CertificateAuthority } from '../interception/certificates.js'

// TLS termination for intercepted tunnels: one HTTP/2-capable TLS server per host, holding that
// host's leaf from the project's CA, kept for the most recently used `max` hosts. A tunnel's
// socket is handed to its host's server; the ALPN protocol the client chose decides who serves
// the connection: `h2` an HTTP/2 session here, anything else (HTTP/1.1, HTTP/1.0, no ALPN) the
// engine's HTTP/1 server. Node's HTTP/2 server would speak HTTP/2 to a client that chose
// `http/1.0`, so its connection listener is wrapped.

/** The intercepted hosts and their TLS servers. */
export interface InterceptedHosts<T> {
  /** True when `host` has a server now (it is not new to the budget). */
  readonly has: (host: string) => boolean
  /** Terminates TLS on `socket` with `host`'s leaf; `tunnel` is what the connection is later known by. */
  readonly accept: (host: string, socket: Duplex, tunnel: T) => void
  /** The tunnel an HTTP/1 connection (its TLS socket) or an HTTP/2 session came through. */
  readonly tunnelOf: (connection: TLSSocket | ServerHttp2Session) => T | undefined
  readonly close: () => void
}

/** What the intercepting servers hand on. */
export interface InterceptedHostsOptions {
  readonly ca: CertificateAuthority
  readonly max: number
  /** An HTTP/1 connection over TLS, for the engine's HTTP/1 server. */
  readonly onHttp1: (socket: TLSSocket) => void
  /** An HTTP/2 request (compatibility API). */
  readonly onHttp2Request: (request: Http2ServerRequest, response: Http2ServerResponse) => void
}

/** Streams an HTTP/2 client may have open at once on one connection (Node's default is unbounded). */
const MAX_STREAMS = 100

/** The protocols offered in ALPN, in order of preference: HTTP/2, then HTTP/1.1, then HTTP/1.0 (`curl --http1.0`). */
const ALPN = Buffer.from('\x02h2\x08http/1.1\x08http/1.0', 'latin1')

/** Creates the per-host TLS servers. */
export const interceptedHosts = <T extends object>(options: InterceptedHostsOptions): InterceptedHosts<T> => {
  const servers = new Map<string, Promise<Http2SecureServer>>()
  const tunnels = new WeakMap<object, T>()
  const sessions = new Set<ServerHttp2Session>()
  let closed = false

  const serverFor = (host: string): Promise<Http2SecureServer> => {
    const known = servers.get(host)
    if (known !== undefined) {
      // INVARIANT: the map holds at most `max` hosts, the most recently used last.
      servers.delete(host)
      servers.set(host, known)
      return known
    }
    const made = options.ca.leafFor(host).then(({ cert, key }) => {
      const server = createSecureServer({ cert, key, allowHTTP1: true, settings: { maxConcurrentStreams: MAX_STREAMS } })
      ;(server as Http2SecureServer & { ALPNProtocols?: Buffer }).ALPNProtocols = ALPN
      const [http2Listener] = server.listeners('secureConnection') as Array<(socket: TLSSocket) => void>
      if (http2Listener === undefined) throw new Error('node:http2 internals changed: no secureConnection listener')
      server.removeAllListeners('secureConnection')
      let handing: T | undefined
      server.on('session', (session: ServerHttp2Session) => {
        if (handing !== undefined) tunnels.set(session, handing)
        sessions.add(session)
        session.once('close', () => sessions.delete(session))
      })
      server.on('secureConnection', (socket: TLSSocket) => {
        // The TLS socket's parent is the tunnel's socket, which `accept` registered.
        const tunnel = tunnels.get((socket as TLSSocket & { _parent?: object })._parent ?? {})
        if (tunnel === undefined) {
          socket.destroy()
          return
        }
        tunnels.set(socket, tunnel)
        if (socket.alpnProtocol !== 'h2') {
          options.onHttp1(socket)
          return
        }
        handing = tunnel
        try {
          http2Listener.call(server, socket)
        } finally {
          handing = undefined
        }
      })
      server.on('request', options.onHttp2Request)
      server.on('tlsClientError', () => undefined)
      return server
    })
    servers.set(host, made)
    made.catch(() => servers.get(host) === made && servers.delete(host))
    if (servers.size > options.max) servers.delete(servers.keys().next().value as string)
    return made
  }

  return {
    has: (host) => servers.has(host),
    accept: (host, socket, tunnel) => {
      tunnels.set(socket, tunnel)
      serverFor(host).then(
        (server) => (closed || socket.destroyed ? socket.destroy() : server.emit('connection', socket)),
        () => socket.destroy()
      )
    },
    tunnelOf: (connection) => tunnels.get(connection),
    close: () => {
      closed = true
      servers.clear()
      for (const session of sessions) session.destroy()
      sessions.clear()
    }
  }
}
