import { connect, type Socket } from 'node:net'
import type { Duplex } from 'node:stream'

import type { Upstream } from './connectTo.js'

/** A CONNECT target: host (unbracketed) and port. */
export interface ConnectTarget {
  readonly host: string
  readonly port: number
}

/** Content type of every body egress-guard writes itself. */
export const PLAIN_TEXT = 'text/plain; charset=utf-8'

/** Reads the authority of a CONNECT request: `host:port` or `[v6]:port`; undefined when unreadable. */
export const connectTarget = (authority: string | undefined): ConnectTarget | undefined => {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):([0-9]{1,5})$/.exec(authority ?? '')
  const port = Number(match?.[3])
  const host = match?.[1] ?? match?.[2]
  return host === undefined || !(port >= 1 && port <= 65535) ? undefined : { host, port }
}

/**
 * Opens a raw TCP tunnel (no interception) from an accepted CONNECT to the upstream. A failure
 * before the tunnel exists gets a 502 status line, again because undici retries a silent close.
 */
export const openTunnel = (client: Duplex, head: Buffer, upstream: Upstream): void => {
  const server: Socket = connect({ host: upstream.host, port: upstream.port })
  let established = false
  server.setNoDelay(true)
  server.once('connect', () => {
    established = true
    client.write('HTTP/1.1 200 Connection Established\r\n\r\n')
    if (head.length > 0) server.write(head)
    client.pipe(server)
    server.pipe(client)
  })
  server.on('error', (error: NodeJS.ErrnoException) => {
    if (established) client.destroy()
    else client.end(`HTTP/1.1 502 Bad Gateway\r\nContent-Type: ${PLAIN_TEXT}\r\nConnection: close\r\n\r\nBad gateway: egress-guard could not open the tunnel (${error.code ?? 'ERROR'})`)
  })
  client.on('error', () => server.destroy())
  client.on('close', () => server.destroy())
}
