import { createHash, timingSafeEqual } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { isIP } from 'node:net'

import * as E from 'fp-ts/lib/Either.js'

import { parseMode, type ProxyMode } from '../../core/index.js'
import type { Logger } from '../ports.js'
import { hostForUrl } from '../upstream/connectTo.js'

// The admin listener (docs/spec.md §14): metrics, health, readiness and the mode, on an address of
// its own. Every request needs `Authorization: Bearer <admin token>` except /healthz, /readyz and,
// when the listener and the proxy are both on loopback addresses, /metrics. Bad input gets a 4xx that says what to
// send, and changes nothing.

/** What readiness checks: the policy is loaded, the CA is ready, every audit sink takes records. */
export interface Readiness {
  readonly ready: boolean
  readonly checks: Readonly<Record<string, boolean>>
}

/** What the admin listener serves, in one process or for a pool of workers. */
export interface AdminBackend {
  readonly metrics: () => Promise<{ readonly contentType: string; readonly text: string }>
  readonly readiness: () => Promise<Readiness>
  /** The mode in force; undefined when no worker answered. */
  readonly mode: () => Promise<ProxyMode | undefined>
  /** Switches the mode live (every worker's), as the policy's override. */
  readonly setMode: (mode: ProxyMode) => Promise<void>
}

/** Where the admin listener listens, and who may use it. */
export interface AdminOptions {
  readonly host: string
  readonly port: number
  /** The admin token; without one, only the endpoints that need none answer. */
  readonly token: string | undefined
  /**
   * `/metrics` without the token: only on a loopback listener, and only when the proxy itself
   * listens on loopback too (a proxy client elsewhere could reach 127.0.0.1 through it).
   */
  readonly openMetrics: boolean
  readonly backend: AdminBackend
  readonly log: Logger
}

/** A running admin listener. */
export interface RunningAdmin {
  readonly url: string
  readonly close: () => Promise<void>
}

/** Admin tokens shorter than this are refused at start. */
export const MIN_ADMIN_TOKEN_LENGTH = 16
/** A PUT body larger than this is refused (a mode is a few bytes). */
const MAX_BODY_BYTES = 4_096

/** True for an address only this machine can reach. */
export const isLoopbackAddress = (host: string): boolean => {
  const bare = host.replace(/^\[|\]$/g, '').toLowerCase()
  return bare === 'localhost' || bare === '::1' || (isIP(bare) === 4 && bare.startsWith('127.'))
}

/** Parses `--admin HOST:PORT` (an IPv6 host in brackets). */
export const parseAdminAddress = (text: string): E.Either<string, { readonly host: string; readonly port: number }> => {
  const match = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+):([0-9]{1,5})$/.exec(text)
  const port = Number(match?.[2])
  if (match === null || port > 65535) return E.left(`--admin \`${text.slice(0, 64)}\`: expected HOST:PORT, such as 127.0.0.1:9090 or [::1]:9090`)
  return E.right({ host: (match[1] ?? '').replace(/^\[|\]$/g, ''), port })
}

/** Checks an admin token given at start: long enough to resist guessing. */
export const checkAdminToken = (token: string | undefined): string | undefined =>
  token === undefined || token.length >= MIN_ADMIN_TOKEN_LENGTH ? undefined : `the admin token is shorter than ${MIN_ADMIN_TOKEN_LENGTH} characters; make one with \`openssl rand -hex 32\``

const digest = (text: string): Buffer => createHash('sha256').update(text).digest()

const sendJson = (response: ServerResponse, status: number, body: unknown, headers: Readonly<Record<string, string>> = {}): void => {
  const text = `${JSON.stringify(body)}\n`
  response.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': String(Buffer.byteLength(text)), 'cache-control': 'no-store', ...headers })
  response.end(text)
}

const problem = (response: ServerResponse, status: number, message: string, headers: Readonly<Record<string, string>> = {}): void => sendJson(response, status, { error: message }, headers)

