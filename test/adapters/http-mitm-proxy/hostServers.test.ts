// The per-host server table of http-mitm-proxy as the adapter keeps it, with real listening
// servers standing in for the library's: which are retired, when, and that they really close.
import http from 'node:http'
import type { AddressInfo, Socket } from 'node:net'

import { afterAll, describe, expect, it } from 'vitest'

import { manageHostServers, type LibraryServerTable } from '../../../adapters/http-mitm-proxy/hostServers.js'

const DAY = 24 * 60 * 60 * 1000
const HOUR = 60 * 60 * 1000
const started: Array<http.Server> = []

const listeningServer = async (): Promise<http.Server> => {
  const server = http.createServer()
  started.push(server)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return server
}
// Resolves when the server has stopped listening and its connections have ended.
const closed = (server: http.Server): Promise<void> => new Promise((resolve) => server.once('close', () => resolve()))

afterAll(async () => {
  await Promise.all(started.map((server) => new Promise((resolve) => server.close(resolve))))
})

const table = (library: LibraryServerTable) => library.sslServers ?? {}

describe('the adapter’s table of per-host servers', () => {
  let now = 0
  const manage = (max: number, graceMs = 10) => {
    const library: LibraryServerTable = { sslServers: {} }
    return { library, servers: manageHostServers(library, { max, now: () => now, graceMs }) }
  }

  it('retires the least recently used host beyond the bound, not the first made', async () => {
    const { library, servers } = manage(2)
    const [a, b, c] = [await listeningServer(), await listeningServer(), await listeningServer()]
    table(library)['a'] = { server: a }
    table(library)['b'] = { server: b }
    servers.use('a')
    table(library)['c'] = { server: c }
    await closed(b)
    expect(Object.keys(table(library)).sort()).toEqual(['a', 'c'])
    expect([a.listening, c.listening]).toEqual([true, true])
    expect(servers.open()).toEqual([a, c])
  })

  it('keeps a retired server listening for the grace period, then closes it', async () => {
    const { library, servers } = manage(1, 300)
    const [a, b] = [await listeningServer(), await listeningServer()]
    table(library)['a'] = { server: a }
    table(library)['b'] = { server: b }
    expect(Object.keys(table(library))).toEqual(['b'])
    expect(a.listening).toBe(true)
    expect(servers.open()).toContain(a)
    // Timers fire in the order they expire: a 100 ms one fires before the 300 ms grace ends, however slow the machine.
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect(a.listening).toBe(true)
    await closed(a)
    expect(servers.open()).toEqual([b])
  })

  it('leaves a retired server’s kept-alive connections open when it stops listening; it closes once they end', async () => {
    const { library, servers } = manage(1)
    const server = http.createServer((_request, response) => response.end('ok'))
    started.push(server)
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const { port } = server.address() as AddressInfo
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
    const get = () =>
      new Promise<{ body: string; socket: Socket }>((resolve, reject) => {
        const request = http.get({ host: '127.0.0.1', port, agent }, (response) => {
          let body = ''
          response.on('data', (chunk: Buffer) => (body += chunk.toString()))
          response.on('end', () => resolve({ body, socket: request.socket as Socket }))
        })
        request.on('error', reject)
      })
    const first = await get()
    table(library)['a'] = { server }
    table(library)['b'] = { server: await listeningServer() } // retires a
    for (let i = 0; i < 50 && server.listening; i++) await new Promise((resolve) => setTimeout(resolve, 10))
    expect(server.listening).toBe(false)
    const second = await get() // over the kept-alive connection, after the listener closed
    expect(second.body).toBe('ok')
    expect(second.socket).toBe(first.socket)
    expect(servers.open()).toContain(server)
    // Once they end, http's own close() runs too, which releases the server's timers.
    const httpClose = server.close.bind(server)
    let httpClosed = 0
    server.close = (...args: Parameters<typeof httpClose>) => {
      httpClosed++
      return httpClose(...args)
    }
    const gone = closed(server)
    agent.destroy()
    await gone
    expect(servers.open()).not.toContain(server)
    expect(httpClosed).toBe(1)
  })

  it('closes a server the library replaces with another for the same host', async () => {
    const { library, servers } = manage(8)
    const [first, second] = [await listeningServer(), await listeningServer()]
    table(library)['a'] = { server: first }
    table(library)['a'] = { server: second }
    await closed(first)
    expect(second.listening).toBe(true)
    expect(servers.open()).toEqual([second])
  })

  it('retires a server 30 days old on its host’s next use, and one from before a clock step back of over an hour', async () => {
    const { library, servers } = manage(8)
    const [a, b] = [await listeningServer(), await listeningServer()]
    now = 100 * DAY
    table(library)['a'] = { server: a }
    table(library)['b'] = { server: b }
    now += 30 * DAY - 1
    servers.use('a')
    expect(table(library)['a']?.server).toBe(a)
    now += 1
    servers.use('a')
    expect(table(library)['a']).toBeUndefined()
    await closed(a)
    now = 100 * DAY - HOUR
    servers.use('b')
    expect(table(library)['b']?.server).toBe(b)
    now -= 1
    servers.use('b')
    expect(table(library)['b']).toBeUndefined()
    await closed(b)
  })

  it('stops retired listeners at once when the proxy stops, and closes a server added after', async () => {
    const { library, servers } = manage(1, 60_000)
    const [a, b, late] = [await listeningServer(), await listeningServer(), await listeningServer()]
    table(library)['a'] = { server: a }
    table(library)['b'] = { server: b } // retires a, for a minute
    expect(a.listening).toBe(true)
    servers.close()
    expect(a.listening).toBe(false)
    table(library)['late'] = { server: late }
    expect(late.listening).toBe(false)
    expect(table(library)['late']).toBeUndefined()
  })

  it('refuses a bound that is not a whole number of at least 1', () => {
    for (const max of [0, -1, 1.5, Number.NaN]) {
      expect(() => manageHostServers({ sslServers: {} }, { max, now: () => 0 })).toThrow('expected a whole number of at least 1')
    }
  })
})
