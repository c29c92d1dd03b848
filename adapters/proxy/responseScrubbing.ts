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

/**
 * A body's scrubber for its `Content-Encoding`: gzip, deflate and br are decoded first (the client
 * gets the body decoded); undefined for any other coding, which cannot be read and must not be
 * passed on (the request's `Accept-Encoding` offered none of them).
 */
export const scrubbedBody = (rules: ReadonlyArray<ScrubRule>, contentEncoding: string | ReadonlyArray<string> | undefined): ScrubbedBody | undefined => {
  const codings = (Array.isArray(contentEncoding) ? contentEncoding.join(',') : ((contentEncoding as string | undefined) ?? ''))
    .split(',')
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c !== '' && c !== 'identity')
  const scrubber = scrubbingStream(rules)
  if (codings.length === 0) return { input: scrubber, output: scrubber }
  // Codings are applied in the order listed, so they are undone from the last.
  const decoders = codings.reverse().map(decoderFor)
  if (decoders.some((d) => d === undefined)) return undefined
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
