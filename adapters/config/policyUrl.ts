import * as E from 'fp-ts/lib/Either.js'

import { redactUrl } from '../../core/index.js'
import { insecureEndpoint } from './codecs.js'
import { MAX_POLICY_BYTES } from './parseDocument.js'

// A policy served over HTTPS (docs/spec.md §14: instances share one policy): fetched with the ETag
// of the last one, so an unchanged policy costs a 304; at most MAX_POLICY_BYTES; never over plain
// HTTP except on loopback, since whoever could change it in transit would write the policy.

/** True when `text` names a policy by URL rather than a file. */
export const isPolicyUrl = (text: string): boolean => /^https?:\/\//i.test(text)

/** Checks a policy URL: https, or http on loopback only (the rule of every endpoint that steers the proxy). */
export const checkPolicyUrl = (text: string): E.Either<string, string> => {
  const problem = insecureEndpoint(text, 'policy URL')
  return problem === undefined ? E.right(text) : E.left(`--policy ${redactUrl(text)}: ${problem}`)
}

/** What a fetch of the policy found. */
export type PolicyFetch =
  | { readonly _tag: 'Fetched'; readonly text: string; readonly etag: string | undefined }
  | { readonly _tag: 'NotModified' }
  | { readonly _tag: 'Failed'; readonly message: string }

/** How long a policy fetch may take. */
const FETCH_TIMEOUT_MS = 10_000

/** The URL without user info, and that user info as `Authorization: Basic` (fetch refuses a URL that carries it). */
const withoutUserInfo = (url: string): { readonly url: string; readonly headers: Readonly<Record<string, string>> } => {
  const parsed = new URL(url)
  if (parsed.username === '' && parsed.password === '') return { url, headers: {} }
  const basic = Buffer.from(`${decodeURIComponent(parsed.username)}:${decodeURIComponent(parsed.password)}`).toString('base64')
  parsed.username = ''
  parsed.password = ''
  return { url: parsed.toString(), headers: { authorization: `Basic ${basic}` } }
}

/** Fetches the policy at `url` (user info sent as Basic authentication), sending `etag` as If-None-Match; never throws, and gives up after `timeoutMs` (10 s) whatever the server does. */
export const fetchPolicy = async (url: string, etag: string | undefined, timeoutMs = FETCH_TIMEOUT_MS): Promise<PolicyFetch> => {
  const shown = redactUrl(url)
  const controller = new AbortController()
  let reader: ReadableStreamDefaultReader<Uint8Array> | undefined
  let timer: NodeJS.Timeout | undefined
  // INVARIANT: the deadline covers the body too. A timer held here (not AbortSignal.timeout, whose
  // abort does not reliably reach a body being read) cancels the reader, so a server that trickles
  // bytes cannot hold a start or a poll for ever.
  const deadline = new Promise<PolicyFetch>((resolve) => {
    timer = setTimeout(() => {
      controller.abort()
      void reader?.cancel().catch(() => undefined)
      resolve({ _tag: 'Failed', message: `${shown} could not be fetched (TimeoutError)` })
    }, timeoutMs)
  })
  const fetched = (async (): Promise<PolicyFetch> => {
    try {
      const target = withoutUserInfo(url)
      const response = await fetch(target.url, { headers: { accept: 'application/yaml, application/json, text/plain', ...target.headers, ...(etag === undefined ? {} : { 'if-none-match': etag }) }, redirect: 'error', signal: controller.signal })
      if (response.status === 304) {
        await response.body?.cancel()
        return { _tag: 'NotModified' }
      }
      if (!response.ok) {
        await response.body?.cancel()
        return { _tag: 'Failed', message: `${shown} answered HTTP ${response.status}` }
      }
      const tooLarge: PolicyFetch = { _tag: 'Failed', message: `${shown} is larger than ${MAX_POLICY_BYTES / 1024 / 1024} MiB` }
      if (Number(response.headers.get('content-length') ?? '0') > MAX_POLICY_BYTES) {
        await response.body?.cancel()
        return tooLarge
      }
      const chunks: Array<Uint8Array> = []
      let size = 0
      reader = response.body?.getReader()
      for (let read = await reader?.read(); read !== undefined && !read.done; read = await reader?.read()) {
        size += read.value.byteLength
        if (size > MAX_POLICY_BYTES) {
          await reader?.cancel()
          return tooLarge
        }
        chunks.push(read.value)
      }
      return { _tag: 'Fetched', text: Buffer.concat(chunks).toString('utf8'), etag: response.headers.get('etag') ?? undefined }
    } catch (error) {
      // The cause's code (ECONNREFUSED, CERT_HAS_EXPIRED…), never a message that could hold the URL.
      const cause = (error as { cause?: { code?: string } }).cause?.code
      return { _tag: 'Failed', message: `${shown} could not be fetched (${cause ?? (error instanceof Error ? error.name : 'error')})` }
    }
  })()
  try {
    return await Promise.race([fetched, deadline])
  } finally {
    clearTimeout(timer)
  }
}
