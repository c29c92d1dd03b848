import * as E from 'fp-ts/lib/Either.js'
import { RE2JS } from 're2js'
import { isSafePattern } from 'redos-detector'

import { parseHost, type Host } from './Host.js'

// -------------------------------------------------------------------------------------
// model
// -------------------------------------------------------------------------------------

/**
 * A compiled `regex:` host pattern. Matching runs on RE2JS, a linear-time engine, so no pattern
 * can hang the engine; patterns that would backtrack catastrophically elsewhere are still refused.
 */
export interface HostPattern {
  /** The pattern as written, without the `regex:` prefix. */
  readonly source: string
  /** Full, case-insensitive match against a normalised host. */
  readonly matches: (host: string) => boolean
  /** Literal text every matching host ends with (lower case); `''` when there is none. */
  readonly literalSuffix: string
  /** The one host the pattern can match, when it is a plain escaped literal. */
  readonly literalHost: Host | undefined
}

/** Why a pattern was refused. */
export type PatternError =
  | { readonly _tag: 'EmptyPattern' }
  | { readonly _tag: 'InvalidPattern'; readonly message: string }
  | { readonly _tag: 'CatastrophicPattern' }

// -------------------------------------------------------------------------------------
// pattern scanning
// -------------------------------------------------------------------------------------

interface Scan {
  /** Literal characters (lower case) or `null` for anything else, after anchors are stripped. */
  readonly atoms: ReadonlyArray<string | null>
  /** An escape the lexer does not fully read (`\x2e`, `\pL`, `\Q…\E`): no literal text can be trusted. */
  readonly opaque: boolean
  readonly topLevelAlternation: boolean
  /** An unbounded quantifier applies to a group holding another unbounded quantifier or a `|`. */
  readonly nestedRepetition: boolean
}

const META = '\\.+*?()|[]{}^$'

// A light lexer over RE2 syntax: enough to find literal runs and nested repetition. Anything it
// does not understand becomes a non-literal atom, which only ever makes the result more cautious.
const scan = (source: string): Scan => {
  const atoms: Array<string | null> = []
  const groups: Array<{ unbounded: boolean; alternation: boolean }> = [{ unbounded: false, alternation: false }]
  let topLevelAlternation = false
  let nestedRepetition = false
  let opaque = false
  let lastGroup: { unbounded: boolean; alternation: boolean } | undefined
  let i = 0
  const body = source.startsWith('^') ? source.slice(1) : source
  const end = body.endsWith('$') && !body.endsWith('\\$') ? body.length - 1 : body.length
  const current = () => groups[groups.length - 1] ?? { unbounded: false, alternation: false }
  while (i < end) {
    const ch = body[i] ?? ''
    let closed: { unbounded: boolean; alternation: boolean } | undefined
    if (ch === '\\') {
      const next = body[i + 1] ?? ''
      // Two-character class and assertion escapes are read; any other letter or digit escape
      // (`\x2e`, `\056`, `\pL`, `\Q…\E`) may stand for literal text we would misread.
      if (/[A-Za-z0-9]/.test(next) && !/[dDwWsSbBAz]/.test(next)) opaque = true
      atoms.push(/[A-Za-z0-9]/.test(next) || next === '' ? null : next.toLowerCase())
      i += 2
    } else if (ch === '[') {
      let j = i + 1
      if (body[j] === '^') j++
      if (body[j] === ']') j++
      while (j < end && body[j] !== ']') j += body[j] === '\\' ? 2 : 1
      atoms.push(null)
      i = j + 1
    } else if (ch === '(') {
      let j = i + 1
      if (body[j] === '?') {
        // `(?:`, `(?P<name>`, `(?<name>` open a group; `(?i)` only sets flags.
        while (j < end && body[j] !== ':' && body[j] !== ')' && body[j] !== '>') j++
        if (body[j] !== ')') groups.push({ unbounded: false, alternation: false })
      } else {
        groups.push({ unbounded: false, alternation: false })
        j = i
      }
      atoms.push(null)
      i = j + 1
    } else if (ch === ')') {
      closed = groups.length > 1 ? groups.pop() : undefined
      if (closed !== undefined) {
        const parent = current()
        parent.unbounded ||= closed.unbounded
        parent.alternation ||= closed.alternation
      }
      atoms.push(null)
      i++
    } else if (ch === '|') {
      current().alternation = true
      if (groups.length === 1) topLevelAlternation = true
      atoms.push(null)
      i++
    } else if (ch === '*' || ch === '+' || ch === '?' || ch === '{') {
      let j = i + 1
      let unbounded = ch === '*' || ch === '+'
      if (ch === '{') {
        while (j < end && body[j] !== '}') j++
        unbounded = body.slice(i, j).endsWith(',')
        j++
      }
      if (body[j] === '?' || body[j] === '+') j++
      if (unbounded) {
        if (lastGroup !== undefined && (lastGroup.unbounded || lastGroup.alternation)) nestedRepetition = true
        current().unbounded = true
      }
      // The quantified atom may repeat or vanish: it is no longer literal text.
      if (atoms.length > 0) atoms[atoms.length - 1] = null
      atoms.push(null)
      i = j
    } else {
      atoms.push(META.includes(ch) || ch.charCodeAt(0) > 0x7e ? null : ch.toLowerCase())
      i++
    }
    lastGroup = closed
  }
  return { atoms, topLevelAlternation, nestedRepetition, opaque }
}

