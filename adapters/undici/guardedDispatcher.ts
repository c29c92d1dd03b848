import { Agent, Dispatcher, getGlobalDispatcher, setGlobalDispatcher } from 'undici'

import type { DenyReason, RequestFacts } from '../../core/index.js'
import type { Guard } from '../guard/createGuard.js'
import { decideFacts } from '../proxy/pipeline.js'
import { parseTarget } from '../proxy/requestFacts.js'

/**
 * The error a request egress-guard did not send fails with: the status, reason and body a proxy
 * would have answered (a refusal by policy, or the failure policy's 403 or 502).
 */
export class EgressGuardDenied extends Error {
  readonly reason: DenyReason
  readonly status: number
  readonly body: string

  constructor(reason: DenyReason, body: string, status = 403) {
    super(`egress-guard denied the request (${reason}): ${body}`)
    this.name = 'EgressGuardDenied'
    this.reason = reason
    this.status = status
    this.body = body
  }
}

type Headers = Dispatcher.DispatchOptions['headers']
type HeaderPairs = Array<[string, string]>

const text = (value: unknown): string => (Buffer.isBuffer(value) ? value.toString('latin1') : String(value))
const pairsFrom = (name: unknown, value: unknown): HeaderPairs =>
  value === undefined || value === null ? [] : Array.isArray(value) ? value.map((v) => [text(name), text(v)] as [string, string]) : [[text(name), text(value)]]

// undici accepts headers as an object, a flat [name, value, …] array (a value may itself be an
// array of values) or an iterable of [name, value] pairs. A flat array of odd length is not a
// header list: reading it throws, and the request is denied as `internal_error`.
const pairsOf = (headers: Headers): HeaderPairs => {
  if (headers === undefined || headers === null) return []
  if (Array.isArray(headers) && !Array.isArray(headers[0])) {
    const flat = headers as ReadonlyArray<unknown>
    if (flat.length % 2 !== 0) throw new Error('a flat header array needs a value for every name')
    const pairs: HeaderPairs = []
    for (let i = 0; i < flat.length; i += 2) pairs.push(...pairsFrom(flat[i], flat[i + 1]))
    return pairs
  }
  if (typeof (headers as Iterable<unknown>)[Symbol.iterator] === 'function') {
    return [...(headers as Iterable<readonly [unknown, unknown]>)].flatMap(([k, v]) => pairsFrom(k, v))
  }
  return Object.entries(headers as Record<string, unknown>).flatMap(([k, v]) => pairsFrom(k, v))
}

const withCredentials = (headers: Headers, credentials: Readonly<Record<string, string>>): Array<string> => {
  const replaced = new Set(Object.keys(credentials).map((n) => n.toLowerCase()))
  const kept = pairsOf(headers).filter(([name]) => !replaced.has(name.toLowerCase()) && !/^proxy-/i.test(name))
  return [...kept, ...Object.entries(credentials)].flat()
}

const factsOf = (options: Dispatcher.DispatchOptions): RequestFacts => {
  const origin = new URL(String(options.origin))
  const scheme = origin.protocol.replace(/:$/, '')
  const host = pairsOf(options.headers).find(([name]) => name.toLowerCase() === 'host')?.[1]
  // The target is read as every engine reads it (an absolute-form one by WHATWG; see requestFacts.ts).
  const target = parseTarget(options.path)
  return {
    scheme,
    host: origin.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: origin.port !== '' ? Number(origin.port) : scheme === 'https' ? 443 : 80,
    path: target.path,
    method: options.method,
    ...(host === undefined ? {} : { hostHeader: host }),
    ...(target.absoluteUriHost === undefined ? {} : { absoluteUriHost: target.absoluteUriHost })
  }
}

// Handlers come in undici 7's style (onResponseError) or the legacy one (onError) that Node's
// bundled undici uses for the global fetch: a denial is reported in whichever the handler speaks.
const fail = (handler: Dispatcher.DispatchHandler, error: Error): void => {
  const h = handler as { onResponseError?: (controller: unknown, error: Error) => void; onError?: (error: Error) => void }
  if (typeof h.onResponseError === 'function') h.onResponseError(null, error)
  else h.onError?.(error)
}

/**
 * A dispatcher that applies the guard to every request made through it, in process: credential
 * headers are set (replacing the caller's), denied requests fail with `EgressGuardDenied`, and
 * everything else goes to `base` unchanged. There is no proxy, so the dialled address is not
 * checked (undici resolves names itself); use the proxy adapter where that matters.
 */
export class GuardedDispatcher extends Dispatcher {
  readonly #guard: Guard
  readonly #base: Dispatcher

  constructor(guard: Guard, base: Dispatcher = new Agent()) {
    super()
    this.#guard = guard
    this.#base = base
  }

  override dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    let facts: RequestFacts | undefined
    let accept: string | undefined
    try {
      accept = pairsOf(options.headers).find(([name]) => name.toLowerCase() === 'accept')?.[1]
      facts = factsOf(options)
    } catch {
      // Unreadable: decided by the failure policy below.
    }
    // INVARIANT: `maxRedirections: 0` turns off undici's redirect interceptor in `base`, so a
    // redirect comes back to the caller, whose next hop is a new request decided anew.
    void decideFacts(this.#guard, facts, accept, { method: options.method, path: String(options.path) }).then((step) => {
      if (step._tag === 'Answer') return fail(handler, new EgressGuardDenied((step.headers['X-Egress-Guard-Reason'] ?? 'internal_error') as DenyReason, step.body, step.status))
      try {
        this.#base.dispatch({ ...options, headers: withCredentials(options.headers, step.credentials), maxRedirections: 0 } as Dispatcher.DispatchOptions, handler)
      } catch (error) {
        fail(handler, error instanceof Error ? error : new Error('egress-guard could not send the request'))
      }
    })
    return true
  }

  override close(): Promise<void>
  override close(callback: () => void): void
  override close(callback?: () => void): Promise<void> | void {
    return callback === undefined ? this.#base.close() : this.#base.close(callback)
  }

  override destroy(): Promise<void>
  override destroy(error: Error | null): Promise<void>
  override destroy(callback: () => void): void
  override destroy(error: Error | null, callback: () => void): void
  override destroy(a?: Error | null | (() => void), b?: () => void): Promise<void> | void {
    if (typeof a === 'function') return this.#base.destroy(a)
    if (b !== undefined) return this.#base.destroy(a ?? null, b)
    return this.#base.destroy(a ?? null)
  }
}

/**
 * Makes every `fetch` and undici request of this process go through the guard, Node's built-in
 * `fetch` included (both read the same global dispatcher). Returns a function that restores the
 * previous dispatcher. `fetch` follows redirects above the dispatcher, so each hop is decided
 * anew. `base` (a fresh Agent by default) must not follow redirects itself: a hop it followed would
 * carry the injected credentials without asking the guard. undici's redirect interceptor is turned
 * off for every request the guard forwards; a redirect-following dispatcher of another kind is not.
 */
export const installGlobalGuard = (guard: Guard, base: Dispatcher = new Agent()): (() => void) => {
  const previous = getGlobalDispatcher()
  setGlobalDispatcher(new GuardedDispatcher(guard, base))
  return () => setGlobalDispatcher(previous)
}
