import type { ServerResponse } from 'node:http'
import { Transform, type Readable, type Writable } from 'node:stream'
import zlib from 'node:zlib'

import { scrub, scrubChunk, type ScrubRule } from '../../core/index.js'

// The response side of the secret in both directions (docs/spec.md §13): in the response to an
// injected request, every form of an injected value (core/Secrets.ts) reaches the client as the
// placeholder, or `[redacted]`. Headers are scrubbed whole; bodies stream through with bounded
// memory: each chunk is scrubbed with the bytes kept back from the one before, and only bytes that
// could begin a value still to come are kept back (a server-sent event is never held for the next).

/** Response headers with every injected value scrubbed from their values. */
export const scrubbedHeaders = (rules: ReadonlyArray<ScrubRule>, headers: Record<string, string | string[]>): Record<string, string | string[]> => {
  const out: Record<string, string | string[]> = {}
  for (const [name, value] of Object.entries(headers)) out[name] = Array.isArray(value) ? value.map((one) => scrub(rules, one)) : scrub(rules, value)
  return out
}

/** A stream that scrubs the bytes going through it, a value split across chunks included. */
export const scrubbingStream = (rules: ReadonlyArray<ScrubRule>): Transform => {
  let kept = ''
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      const next = scrubChunk(rules, kept, chunk.toString('latin1'))
      kept = next.kept
      callback(null, next.send === '' ? undefined : Buffer.from(next.send, 'latin1'))
    },
    flush(callback) {
      callback(null, kept === '' ? undefined : Buffer.from(kept, 'latin1'))
    }
  })
}

/** Where a scrubbed body is written (as it came from the upstream) and read (decoded, scrubbed). */
export interface ScrubbedBody {
  readonly input: Writable
  readonly output: Readable
}

const decoderFor = (coding: string): Transform | undefined => {
  switch (coding) {
    case 'gzip':
    case 'x-gzip':
      return zlib.createGunzip()
    case 'deflate':
      return zlib.createInflate()
    case 'br':
      return zlib.createBrotliDecompress()
    default:
      return undefined
  }
}

type HeaderValue = string | ReadonlyArray<string> | undefined

const DECODED_CODINGS = new Set(['gzip', 'x-gzip', 'deflate', 'br'])

/**
 * The codings to undo before a body can be scrubbed, in the order to undo them: content codings
 * were applied first, then transfer codings (but `chunked`, which the HTTP layer undoes). Undefined
 * when one of them cannot be undone.
 */
export const codingsToUndo = (contentEncoding: HeaderValue, transferEncoding?: HeaderValue): ReadonlyArray<string> | undefined => {
  const codings = [...codingsOf(contentEncoding), ...codingsOf(transferEncoding).filter((c) => c !== 'chunked')].reverse()
  return codings.every((c) => DECODED_CODINGS.has(c)) ? codings : undefined
}

const codingsOf = (value: HeaderValue): ReadonlyArray<string> =>
  (Array.isArray(value) ? value.join(',') : ((value as string | undefined) ?? ''))
    .split(',')
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c !== '' && c !== 'identity')

/**
 * A body's scrubber for its `Content-Encoding` and any transfer coding but `chunked` (`Transfer-
 * Encoding: gzip, chunked`, which the HTTP layer does not undo): gzip, deflate and br are decoded
 * first (the client gets the body decoded); undefined for any other coding, which cannot be read
 * and must not be passed on (the request's `Accept-Encoding` offered none of them).
 */
export const scrubbedBody = (rules: ReadonlyArray<ScrubRule>, contentEncoding: HeaderValue, transferEncoding?: HeaderValue): ScrubbedBody | undefined => {
  const codings = codingsToUndo(contentEncoding, transferEncoding)
  if (codings === undefined) return undefined
  const scrubber = scrubbingStream(rules)
  if (codings.length === 0) return { input: scrubber, output: scrubber }
  const decoders = codings.map(decoderFor) as Array<Transform>
  const chain = [...(decoders as Array<Transform>), scrubber]
  for (let i = 0; i + 1 < chain.length; i++) {
    const from = chain[i] as Transform
    const to = chain[i + 1] as Transform
    from.pipe(to)
    from.on('error', (error) => to.destroy(error))
  }
  return { input: chain[0] as Transform, output: scrubber }
}

/** The headers of a response whose body is scrubbed: no length (scrubbing changes it), and no coding once decoded. */
export const scrubbedBodyHeaders = (headers: Record<string, string | string[]>): Record<string, string | string[]> => {
  const out = { ...headers }
  delete out['content-length']
  delete out['content-encoding']
  return out
}

/** What a response from a library is answered with when its body is in a coding that cannot be read. */
export const UNREADABLE_CODING = 'Bad gateway: egress-guard cannot scrub a response in this content coding'

type HeaderList = Record<string, string | string[] | number> | ReadonlyArray<string> | ReadonlyArray<readonly [string, string]>

/** Headers as writeHead takes them (an object, a flat list, or name/value pairs) as one object; repeated names become lists. */
const headerObject = (headers: HeaderList | undefined): Record<string, string | string[]> => {
  const out: Record<string, string | string[]> = {}
  const add = (name: string, value: string): void => {
    const key = name.toLowerCase()
    const known = out[key]
    out[key] = known === undefined ? value : [...(Array.isArray(known) ? known : [known]), value]
  }
  if (headers === undefined) return out
  if (!Array.isArray(headers)) {
    for (const [name, value] of Object.entries(headers)) for (const one of Array.isArray(value) ? value : [value]) add(name, String(one))
    return out
  }
  if (headers.length > 0 && Array.isArray(headers[0])) for (const [name, value] of headers as ReadonlyArray<readonly [string, string]>) add(name, String(value))
  else for (let i = 0; i + 1 < headers.length; i += 2) add(String(headers[i]), String(headers[i + 1]))
  return out
}