const literalRun = (atoms: ReadonlyArray<string | null>, fromEnd: boolean): string => {
  let text = ''
  for (let k = 0; k < atoms.length; k++) {
    const atom = atoms[fromEnd ? atoms.length - 1 - k : k]
    if (atom === null || atom === undefined) break
    text = fromEnd ? atom + text : text + atom
  }
  return text
}

// -------------------------------------------------------------------------------------
// constructors
// -------------------------------------------------------------------------------------

// Nested repetition is confirmed by a full analysis; the step bound keeps the check itself cheap,
// and a pattern too complex to verify within it is refused (fail closed).
const backtracksCatastrophically = (source: string): boolean => {
  try {
    return !isSafePattern(`^(?:${source})$`, { caseInsensitive: true, maxSteps: 2000, timeout: Infinity }).safe
  } catch {
    return true
  }
}

/** Compiles a host pattern; empty, invalid and catastrophic patterns are errors, never throws. */
export const compileHostPattern = (source: unknown): E.Either<PatternError, HostPattern> => {
  if (typeof source !== 'string' || source.trim() === '') return E.left({ _tag: 'EmptyPattern' })
  let compiled: RE2JS
  try {
    compiled = RE2JS.compile(source, RE2JS.CASE_INSENSITIVE)
  } catch (error) {
    const message = error instanceof Error ? error.message : 'unparsable pattern'
    return E.left({ _tag: 'InvalidPattern', message })
  }
  const { atoms, topLevelAlternation, nestedRepetition, opaque } = scan(source)
  if (nestedRepetition && backtracksCatastrophically(source)) return E.left({ _tag: 'CatastrophicPattern' })
  // INVARIANT: the literal suffix is empty unless every character of the pattern was understood,
  // so the suffix index can only ever over-approximate the routes a host may match.
  const trusted = !topLevelAlternation && !opaque
  const wholeLiteral = trusted && atoms.length > 0 && atoms.every((a) => a !== null)
  const literal = wholeLiteral ? parseHost(atoms.join('')) : undefined
  return E.right({
    source,
    matches: (host) => compiled.matches(host),
    literalSuffix: trusted ? literalRun(atoms, true) : '',
    literalHost: literal !== undefined && E.isRight(literal) ? literal.right : undefined
  })
}

// -------------------------------------------------------------------------------------
// over-broad patterns
// -------------------------------------------------------------------------------------

const registrableOf = (host: string): string => host.split('.').slice(-2).join('.')

// The registrable domain the pattern's literal suffix names, when it spells two whole labels.
const intendedDomain = (suffix: string): string | undefined => {
  // The first label is either empty (the suffix starts with a dot) or may be cut: drop it.
  const whole = suffix.split('.').slice(1)
  return whole.length >= 2 && whole.every((l) => l !== '') ? whole.slice(-2).join('.') : undefined
}

/**
 * A look-alike host the pattern also matches (`.*githubusercontent\.com` matches
 * `evilgithubusercontent.com`), or `undefined`. Probes glue `evil` onto the pattern's literal
 * suffix and onto every literal word, put it in a wildcard, append a foreign domain or TLD, and
 * try unrelated hosts. A probe counts unless it is the suffix's domain or a subdomain of it, or
 * its last two labels are those the suffix names. Multi-label public suffixes (`co.uk`) are not
 * known to this check.
 */
export const overbroadWitness = (pattern: HostPattern): string | undefined => {
  const { atoms, topLevelAlternation, opaque } = scan(pattern.source)
  const prefix = topLevelAlternation || opaque ? '' : literalRun(atoms, false)
  const suffix = pattern.literalSuffix
  const intended = intendedDomain(suffix)
  // Every literal word of the pattern, e.g. `github` and `githubusercontent` in `(?:github|githubusercontent)`.
  const words = new Set<string>()
  let word = ''
  for (const atom of [...atoms, null]) {
    if (atom !== null) word += atom
    else if (word !== '') {
      words.add(word)
      word = ''
    }
  }
  const tld = suffix.split('.').pop() || 'com'
  const probes = [
    `${prefix}evil${suffix}`,
    `evil${suffix}`,
    `evil-${suffix}`,
    `${prefix}${suffix}.evil.net`,
    `${prefix}evil.net`,
    ...[...words].flatMap((w) => [`evil${w}${suffix}`, `evil-${w}${suffix}`, `evil${w}.${tld}`, `x${w}${w.endsWith('.') ? '' : '.'}evil`]),
    'evil.net',
    'evil.com'
  ]
  const hostShaped = (probe: string) => probe.includes('.') && !probe.startsWith('.') && !probe.endsWith('.') && !probe.includes('..')
  // The domain the suffix names, when it spans a dot: that domain and its subdomains are intended.
  const base = suffix.replace(/^\./, '')
  const intendedHost = (probe: string) => base.includes('.') && (probe === base || probe.endsWith(`.${base}`))
  return probes.find((probe) => hostShaped(probe) && !intendedHost(probe) && registrableOf(probe) !== intended && pattern.matches(probe))
}
