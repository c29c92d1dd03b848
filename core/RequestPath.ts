// -------------------------------------------------------------------------------------
// model
// -------------------------------------------------------------------------------------

/** A request path reduced to what route matching compares (SPEC.md §4 step 3). */
export interface CanonicalPath {
  /** Query and fragment dropped, unreserved escapes decoded, dot segments removed. */
  readonly path: string
  /**
   * The raw path had `%2f`, `%5c`, a raw `\`, or a dot segment with `;` parameters (`/..;/`, which
   * Tomcat-style servers resolve): it never matches a path-prefix route.
   */
  readonly ambiguousSeparators: boolean
  /** The raw target was not origin-form (`*`, an absolute URI): it matches no route at all. */
  readonly opaque: boolean
}

/** A route's path prefix: canonical, without a trailing `/`; `''` matches every path. */
export type PathPrefix = string & { readonly PathPrefix: unique symbol }

// -------------------------------------------------------------------------------------
// constructors
// -------------------------------------------------------------------------------------

const UNRESERVED = /^[A-Za-z0-9\-._~]$/
const ESCAPE = /%([0-9A-Fa-f]{2})/g
const SEPARATOR_ESCAPE = /%(?:2f|5c)/i
const DOT_SEGMENT_PARAMETERS = /(?:^|\/)(?:\.|%2e){1,2}(?:;|%3b)/i

/** Drops the query string and the fragment of a request target. */
export const withoutQuery = (target: string): string => {
  const q = target.indexOf('?')
  const h = target.indexOf('#')
  const cut = q < 0 ? h : h < 0 ? q : Math.min(q, h)
  return cut < 0 ? target : target.slice(0, cut)
}

const decodeUnreserved = (path: string): string =>
  path.replace(ESCAPE, (escape, hex: string) => {
    const ch = String.fromCharCode(parseInt(hex, 16))
    return UNRESERVED.test(ch) ? ch : escape.toUpperCase()
  })

const removeDotSegments = (path: string): string => {
  const segments = path.split('/')
  const out: Array<string> = []
  for (let i = 1; i < segments.length; i++) {
    const segment = segments[i]
    if (segment === '.' || segment === '..') {
      if (segment === '..') out.pop()
      if (i === segments.length - 1) out.push('')
    } else {
      out.push(segment ?? '')
    }
  }
  return `/${out.join('/')}`
}

/** Canonicalises a request target (SPEC.md §4 step 3); total on any string. */
export const canonicalPath = (target: string): CanonicalPath => {
  const text = typeof target === 'string' ? target : ''
  // One pass to find the end of the path and whether anything in it needs rewriting.
  let end = text.length
  let escapes = false
  let dotSegment = false
  let backslash = false
  let parameters = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c >= 97 && c <= 122) continue
    if (c === 63 || c === 35) {
      end = i
      break
    }
    if (c === 37) escapes = true
    else if (c === 92) backslash = true
    else if (c === 59) parameters = true
    else if (c === 46 && i > 0 && text.charCodeAt(i - 1) === 47) dotSegment = true
  }
  const raw = end === text.length ? text : text.slice(0, end)
  if (raw === '') return { path: '/', ambiguousSeparators: false, opaque: false }
  if (raw.charCodeAt(0) !== 47) return { path: raw, ambiguousSeparators: false, opaque: true }
  const ambiguousSeparators =
    backslash || (escapes && SEPARATOR_ESCAPE.test(raw)) || ((parameters || escapes) && DOT_SEGMENT_PARAMETERS.test(raw))
  if (!escapes && !dotSegment) return { path: raw, ambiguousSeparators, opaque: false }
  return { path: removeDotSegments(decodeUnreserved(raw)), ambiguousSeparators, opaque: false }
}

/**
 * The path as a lenient upstream may read it: encoded and backslash separators as `/`, `;`
 * parameters dropped. Used to recognise auth endpoints however they are spelled.
 */
export const lenientPath = (path: string): string =>
  canonicalPath(path.replace(/%2f|%5c|\\/gi, '/').replace(/%3b/gi, ';').replace(/;[^/]*/g, '')).path

/** Turns the path of an API URL into a route prefix (`/` and `''` become the empty prefix). */
export const pathPrefixOf = (path: string): PathPrefix => {
  return canonicalPath(path).path.replace(/\/+$/, '') as PathPrefix
}

/** The form auth endpoints are compared in: repeated `/` collapsed, no trailing `/`. */
export const authEndpointKey = (path: string): string => {
  const collapsed = path.replace(/\/{2,}/g, '/')
  return collapsed.length > 1 && collapsed.endsWith('/') ? collapsed.slice(0, -1) : collapsed
}

// -------------------------------------------------------------------------------------
// refinements
// -------------------------------------------------------------------------------------

/** True when `prefix` covers `path` on a segment boundary: `/v1` covers `/v1` and `/v1/x`, not `/v10`. */
export const prefixCovers = (prefix: PathPrefix, path: string): boolean =>
  prefix === '' || path === prefix || (path.startsWith(prefix) && path.charCodeAt(prefix.length) === 47)
