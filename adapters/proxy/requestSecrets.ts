import type { IncomingHttpHeaders, IncomingMessage } from 'node:http'
import type { Readable } from 'node:stream'

import { INSPECTED_BODY_BYTES } from '../../core/Secrets.js'
import { swapPlaceholders, type CarriedText } from '../../core/index.js'
import type { InjectionSecrets } from '../guard/secretBook.js'

// A request's side of the secret in both directions (docs/spec.md §13), for every engine: the
// texts the tripwire searches (header values, path, query, the start of the body), and an injected
// request's headers with its placeholders swapped and nothing asked of the upstream that the
// response scrubber could not read.

/** The texts a request carries to its destination: each header value (by name), the path and the query, and `body` when read. */
export const carriedTexts = (headers: IncomingHttpHeaders, target: string, body: string | undefined): ReadonlyArray<CarriedText> => {
  const texts: Array<CarriedText> = []
  for (const [name, value] of Object.entries(headers)) {
    // Proxy-Authorization is this proxy's, and never leaves it; HTTP/2's `:path` is the target, searched below.
    if (value === undefined || name === 'proxy-authorization' || name.startsWith(':')) continue
    for (const one of Array.isArray(value) ? value : [value]) texts.push({ location: `header ${name}`, text: one })
  }
  const query = target.indexOf('?')
  texts.push({ location: 'path', text: query < 0 ? target : target.slice(0, query) })
  if (query >= 0) texts.push({ location: 'query', text: target.slice(query + 1) })
  if (body !== undefined && body !== '') texts.push({ location: 'body', text: body })
  return texts
}

/** An HTTP/1 request's body, when its headers announce one (a length above 0, or chunks); null otherwise. */
export const announcedBody = (request: IncomingMessage): Readable | null => {
  const length = request.headers['content-length']
  return (length === undefined || length === '0') && request.headers['transfer-encoding'] === undefined ? null : request
}

/** True when a request's body is read for the tripwire: it has one and it is not compressed (a compressed body is not decoded, docs/policy.md says so). */
export const inspectableBody = (headers: IncomingHttpHeaders): boolean => {
  const encoding = headers['content-encoding']
  return encoding === undefined || encoding.trim().toLowerCase() === 'identity'
}

const endedSource = (stream: Readable): boolean => (stream as Readable & { _readableState?: { ended?: boolean } })._readableState?.ended === true

/**
 * The first `limit` bytes of a body (all of it when shorter), as a byte string, put back in the
 * stream before it resolves so that whoever forwards the body sends every byte. Rejects when the
 * stream fails; the client's own bounds (clientBounds.ts) end a body that never comes.
 */
export const peekBody = (body: Readable, limit = INSPECTED_BODY_BYTES): Promise<string> =>
  new Promise((resolve, reject) => {
    const chunks: Array<Buffer> = []
    let size = 0
    const done = (): void => {
      body.off('readable', onReadable)
      body.off('error', onError)
      body.off('close', onClose)
      const head = Buffer.concat(chunks)
      // Put back in the same turn, before the stream can announce its end.
      if (head.length > 0) body.unshift(head)
      resolve(head.subarray(0, limit).toString('latin1'))
    }
    const onReadable = (): void => {
      let chunk: Buffer | string | null
      while (size < limit && (chunk = body.read() as Buffer | string | null) !== null) {
        const bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'latin1') : chunk
        chunks.push(bytes)
        size += bytes.length
      }
      if (size >= limit || endedSource(body)) done()
    }
    const onError = (error: Error): void => {
      body.off('readable', onReadable)
      reject(error)
    }
    const onClose = (): void => onError(new Error('the request body was cut off'))
    body.on('error', onError)
    body.once('close', onClose)
    body.on('readable', onReadable)
  })

/** The content codings the response scrubber decodes. */
const DECODED = new Set(['gzip', 'x-gzip', 'deflate', 'br', 'identity'])

/**
 * Headers for an injected request: each placeholder swapped for its real value (docs/spec.md §13);
 * `Accept-Encoding` limited to what the response scrubber decodes; and for a WebSocket, no
 * `Sec-WebSocket-Extensions`, so frames come uncompressed and can be scrubbed.
 */
export const injectedHeaders = (headers: Record<string, string | string[]>, secrets: InjectionSecrets): Record<string, string | string[]> => {
  const out: Record<string, string | string[]> = {}
  for (const [name, value] of Object.entries(headers)) {
    if (name === 'sec-websocket-extensions') continue
    out[name] = secrets.swaps.length === 0 ? value : Array.isArray(value) ? value.map((one) => swapPlaceholders(one, secrets.swaps)) : swapPlaceholders(value, secrets.swaps)
  }
  const accept = out['accept-encoding']
  if (accept !== undefined) {
    const kept = (Array.isArray(accept) ? accept.join(',') : accept)
      .split(',')
      .map((token) => token.trim())
      .filter((token) => DECODED.has((token.split(';')[0] ?? '').trim().toLowerCase()))
    if (kept.length === 0) delete out['accept-encoding']
    else out['accept-encoding'] = kept.join(', ')
  }
  return out
}
