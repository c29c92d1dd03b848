import type { OutgoingHttpHeaders } from 'node:http'
import type { Writable } from 'node:stream'

import { scrub, scrubChunk, type ScrubRule } from '../../core/index.js'
import { codingsToUndo, scrubbedBody, scrubbedBodyHeaders, scrubbedHeaders, UNREADABLE_CODING, type ScrubbedBody } from '../proxy/responseScrubbing.js'

// How an upstream's answer is written to the client on the node engine: as it is, or scrubbed of
// the injected values (docs/spec.md §13). A scrubbed body that is not compressed is scrubbed in
// place as it streams; one of a known length up to WHOLE_BODY_BYTES is scrubbed whole and sent
// with its new length (most API answers: no chunking, one write); a compressed one goes through
// the decoders first.

type Headers = Record<string, string | string[]>

/** A client's response, HTTP/1 or HTTP/2 (Node's compatibility API). */
export interface ClientResponse extends Writable {
  headersSent: boolean
  readonly writableFinished: boolean
  writeHead(status: number, headers: OutgoingHttpHeaders): unknown
  addTrailers(headers: OutgoingHttpHeaders): void
}

/** Writes one answer to the client, as undici hands it over. */
export interface ResponseWriter {
  /** Writes the head (or keeps it for the body); false when the answer was refused instead. */
  readonly head: (status: number, headers: Headers, transferEncoding: string | ReadonlyArray<string> | undefined) => boolean
  /** Writes a chunk of the body; false asks the upstream to wait for `drained`. */
  readonly data: (chunk: Buffer) => boolean
  readonly end: (trailers: Headers) => void
  /** The client's buffer drained. */
  readonly drained: () => void
  /** The upstream failed: anything held is dropped. */
  readonly failed: () => void
}

/** Bodies of a known length up to this are scrubbed whole and sent with their new length. */
const WHOLE_BODY_BYTES = 64 * 1024

const withTrailers = (response: ClientResponse, http2Client: boolean, trailers: Headers): void => {
  if (http2Client && Object.keys(trailers).length > 0) response.addTrailers(trailers)
}

/** The answer as the upstream gave it. */
export const plainWriter = (response: ClientResponse, http2Client: boolean, resume: () => void): ResponseWriter => ({
  head: (status, headers) => {
    response.writeHead(status, headers)
    return true
  },
  data: (chunk) => response.write(chunk),
  end: (trailers) => {
    withTrailers(response, http2Client, trailers)
    response.end()
  },
  drained: resume,
  failed: () => undefined
})

/** The answer to a `method` request with every injected value scrubbed; `refuse` stops the upstream when its body cannot be read. */
export const scrubbingWriter = (response: ClientResponse, rules: ReadonlyArray<ScrubRule>, method: string, http2Client: boolean, resume: () => void, refuse: () => void): ResponseWriter => {
  let mode: 'whole' | 'inline' | 'decoded' = 'inline'
  let status = 200
  let headers: Headers = {}
  const whole: Array<Buffer> = []
  let kept = ''
  let decoded: ScrubbedBody | undefined
  let trailersKept: Headers = {}

  const head: ResponseWriter['head'] = (code, given, transferEncoding) => {
    const codings = codingsToUndo(given['content-encoding'], transferEncoding)
    if (codings === undefined) {
      // INVARIANT: a body that cannot be read for scrubbing never reaches the client. The answer
      // is written before the upstream is stopped, whose failure then finds the client answered.
      response.writeHead(502, { 'content-type': 'text/plain; charset=utf-8', 'content-length': String(Buffer.byteLength(UNREADABLE_CODING)) })
      response.end(UNREADABLE_CODING)
      refuse()
      return false
    }
    const scrubbed = scrubbedHeaders(rules, given)
    // An answer without a body keeps its length: it is the length of what a GET would get.
    if (method === 'HEAD' || code === 204 || code === 304) {
      response.writeHead(code, scrubbed)
      return true
    }
    const length = Number(given['content-length'])
    if (codings.length === 0 && Number.isInteger(length) && length <= WHOLE_BODY_BYTES) {
      mode = 'whole'
      status = code
      headers = scrubbed
      return true
    }
    response.writeHead(code, scrubbedBodyHeaders(scrubbed))
    if (codings.length === 0) return true
    const body = scrubbedBody(rules, given['content-encoding'], transferEncoding)
    if (body === undefined) return true
    mode = 'decoded'
    decoded = body
    body.input.on('drain', resume)
    body.output.on('data', (chunk: Buffer) => response.write(chunk) || body.output.pause())
    body.output.on('end', () => {
      withTrailers(response, http2Client, trailersKept)
      response.end()
    })
    body.output.on('error', () => {
      refuse()
      response.destroy(new Error('the response could not be decoded'))
    })
    return true
  }

  const data: ResponseWriter['data'] = (chunk) => {
    if (mode === 'whole') {
      whole.push(chunk)
      return true
    }
    if (mode === 'decoded') return decoded?.input.write(chunk) ?? true
    const next = scrubChunk(rules, kept, chunk.toString('latin1'))
    kept = next.kept
    return next.send === '' ? true : response.write(Buffer.from(next.send, 'latin1'))
  }

  const end: ResponseWriter['end'] = (trailers) => {
    const scrubbedTrailers = scrubbedHeaders(rules, trailers)
    if (mode === 'whole') {
      const body = Buffer.from(scrub(rules, Buffer.concat(whole).toString('latin1')), 'latin1')
      response.writeHead(status, { ...headers, 'content-length': String(body.length) })
      withTrailers(response, http2Client, scrubbedTrailers)
      response.end(body)
      return
    }
    if (mode === 'decoded') {
      trailersKept = scrubbedTrailers
      decoded?.input.end()
      return
    }
    if (kept !== '') response.write(Buffer.from(kept, 'latin1'))
    withTrailers(response, http2Client, scrubbedTrailers)
    response.end()
  }

  return {
    head,
    data,
    end,
    drained: () => (mode === 'decoded' ? decoded?.output.resume() : resume()),
    failed: () => {
      whole.length = 0
      decoded?.input.destroy()
    }
  }
}
