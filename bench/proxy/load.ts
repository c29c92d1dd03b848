// The proxy benchmark's load generator: undici with kept-alive connections, HTTPS through CONNECT,
// driven through undici's low-level `dispatch` (its cheapest API, so that the client takes as
// little of this 2-core machine as it can). Every answer is checked against what the
// configuration must answer, so a run measures what it claims to.
import { performance } from 'node:perf_hooks'

import { ProxyAgent, type Dispatcher } from 'undici'

/** Requests per second and latency percentiles of one measurement. */
export interface Measured {
  /** Answered requests a second, over the time the measurement really took. */
  readonly rps: number
  /** Requests answered as expected. */
  readonly requests: number
  readonly p50_ms: number
  readonly p99_ms: number
  /** Requests that failed or answered anything but the expected status and body. */
  readonly errors: number
  /** What the first of those got (status and the start of the body, or the error), for diagnosis. */
  readonly firstFailure?: string
}

/** A configuration under load: where requests go, and what each must answer. */
export interface Target {
  readonly dispatcher: Dispatcher
  readonly origin: string
  readonly path: string
  /** The body every answer must have (the stand-in upstream says which Authorization it saw). */
  readonly expect: string
}

/** The value at percentile `p` of sorted values. */
export const percentile = (sorted: ReadonlyArray<number>, p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN

/** One request; resolves with its latency in ms, or what went wrong. */
const request = (target: Target): Promise<number | string> =>
  new Promise((resolve) => {
    const start = performance.now()
    let status = 0
    let body = ''
    target.dispatcher.dispatch(
      { origin: target.origin, path: target.path, method: 'GET' },
      {
        onConnect: () => undefined,
        onHeaders: (statusCode: number) => {
          status = statusCode
          return true
        },
        onData: (chunk: Buffer) => {
          body += chunk.toString()
          return true
        },
        onComplete: () => resolve(status === 200 && body === target.expect ? performance.now() - start : `${status} ${body.slice(0, 120)}`),
        onError: (error: Error) => resolve(`${(error as NodeJS.ErrnoException).code ?? error.name}: ${error.message.slice(0, 120)}`)
      } as unknown as Dispatcher.DispatchHandler
    )
  })

/**
 * `connections` loops, each sending its next request when the last one is answered, for `seconds`.
 * With `rate`, the loops together send `rate` requests a second at most (a background load).
 */
export const measure = async (target: Target, seconds: number, connections: number, rate?: number): Promise<Measured> => {
  const latencies: Array<number> = []
  let errors = 0
  let firstFailure: string | undefined
  const started = performance.now()
  const end = started + seconds * 1000
  const interval = rate === undefined ? 0 : (1000 * connections) / rate
  await Promise.all(
    Array.from({ length: connections }, async (_, loop) => {
      for (let n = 0; ; n++) {
        const due = started + (n + loop / connections) * interval
        if (due > end || performance.now() > end) return
        const wait = due - performance.now()
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
        const latency = await request(target)
        if (typeof latency === 'number') latencies.push(latency)
        else {
          errors++
          firstFailure ??= latency
        }
      }
    })
  )
  // Divided by the time the loops really took: requests still in flight at `end` finish after it.
  const elapsedSeconds = (performance.now() - started) / 1000
  latencies.sort((a, b) => a - b)
  return { rps: latencies.length / elapsedSeconds, requests: latencies.length, p50_ms: percentile(latencies, 50), p99_ms: percentile(latencies, 99), errors, ...(firstFailure === undefined ? {} : { firstFailure }) }
}

/** A dispatcher through a proxy at `proxyUrl`, trusting its CA (and the stand-in's, for tunnels). */
export const throughProxy = (proxyUrl: string, trusted: ReadonlyArray<string>, connections: number): ProxyAgent =>
  new ProxyAgent({ uri: proxyUrl, requestTls: { ca: [...trusted] }, connections })

/**
 * The first request to a host, on a connection of its own: CONNECT, a leaf certificate for the
 * host, the TLS handshake, the upstream connection and the request. Resolves with its latency.
 */
/** One request through its own connection to the proxy, as `firstRequest`, but a failure is returned as text, never thrown. */
export const tryFirstRequest = async (proxyUrl: string, trusted: ReadonlyArray<string>, origin: string, path: string, expect: string): Promise<number | string> => {
  const dispatcher = throughProxy(proxyUrl, trusted, 1)
  try {
    return await request({ dispatcher, origin, path, expect })
  } catch (error) {
    return error instanceof Error ? error.message : 'failed'
  } finally {
    await dispatcher.close().catch(() => undefined)
  }
}

export const firstRequest = async (proxyUrl: string, trusted: ReadonlyArray<string>, origin: string, path: string, expect: string): Promise<number> => {
  const dispatcher = throughProxy(proxyUrl, trusted, 1)
  try {
    const latency = await request({ dispatcher, origin, path, expect })
    if (typeof latency !== 'number') throw new Error(`the first request to ${origin} got ${latency}`)
    return latency
  } finally {
    await dispatcher.close()
  }
}

/** Downloads `path` once through a new connection to the proxy; resolves with MB/s (MiB of body a second), or throws. */
export const download = async (proxyUrl: string, trusted: ReadonlyArray<string>, origin: string, path: string): Promise<number> => {
  const dispatcher = throughProxy(proxyUrl, trusted, 1)
  try {
    const bytes = await new Promise<{ bytes: number; ms: number }>((resolve, reject) => {
      const start = performance.now()
      let status = 0
      let received = 0
      dispatcher.dispatch(
        { origin, path, method: 'GET' },
        {
          onConnect: () => undefined,
          onHeaders: (statusCode: number) => {
            status = statusCode
            return true
          },
          onData: (chunk: Buffer) => {
            received += chunk.length
            return true
          },
          onComplete: () => (status === 200 ? resolve({ bytes: received, ms: performance.now() - start }) : reject(new Error(`status ${status}`))),
          onError: reject
        } as unknown as Dispatcher.DispatchHandler
      )
    })
    return bytes.bytes / (1024 * 1024) / (bytes.ms / 1000)
  } finally {
    await dispatcher.close()
  }
}
