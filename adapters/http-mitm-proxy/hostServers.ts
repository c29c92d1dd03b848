// http-mitm-proxy makes one listening HTTPS server per intercepted host, with that host's leaf
// certificate, and keeps it for the life of the process: a proxy up for months would serve expired
// certificates, and one whose routes match many hosts (a regex route) would gather servers without
// end. Two first CONNECTs to a host at once each make a server (its semaphore is deleted as soon
// as it is taken), and the second replaced the first in its table, which stayed open, unreachable.
// This module keeps that table bounded and its certificates fresh, and closes what it replaces.
import type http from 'node:http'
import net from 'node:net'

import { atLeastOne } from '../interception/atLeastOne.js'
import { leafIsFresh } from '../interception/leafLifetime.js'

/** One entry of the library's per-host server table. */
interface LibraryServer {
  readonly server?: http.Server
}

/** The part of the library's proxy this module manages. */
export interface LibraryServerTable {
  sslServers?: Record<string, LibraryServer | undefined>
}

/** How the table is kept. */
export interface HostServerOptions {
  /** Hosts whose server is kept; beyond this the least recently used is retired. */
  readonly max: number
  /** The clock servers are aged by. */
  readonly now: () => number
  /**
   * How long a retired server still accepts connections: the library looks a server's port up and
   * connects to it a moment later, and that connection must not be refused. Default 5 s.
   */
  readonly graceMs?: number
  /** Called with each server the library makes, before it accepts a connection. */
  readonly onServer?: (server: http.Server) => void
}

/** The library's per-host servers, kept fresh and bounded. */
export interface HostServers {
  /**
   * Called before a CONNECT to `host` is intercepted: a server older than the leaf refresh age is
   * retired (the library then makes a new one, with a leaf the CA issues anew); a kept one is
   * marked used.
   */
  readonly use: (host: string) => void
  /** True when `host` has a server in the table (it was intercepted before). */
  readonly has: (host: string) => boolean
  /** Every server still open: those in the table and those retired whose connections have not ended. */
  readonly open: () => ReadonlyArray<http.Server>
  /** The proxy is stopping: retired listeners stop at once, and a server the library adds later is closed as it comes. */
  readonly close: () => void
}

/**
 * Takes over the library's server table (after `listen`, which replaces it). Each server is
 * registered with the time it was made; the least recently used beyond `max` is retired, and so is
 * a server older than the leaf refresh age (leafLifetime.ts), on its host's next CONNECT, and a
 * server the library replaces. A retired server leaves the table at once and stops listening
 * after the grace period; its connections finish as they are.
 *
 * A server's certificate may come from the CA's memory, up to the refresh age old; so a leaf is
 * served at most twice that age (60 days), within its 90 days of validity.
 */
export const manageHostServers = (library: LibraryServerTable, options: HostServerOptions): HostServers => {
  const table = library.sslServers
  if (table === undefined) throw new Error('http-mitm-proxy internals changed: no per-host server table after listen; use http-mitm-proxy 1.1.x')
  const max = atLeastOne('max', options.max)
  const graceMs = options.graceMs ?? 5_000
  // INVARIANT: `made` has exactly the hosts of `table` that have a server, least recently used
  // first, and at most `max` of them; every server this module took out of the table is in
  // `retired` until it has closed.
  const made = new Map<string, number>()
  const retired = new Map<http.Server, NodeJS.Timeout>()
  let stopped = false

  // Only the listener is closed: http's close() would also cut every kept-alive connection that
  // is between two requests at that moment (measured: the benchmark's clients got "other side
  // closed"). Its connections end on their own (the client closes them, or the server's keep-alive
  // timeout does), and then http's close() releases what the server still holds.
  const stopListening = (server: http.Server): void => {
    if (server.listening) net.Server.prototype.close.call(server)
  }
  const retireServer = (server: http.Server): void => {
    if (retired.has(server)) return
    retired.set(server, setTimeout(() => stopListening(server), graceMs).unref())
    server.once('close', () => {
      clearTimeout(retired.get(server))
      retired.delete(server)
      // INVARIANT: nothing else listens for this server's 'close'; the call below emits it once
      // more (the server has no handle and no connection left) and clears http's interval.
      server.close()
    })
  }

  const retire = (host: string): void => {
    made.delete(host)
    const server = table[host]?.server
    delete table[host]
    if (server !== undefined) retireServer(server)
  }

  library.sslServers = new Proxy(table, {
    set: (target, host, entry: LibraryServer | undefined) => {
      if (typeof host !== 'string') return Reflect.set(target, host, entry)
      if (stopped) {
        // A server whose certificate was still being issued when the proxy stopped.
        entry?.server?.close()
        return true
      }
      const replaced = target[host]?.server
      if (entry?.server !== undefined && entry.server !== replaced) options.onServer?.(entry.server)
      target[host] = entry
      if (replaced !== undefined && replaced !== entry?.server) retireServer(replaced)
      made.delete(host)
      if (entry?.server !== undefined) made.set(host, options.now())
      while (made.size > max) retire(made.keys().next().value as string)
      return true
    },
    deleteProperty: (target, host) => {
      if (typeof host === 'string') made.delete(host)
      return Reflect.deleteProperty(target, host)
    }
  })

  return {
    use: (host) => {
      const at = made.get(host)
      if (at === undefined) return
      if (!leafIsFresh(at, options.now())) {
        retire(host)
        return
      }
      made.delete(host)
      made.set(host, at)
    },
    has: (host) => made.has(host),
    open: () => [...Object.values(table).flatMap((entry) => (entry?.server === undefined ? [] : [entry.server])), ...retired.keys()],
    close: () => {
      stopped = true
      for (const [server, timer] of retired) {
        clearTimeout(timer)
        stopListening(server)
      }
    }
  }
}
