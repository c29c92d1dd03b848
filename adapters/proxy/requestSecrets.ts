import type { IncomingHttpHeaders, IncomingMessage } from 'node:http'
import type { Readable } from 'node:stream'

import { swapPlaceholders, type CarriedText } from '../../core/index.js'
import type { InjectionSecrets } from '../guard/secretBook.js'

// A request's side of the secret in both directions (docs/spec.md §13), for every engine: the
// texts the tripwire searches before the body (header values, path, query), and an injected
// request's headers with its placeholders swapped and nothing asked of the upstream that the
// response scrubber could not read.

/**
 * The texts a request carries to its destination before its body: its method, each header (name
 * and value; HTTP/2's `:authority`, `:method` and `:scheme` too), the path and the query.
 */
export const carriedTexts = (headers: IncomingHttpHeaders, target: string, method: string): ReadonlyArray<CarriedText> => {
  const texts: Array<CarriedText> = [{ location: 'method', text: method }]
  for (const [name, value] of Object.entries(headers)) {
    // Proxy-Authorization is this proxy's, and never leaves it; HTTP/2's `:path` is the target, searched below.
    if (value === undefined || name === 'proxy-authorization' || name === ':path') continue
    // A host name is matched whatever its case: the case is not kept on its way.
    const caseless = name === 'host' || name === ':authority'
    for (const one of Array.isArray(value) ? value : [value]) texts.push({ location: `header ${name}`, text: `${name}: ${one}`, caseless })
  }
  // An absolute-form target names a host too.
  if (!target.startsWith('/')) texts.push({ location: 'path', text: target, caseless: true })
  const query = target.indexOf('?')
  texts.push({ location: 'path', text: query < 0 ? target : target.slice(0, query) })
  if (query >= 0) texts.push({ location: 'query', text: target.slice(query + 1) })
  return texts
}

/** An HTTP/1 request's body, when its headers announce one (a length above 0, or chunks); null otherwise. */
export const announcedBody = (request: IncomingMessage): Readable | null => {
  const length = request.headers['content-length']
  return (length === undefined || length === '0') && request.headers['transfer-encoding'] === undefined ? null : request
}

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
