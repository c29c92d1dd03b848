// http-mitm-proxy makes one listening HTTPS server per intercepted host, with that host's leaf
// certificate, and keeps it for the life of the process: a proxy up for months would serve expired
// certificates, and one whose routes match many hosts (a regex route) would gather servers without
// end. This module keeps that table bounded and its certificates fresh.
import type http from 'node:http'

import { leafIsFresh } from '../interception/leafLifetime.js'

/** One entry of the library's per-host server table. */
interface LibraryServer {
  readonly server?: http.Server
}

/** The part of the library's proxy this module manages. */
export interface LibraryServerTable {
  sslServers?: Record<string, LibraryServer | undefined>
}

/** The library's per-host servers, kept fresh and bounded. */
export interface HostServers {
  /**
   * Called before a CONNECT to `host` is intercepted: a server whose certificate is due for renewal
   * is retired (the library then makes a new one, with a new leaf); a kept one is marked used.
   */
  readonly use: (host: string) => void
  /** Every server still open, retired ones whose connections have not ended included. */
  readonly open: () => ReadonlyArray<http.Server>
}

/**
 * Takes over the library's server table (after `listen`, which replaces it): each server is
 * registered with the time it was made, the least recently used beyond `max` is retired, and a
 * server older than the leaf refresh age (leafLifetime.ts) is retired on its next use. Retiring
 * stops its listener; connections already open on it finish as they are.
 *
 * A server's certificate may come from the CA's memory, up to the refresh age old; so a leaf is
 * served at most twice that age (60 days), within its 90 days of validity.
 */
export const manageHostServers = (library: LibraryServerTable, options: { readonly max: number; readonly now: () => number }): HostServers => {
  const table = library.sslServers
  if (table === undefined) throw new Error('http-mitm-proxy internals changed: no per-host server table after listen; pin http-mitm-proxy 1.1.0')
  const max = Math.max(1, options.max)
  // When each host's server was made, least recently used first.
  const made = new Map<string, number>()
  const retired = new Set<http.Server>()

  const retire = (host: string): void => {
    made.delete(host)
    const server = table[host]?.server
    delete table[host]
    if (server === undefined) return
    retired.add(server)
    server.close(() => retired.delete(server))
  }

  library.sslServers = new Proxy(table, {
    set: (target, host, entry: LibraryServer) => {
      if (typeof host !== 'string') return Reflect.set(target, host, entry)
      target[host] = entry
      made.delete(host)
      made.set(host, options.now())
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
    open: () => [...Object.values(table).flatMap((entry) => (entry?.server === undefined ? [] : [entry.server])), ...retired]
  }
}