/** A library's response to a client, as far as scrubbing needs it. */
type LibraryResponse = ServerResponse

/**
 * Scrubs whatever a proxy library writes to a client's response (http-mitm-proxy, mockttp): its
 * headers when they are written, then every byte of the body, decoded when compressed, with the
 * library's backpressure kept (a write returns false until the scrubber drains). A body in a
 * coding that cannot be read is answered 502 instead, and the library's writes are dropped.
 */
export const scrubResponseWrites = (response: LibraryResponse, rules: ReadonlyArray<ScrubRule>): void => {
  if (rules.length === 0) return
  const writeHead = response.writeHead.bind(response) as (status: number, ...rest: Array<unknown>) => LibraryResponse
  const write = response.write.bind(response) as (chunk: unknown, ...rest: Array<unknown>) => boolean
  const end = response.end.bind(response) as (...rest: Array<unknown>) => LibraryResponse
  let body: ScrubbedBody | undefined
  let dropped = false
  let libraryEnded = false
  const patched = response as unknown as Record<string, unknown>
  patched['writeHead'] = (status: number, ...rest: Array<unknown>): LibraryResponse => {
    const message = typeof rest[0] === 'string' ? (rest.shift() as string) : undefined
    const given = headerObject(rest[0] as HeaderList | undefined)
    for (const name of response.getHeaderNames()) {
      given[name] ??= response.getHeader(name) as string | string[]
      response.removeHeader(name)
    }
    body = scrubbedBody(rules, given['content-encoding'], given['transfer-encoding'])
    if (body === undefined) {
      dropped = true
      writeHead(502, { 'content-type': 'text/plain; charset=utf-8', 'content-length': String(Buffer.byteLength(UNREADABLE_CODING)) })
      end(UNREADABLE_CODING)
      return response
    }
    const { input, output } = body
    input.on('drain', () => response.emit('drain'))
    output.on('data', (chunk: Buffer) => write(chunk) || output.pause())
    response.on('drain', () => output.resume())
    output.on('end', () => end())
    output.on('error', () => response.destroy())
    const headers = scrubbedBodyHeaders(scrubbedHeaders(rules, given))
    delete headers['transfer-encoding']
    // Its length unknown, the body is sent in chunks, so a response cut short shows as cut (a
    // library may have ruled chunks out for a body of known length; an HTTP/1.0 client gets none).
    if ((response as { useChunkedEncodingByDefault?: boolean }).useChunkedEncodingByDefault !== false && status !== 204 && status !== 304) headers['transfer-encoding'] = 'chunked'
    return message === undefined ? writeHead(status, headers) : writeHead(status, scrub(rules, message), headers)
  }
  // Trailers are scrubbed like headers; informational answers (103 Early Hints, …) are not passed
  // on, but for 100 Continue, which carries nothing. mockttp sets its own sender after this runs:
  // what it sets is kept behind the guard.
  const addTrailers = response.addTrailers.bind(response)
  patched['addTrailers'] = (trailers: HeaderList): void => addTrailers(scrubbedHeaders(rules, headerObject(trailers)))
  const skip = (...args: Array<unknown>): void => void (args.find((a) => typeof a === 'function') as (() => void) | undefined)?.()
  for (const name of ['writeEarlyHints', 'writeProcessing']) if (typeof patched[name] === 'function') patched[name] = skip
  let informational = patched['sendInformationalResponse'] as ((status: number, headers: unknown) => void) | undefined
  Object.defineProperty(response, 'sendInformationalResponse', {
    configurable: true,
    get: () => (status: number, headers: unknown) => (status === 100 ? informational?.(status, headers) : undefined),
    set: (sender: (status: number, headers: unknown) => void) => {
      informational = sender
    }
  })
  patched['write'] = (chunk: unknown, ...rest: Array<unknown>): boolean => {
    if (!response.headersSent && body === undefined && !dropped) (patched['writeHead'] as (status: number) => void)(response.statusCode)
    const callback = rest.find((r) => typeof r === 'function') as (() => void) | undefined
    if (dropped || libraryEnded || body === undefined) {
      callback?.()
      return true
    }
    return body.input.write(typeof chunk === 'string' ? Buffer.from(chunk, typeof rest[0] === 'string' ? (rest[0] as BufferEncoding) : 'utf8') : (chunk as Buffer), callback)
  }
  patched['end'] = (...rest: Array<unknown>): LibraryResponse => {
    const chunk = typeof rest[0] === 'function' ? undefined : rest[0]
    if (libraryEnded) return response
    if (!response.headersSent && body === undefined && !dropped) (patched['writeHead'] as (status: number) => void)(response.statusCode)
    if (dropped || body === undefined) return response
    if (chunk !== undefined && chunk !== null) (patched['write'] as (c: unknown, ...more: Array<unknown>) => boolean)(chunk, ...rest.slice(1))
    body.input.end()
    libraryEnded = true
    return response
  }
  // The library ended its response when it called end, though the scrubber may still be writing
  // (mockttp checks `writableEnded` and calls a response not ended a failure). Node's own `finished`
  // is left alone: it decides whether the real end happens; a library's second end is dropped above.
  let owner = Object.getPrototypeOf(response) as object | null
  while (owner !== null && Object.getOwnPropertyDescriptor(owner, 'writableEnded') === undefined) owner = Object.getPrototypeOf(owner) as object | null
  const ended = owner === null ? undefined : Object.getOwnPropertyDescriptor(owner, 'writableEnded')
  Object.defineProperty(response, 'writableEnded', { configurable: true, get: () => libraryEnded || ended?.get?.call(response) === true })

}