/** Reads a body up to MAX_BODY_BYTES; undefined when it is larger (the rest is read and thrown away, so the answer reaches the client). */
const readBody = (request: IncomingMessage): Promise<string | undefined> =>
  new Promise((resolve, reject) => {
    const chunks: Array<Buffer> = []
    let size = 0
    request.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size <= MAX_BODY_BYTES) chunks.push(chunk)
    })
    request.on('end', () => resolve(size > MAX_BODY_BYTES ? undefined : Buffer.concat(chunks).toString('utf8')))
    request.on('error', reject)
  })

const ROUTES: Readonly<Record<string, ReadonlyArray<string>>> = { '/healthz': ['GET', 'HEAD'], '/readyz': ['GET', 'HEAD'], '/metrics': ['GET', 'HEAD'], '/proxy/mode': ['GET', 'HEAD', 'PUT'] }

/** Starts the admin listener. */
export const startAdmin = async (options: AdminOptions): Promise<RunningAdmin> => {
  const { backend, log } = options
  const expected = options.token === undefined ? undefined : digest(options.token)

  // INVARIANT: tokens are compared as digests of equal length, in constant time.
  const authorized = (request: IncomingMessage): boolean => {
    const given = /^Bearer +(\S+) *$/i.exec(request.headers.authorization ?? '')?.[1]
    return expected !== undefined && given !== undefined && timingSafeEqual(digest(given), expected)
  }

  const putMode = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const text = await readBody(request)
    if (text === undefined) return problem(response, 413, `the body is larger than ${MAX_BODY_BYTES} bytes; send {"mode": "..."}`)
    let body: unknown
    try {
      body = JSON.parse(text)
    } catch {
      return problem(response, 400, 'the body is not JSON; send {"mode": "..."}')
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body) || Object.keys(body).some((k) => k !== 'mode')) return problem(response, 400, 'expected a JSON object with `mode` alone: {"mode": "..."}')
    const mode = parseMode((body as { mode?: unknown }).mode)
    if (E.isLeft(mode)) return problem(response, 400, mode.left.message)
    await backend.setMode(mode.right)
    log('info', `admin: mode set to ${mode.right}`)
    await sendMode(response)
  }

  const sendMode = async (response: ServerResponse): Promise<void> => {
    const mode = await backend.mode()
    if (mode === undefined) return problem(response, 503, 'no worker answered; retry in a moment')
    sendJson(response, 200, { mode })
  }

  const handle = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const path = (request.url ?? '/').split('?')[0] ?? '/'
    const methods = ROUTES[path]
    if (methods === undefined) return problem(response, 404, `no such endpoint; the admin listener serves ${Object.keys(ROUTES).join(', ')}`)
    const method = request.method ?? 'GET'
    if (!methods.includes(method)) return problem(response, 405, `${path} takes ${methods.join(', ')}`, { allow: methods.join(', ') })
    if (path === '/healthz') return sendJson(response, 200, { status: 'ok' })
    if (path === '/readyz') {
      const readiness = await backend.readiness()
      return sendJson(response, readiness.ready ? 200 : 503, { status: readiness.ready ? 'ready' : 'not ready', checks: readiness.checks })
    }
    const open = path === '/metrics' && options.openMetrics
    if (!open && expected === undefined) return problem(response, 403, `${path} needs the admin token, and none is set; start serve with $EGRESS_GUARD_ADMIN_TOKEN (or --admin-token)`)
    if (!open && !authorized(request)) return problem(response, 401, `${path} needs \`Authorization: Bearer <admin token>\``, { 'www-authenticate': 'Bearer realm="egress-guard admin"' })
    if (path === '/metrics') {
      const metrics = await backend.metrics()
      response.writeHead(200, { 'content-type': metrics.contentType, 'content-length': String(Buffer.byteLength(metrics.text)), 'cache-control': 'no-store' })
      return void response.end(metrics.text)
    }
    if (method === 'PUT') return putMode(request, response)
    return sendMode(response)
  }

  const server: Server = createServer({ requestTimeout: 10_000, headersTimeout: 10_000 }, (request, response) => {
    handle(request, response).catch(() => {
      if (!response.headersSent) problem(response, 500, 'the admin request failed inside egress-guard; see its log')
      else response.destroy()
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port, options.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : options.port
  return {
    url: `http://${hostForUrl(options.host)}:${port}`,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      })
  }
}
