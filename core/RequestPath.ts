// -------------------------------------------------------------------------------------
// model
// -------------------------------------------------------------------------------------

/** A request path reduced to what route matching compares (docs/spec.md §4 step 3). */
export interface CanonicalPath {
  /** Query and fragment dropped, unreserved escapes decoded, dot segments removed (RFC 3986). */
  readonly path: string
  /**
   * Upstreams may read the path differently, so it never matches a path-prefix route: the raw path
   * had `%2f`, `%5c`, a raw `\`, or a dot segment with `;` parameters (`/..;/`, which Tomcat-style
   * servers resolve), or its dot segments land elsewhere when repeated `/` are merged first (as
   * nginx, Go's `path.Clean` and most frameworks do: `/v1//../v2` is `/v1/v2` to RFC 3986 and
   * `/v2` to them).
   */
  readonly ambiguous: boolean
  /** The path as a server that merges repeated `/` before removing dot segments reads it, when that differs from `path`. */
  readonly mergedReading?: string
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
// A segment of parameters alone (`/;x/`) is empty to an upstream that drops parameters, which moves
// where a later `..` lands.
const PARAMETERS_ONLY_SEGMENT = /\/(?:;|%3b)/i
const DOT_ESCAPE = /%2e/i

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

const REPEATED_SLASHES = /\/{2,}/g

/** Merges every run of `/` into one. */
export const mergeSlashes = (path: string): string => path.replace(REPEATED_SLASHES, '/')

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

/** Canonicalises a request target (docs/spec.md §4 step 3); total on any string. */
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
  if (raw === '') return { path: '/', ambiguous: false, opaque: false }
  if (raw.charCodeAt(0) !== 47) return { path: raw, ambiguous: false, opaque: true }
  const separators =
    backslash ||
    (escapes && SEPARATOR_ESCAPE.test(raw)) ||
    ((parameters || escapes) && DOT_SEGMENT_PARAMETERS.test(raw)) ||
    ((parameters || escapes) && (dotSegment || DOT_ESCAPE.test(raw)) && PARAMETERS_ONLY_SEGMENT.test(raw))
  if (!escapes && !dotSegment) return { path: raw, ambiguous: separators, opaque: false }
  const decoded = decodeUnreserved(raw)
  const path = removeDotSegments(decoded)
  // INVARIANT: a path means one thing to every upstream before a prefix may match it; whether
  // repeated `/` are merged before or after dot segments are removed must not change its reading.
  if (!decoded.includes('//')) return { path, ambiguous: separators, opaque: false }
  const merged = removeDotSegments(mergeSlashes(decoded))
  return merged === mergeSlashes(path) ? { path, ambiguous: separators, opaque: false } : { path, ambiguous: true, opaque: false, mergedReading: merged }
}

/**
 * The readings of a lenient upstream: encoded and backslash separators as `/`, `;` parameters
 * dropped, with repeated `/` merged before dot segments are removed and without. Used to recognise
 * auth endpoints however they are spelled.
 */
export const lenientPaths = (target: string): ReadonlyArray<string> => {
  const plain = withoutQuery(typeof target === 'string' ? target : '').replace(/%2f|%5c|\\/gi, '/').replace(/%3b/gi, ';').replace(/;[^/]*/g, '')
  return [canonicalPath(plain).path, canonicalPath(mergeSlashes(plain)).path]
}

/** Turns the path of an API URL into a route prefix (`/` and `''` become the empty prefix). */
export const pathPrefixOf = (path: string): PathPrefix => {
  return canonicalPath(path).path.replace(/\/+$/, '') as PathPrefix
}

/** The form auth endpoints are compared in: repeated `/` collapsed, no trailing `/`. */
export const authEndpointKey = (path: string): string => {
  const collapsed = mergeSlashes(path)
  return collapsed.length > 1 && collapsed.endsWith('/') ? collapsed.slice(0, -1) : collapsed
}

// -------------------------------------------------------------------------------------
// refinements
// -------------------------------------------------------------------------------------

/** True when `prefix` covers `path` on a segment boundary: `/v1` covers `/v1` and `/v1/x`, not `/v10`. */
export const prefixCovers = (prefix: PathPrefix, path: string): boolean =>
  prefix === '' || path === prefix || (path.startsWith(prefix) && path.charCodeAt(prefix.length) === 47)
