import * as E from 'fp-ts/lib/Either.js'

import { isLocalHost, parseHost, type Host } from './Host.js'
import { compileHostPattern, type HostPattern, type PatternError } from './HostPattern.js'
import { authEndpointKey, canonicalPath, pathPrefixOf, type PathPrefix } from './RequestPath.js'
import type { WarningCode } from './RouteTable.js'

// A policy's URLs, read: API URLs into route targets, OAuth URLs into auth endpoints, each
// failure a warning that never shows user info or a query.

/** Where an API URL routes: one host, port and path prefix, or every host a pattern matches. */
export type RouteTarget =
  | { readonly _tag: 'Exact'; readonly host: Host; readonly port: number; readonly prefix: PathPrefix }
  | { readonly _tag: 'Regex'; readonly pattern: HostPattern }

/** Why a URL was skipped, as a warning code and its text. */
export interface Problem {
  readonly code: WarningCode
  readonly detail: string
}
/** An API URL as it may be shown: no user info, no query, no fragment, at most 120 characters. */
export const redactUrl = (url: string): string => {
  // User info ends at the last `@` (a password may hold `@` or `/`); query and fragment go too.
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(url)?.[0] ?? ''
  const at = url.lastIndexOf('@')
  const rest = at >= 0 ? url.slice(at + 1) : url.slice(scheme.length)
  const cut = `${scheme}${rest}`.replace(/[?#].*$/s, '')
  return cut.length > 120 ? `${cut.slice(0, 120)}…` : cut
}

/** A `regex:` source as it may be shown: patterns hold `?` and `#`, so they are only shortened. */
export const shownPattern = (source: string): string => (source.length > 120 ? `${source.slice(0, 120)}…` : source)

/** The warning for a `regex:` pattern that did not compile. */
export const patternProblem = (source: string, error: PatternError): Problem => {
  const shown = shownPattern(source)
  switch (error._tag) {
    case 'EmptyPattern':
      return { code: 'invalid_pattern', detail: 'empty `regex:` pattern skipped: write a host regex after `regex:`' }
    case 'InvalidPattern':
      return { code: 'invalid_pattern', detail: `pattern \`${shown}\` skipped: ${error.message}` }
    case 'CatastrophicPattern':
      return {
        code: 'invalid_pattern',
        detail: `pattern \`${shown}\` skipped: it can backtrack catastrophically; avoid nesting repetition, e.g. use \`(?:[a-z0-9-]+\\.)?\` rather than \`(.*\\.)*\``
      }
  }
}

const SCHEME = /^([a-z][a-z0-9+.-]*):\/\//i

/** Reads one API URL (`https://host[:port]/path`, bare `host[:port][/path]` or `regex:<pattern>`) into its route target. */
export const parseApiUrl = (value: unknown): E.Either<Problem, RouteTarget> => {
  if (typeof value !== 'string') return E.left({ code: 'invalid_url', detail: 'API URL skipped: it is not a string' })
  const text = value.trim()
  if (text.startsWith('regex:')) {
    const source = text.slice('regex:'.length).trim()
    const compiled = compileHostPattern(source)
    return E.isLeft(compiled) ? E.left(patternProblem(source, compiled.left)) : E.right({ _tag: 'Regex', pattern: compiled.right })
  }
  const shown = redactUrl(text)
  const scheme = SCHEME.exec(text)?.[1]?.toLowerCase()
  if (scheme === 'http') {
    return E.left({ code: 'insecure_url', detail: `API URL \`${shown}\` skipped: credentials are only sent over https` })
  }
  if (scheme !== undefined && scheme !== 'https') {
    return E.left({ code: 'invalid_url', detail: `API URL \`${shown}\` skipped: the scheme must be https` })
  }
  let url: URL
  try {
    url = new URL(scheme === undefined ? `https://${text}` : text)
  } catch {
    return E.left({ code: 'invalid_url', detail: `API URL \`${shown}\` skipped: it is not a URL or host[:port][/path]` })
  }
  if (url.username !== '' || url.password !== '') {
    return E.left({ code: 'invalid_url', detail: `API URL \`${shown}\` skipped: remove the user info; credentials belong in connections` })
  }
  const host = parseHost(url.hostname)
  if (E.isLeft(host)) return E.left({ code: 'invalid_url', detail: `API URL \`${shown}\` skipped: its host is not valid` })
  if (isLocalHost(host.right)) {
    return E.left({ code: 'local_host', detail: `API URL \`${shown}\` skipped: local hosts never receive credentials` })
  }
  return E.right({ _tag: 'Exact', host: host.right, port: url.port === '' ? 443 : Number(url.port), prefix: pathPrefixOf(url.pathname) })
}

/** An OAuth endpoint: its host, and its path as an auth-endpoint key. */
export interface AuthEndpoint {
  readonly host: Host
  readonly key: string
}

/** Reads one OAuth URL, which must be absolute. */
export const parseAuthEndpoint = (value: unknown): E.Either<Problem, AuthEndpoint> => {
  const shown = typeof value === 'string' ? redactUrl(value) : String(typeof value)
  const problem: Problem = { code: 'invalid_url', detail: `OAuth URL \`${shown}\` ignored: it must be an absolute URL` }
  if (typeof value !== 'string') return E.left(problem)
  let url: URL
  try {
    url = new URL(value)
  } catch {
    return E.left(problem)
  }
  const host = parseHost(url.hostname)
  return E.isLeft(host) ? E.left(problem) : E.right({ host: host.right, key: authEndpointKey(canonicalPath(url.pathname).path) })
}
