import * as E from 'fp-ts/lib/Either.js'

import { mergeSlashes, prefixCovers, type CanonicalPath, type PathPrefix } from './RequestPath.js'

// A connection may narrow where its credential is injected (docs/spec.md §10): `allow: {methods,
// paths}`. A request the route matched but the rules do not allow is `not_allowed`: its
// credentials are never resolved. Paths are compared canonical (§4.3), and a path upstreams may
// read two ways (`ambiguous`), or whose repeated `/` change its segments, is never allowed by a
// path rule.

// -------------------------------------------------------------------------------------
// model
// -------------------------------------------------------------------------------------

/** What a connection's `allow` says, as written in the policy. */
export interface AllowInput {
  readonly methods?: ReadonlyArray<string>
  readonly paths?: ReadonlyArray<string>
}

/** One compiled path pattern: a plain segment-boundary prefix, or segments where `*` is any one and a final `**` the rest. */
export type PathRule =
  | { readonly _tag: 'Prefix'; readonly prefix: PathPrefix }
  | { readonly _tag: 'Segments'; readonly segments: ReadonlyArray<string>; readonly rest: boolean }

/** A connection's compiled rules; an absent part allows everything. */
export interface RouteRules {
  /** Upper-case methods, or undefined for any. */
  readonly methods: ReadonlySet<string> | undefined
  readonly paths: ReadonlyArray<PathRule> | undefined
}

// -------------------------------------------------------------------------------------
// constructors
// -------------------------------------------------------------------------------------

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/

const compilePath = (pattern: unknown): E.Either<string, PathRule> => {
  if (typeof pattern !== 'string' || !pattern.startsWith('/')) return E.left(`path pattern \`${String(pattern)}\`: write a path starting with \`/\``)
  const segments = pattern.replace(/\/+$/, '').split('/').slice(1)
  if (!segments.some((s) => s === '*' || s === '**')) {
    if (pattern.includes('*')) return E.left(`path pattern \`${pattern}\`: \`*\` stands for a whole segment (\`/a/*/b\`), and segments are canonical`)
    if (/[?#%\\]/.test(pattern) || segments.includes('.') || segments.includes('..') || pattern.includes('//')) {
      return E.left(`path pattern \`${pattern}\`: write a canonical path (no \`?\`, \`#\`, \`%\`, \`\\\`, dot segments or \`//\`)`)
    }
    return E.right({ _tag: 'Prefix', prefix: pattern.replace(/\/+$/, '') as PathPrefix })
  }
  for (const [i, segment] of segments.entries()) {
    if (segment === '**' && i !== segments.length - 1) return E.left(`path pattern \`${pattern}\`: \`**\` may only end a pattern`)
    if (segment !== '*' && segment !== '**' && (segment.includes('*') || segment === '' || segment === '.' || segment === '..' || /[?#%\\]/.test(segment))) {
      return E.left(`path pattern \`${pattern}\`: \`*\` stands for a whole segment (\`/a/*/b\`), and segments are canonical`)
    }
  }
  const rest = segments.at(-1) === '**'
  return E.right({ _tag: 'Segments', segments: rest ? segments.slice(0, -1) : segments, rest })
}

/** Compiles a connection's `allow`; an error says which entry is wrong and what to write. */
export const compileRules = (allow: AllowInput | undefined): E.Either<string, RouteRules | undefined> => {
  if (allow === undefined) return E.right(undefined)
  let methods: Set<string> | undefined
  if (allow.methods !== undefined) {
    methods = new Set()
    for (const method of allow.methods) {
      if (typeof method !== 'string' || !TOKEN.test(method)) return E.left(`method \`${String(method)}\`: write an HTTP method such as GET`)
      methods.add(method.toUpperCase())
    }
  }
  let paths: Array<PathRule> | undefined
  if (allow.paths !== undefined) {
    paths = []
    for (const pattern of allow.paths) {
      const rule = compilePath(pattern)
      if (E.isLeft(rule)) return rule
      paths.push(rule.right)
    }
  }
  return E.right({ methods, paths })
}

// -------------------------------------------------------------------------------------
// refinements
// -------------------------------------------------------------------------------------

const pathMatches = (rule: PathRule, path: string): boolean => {
  if (rule._tag === 'Prefix') return prefixCovers(rule.prefix, path)
  const segments = path.replace(/\/$/, '').split('/').slice(1)
  if (rule.rest ? segments.length < rule.segments.length : segments.length !== rule.segments.length) return false
  return rule.segments.every((want, i) => want === '*' ? (segments[i] ?? '') !== '' : want === segments[i])
}

/**
 * True when the rules allow this method and canonical path.
 *
 * @example
 * const rules = compileRules({ methods: ['get'], paths: ['/user', '/repos/acme/**'] })
 * E.isRight(rules) && allows(rules.right, 'GET', canonicalPath('/repos/acme/app/issues'))
 * // => true
 * E.isRight(rules) && allows(rules.right, 'POST', canonicalPath('/user'))
 * // => false
 * E.isRight(rules) && allows(rules.right, 'GET', canonicalPath('/repos/other/app'))
 * // => false
 */
export const allows = (rules: RouteRules, method: string, path: CanonicalPath): boolean => {
  if (rules.methods !== undefined && !rules.methods.has(method.toUpperCase())) return false
  if (rules.paths === undefined) return true
  // INVARIANT: a path rule judges only a path every upstream reads the same way.
  if (path.ambiguous || path.opaque || mergeSlashes(path.path) !== path.path) return false
  return rules.paths.some((rule) => pathMatches(rule, path.path))
}
