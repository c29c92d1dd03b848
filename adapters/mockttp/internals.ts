import type http from 'node:http'
import { type Server, type Socket } from 'node:net'
import type { Duplex } from 'node:stream'

import type { Mockttp } from 'mockttp'

import { answer, type Answer } from '../proxy/pipeline.js'
import { falseLoopMatches } from './loopCheck.js'

// The mockttp internals the adapter needs, in one place, each checked when the proxy starts
// (tested with mockttp 4.6.x; the peer range is ^4.6.5). mockttp has no public hook that decides
// a CONNECT, a request or an upgrade before it acts without buffering whole bodies (`beforeRequest`
// waits for the body). A release that moves one makes the proxy refuse to start, naming it.

interface Internals {
  /** The connect app whose middleware stack handles every request; ours goes first. */
  readonly app?: { readonly stack: Array<{ route: string; handle: Middleware }> }
  /** The listening server, assigned inside `start()`. */
  server?: Server
  /** The request rules; the passthrough rule's `handle` is wrapped, and its step's upstream sockets are what the loop check reads. */
  readonly requestRuleSets?: Record<string, Array<{ handle: RuleHandle; readonly steps?: ReadonlyArray<{ readonly outgoingSockets?: Set<Socket> }> }>>
}

type RuleHandle = (request: http.IncomingMessage, response: http.ServerResponse, options: unknown) => Promise<void>
/** A connect-style middleware. */
export type Middleware = (request: http.IncomingMessage, response: http.ServerResponse, next: () => void) => void
/** A `connect` or `upgrade` listener. */
export type SocketListener = (request: http.IncomingMessage, socket: Duplex, head: Buffer) => void

const changed = (what: string): Error => new Error(`mockttp internals changed: ${what}; use mockttp 4.6.x`)

/** The client connection under a request's socket: the raw socket beneath mockttp's TLS wrapper. */
export const clientSocketOf = (socket: Duplex): Duplex => (socket as Duplex & { _parent?: Duplex })._parent ?? socket

/** Puts `middleware` first in mockttp's request handling. */
export const decideRequestsFirst = (mock: Mockttp, middleware: Middleware): void => {
  const stack = (mock as unknown as Internals).app?.stack
  if (!Array.isArray(stack)) throw changed('no middleware stack')
  stack.unshift({ route: '', handle: middleware })
}

/** Replaces every listener of `event` with one that decides first and then calls them. */
export const wrapListeners = (server: Server, event: 'connect' | 'upgrade', wrap: (original: ReadonlyArray<SocketListener>, server: Server) => SocketListener): void => {
  const original = server.listeners(event) as Array<SocketListener>
  if (original.length === 0) throw changed(`no ${event} listener`)
  for (const listener of original) server.removeListener(event, listener as never)
  server.on(event, wrap(original, server))
}

/**
 * Catches the server mockttp creates inside `start()` as it is assigned, before it accepts a
 * connection: `prepare` binds its listen and wraps its listeners. Returns the server once started.
 */
export const catchServer = (mock: Mockttp, prepare: (server: Server) => void): (() => Server) => {
  let server: Server | undefined
  Object.defineProperty(mock, 'server', {
    configurable: true,
    enumerable: true,
    get: () => server,
    set: (value: Server | undefined) => {
      server = value
      if (value !== undefined) prepare(value)
    }
  })
  return () => {
    if (server === undefined) throw changed('no server was assigned')
    return server
  }
}

/**
 * Wraps the one passthrough rule's handler: its failures go to `failed` (mockttp would answer with
 * its own text, which names the internal address it dialled), and its loop check no longer takes a
 * client for one of its own upstream connections when only their local ends match (loopCheck.ts).
 */
export const guardPassthrough = (mock: Mockttp, failed: (error: unknown, response: http.ServerResponse) => void): void => {
  const rules = Object.values((mock as unknown as Internals).requestRuleSets ?? {}).flat()
  if (rules.length !== 1 || typeof rules[0]?.handle !== 'function') throw changed('no passthrough rule to guard')
  for (const rule of rules) {
    const handle = rule.handle.bind(rule)
    const outgoing = rule.steps?.[0]?.outgoingSockets
    if (!(outgoing instanceof Set)) throw changed('no upstream socket set on the passthrough step')
    rule.handle = (request, response, options) => {
      // The loop check runs synchronously as the call starts: sockets it would wrongly take for
      // this request's other end are out of its set for that moment only.
      const spared = falseLoopMatches(outgoing, request.socket)
      for (const socket of spared) outgoing.delete(socket)
      let handled: Promise<void>
      try {
        handled = handle(request, response, options)
      } finally {
        for (const socket of spared) if (!socket.destroyed) outgoing.add(socket)
      }
      return handled.catch((error: unknown) => failed(error, response))
    }
  }
}

/** The answer to a client that speaks HTTP/2: mockttp's handling of it is refused. */
export const HTTP2_REFUSED = 'Bad request: egress-guard does not accept HTTP/2 from clients; use HTTP/1.1'

/** Requests mockttp would mishandle, refused before the policy is asked: HTTP/2, HTTP/1.1 without Host, two Host headers (mockttp would forward both). */
export const malformed = (request: http.IncomingMessage): Answer | undefined => {
  if (request.httpVersionMajor === 2) return answer(400, HTTP2_REFUSED)
  if (request.httpVersion === '1.1' && request.headers.host === undefined) return answer(400, 'Bad request: an HTTP/1.1 request needs a Host header')
  if (request.rawHeaders.filter((name, i) => i % 2 === 0 && /^host$/i.test(name)).length > 1) return answer(400, 'Bad request: more than one Host header')
  return undefined
}
