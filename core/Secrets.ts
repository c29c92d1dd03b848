// The secret in both directions (docs/spec.md §13): which texts count as a known secret, how a
// placeholder is swapped for the real value, how a request that carries a secret somewhere it does
// not belong is caught, and how a response is scrubbed of an injected value.
//
// Every text here is a byte string: one character per byte (latin1), as Node gives header values
// and as a body's bytes are read. A secret is matched as its UTF-8 bytes in these forms (the
// decision docs/policy.md explains):
//   - exact bytes;
//   - URL-encoded: in a request, any mix of `%XX` escapes (the text is percent-decoded, up to three
//     times, before it is searched); in a response, `encodeURIComponent`'s form and every byte as
//     `%XX` (upper or lower case hex);
//   - base64, standard or URL-safe alphabet, at any of the three alignments it can have inside a
//     longer encoded text, padded or not: the characters that only the secret's bytes decide.
// Values shorter than MIN_SECRET_LENGTH are not tracked: they would match ordinary text.

// -------------------------------------------------------------------------------------
// model
// -------------------------------------------------------------------------------------

/** A secret the guard knows, and the providers it belongs to. */
export interface KnownSecret {
  /** The value, as text (UTF-8 when it is not ASCII). */
  readonly value: string
  readonly owners: ReadonlyArray<string>
  /** A placeholder `run` handed out, or a credential value the guard resolved or read. */
  readonly kind: 'placeholder' | 'credential'
}

/** A text a request carries, and where: `header <name>`, `path`, `query` or `body`. */
export interface CarriedText {
  readonly location: string
  readonly text: string
}

/** A known secret found in a request, and where. */
export interface Carried {
  readonly secret: KnownSecret
  readonly location: string
}

/** Known secrets compiled for searching. */
export interface SecretMatcher {
  readonly patterns: ReadonlyArray<{ readonly find: string; readonly secret: KnownSecret }>
  /** Every pattern with any of its bytes percent-encoded, once or more (`%XX`, `%25XX`, …), as one expression (group i+1 is pattern i), made when first needed. */
  readonly escaped: () => RegExp | undefined
}

/** A placeholder and the real value it stands for in a request routed to its provider. */
export interface Swap {
  readonly placeholder: string
  readonly real: string
}

/** A value to take out of a response, and what the client sees instead. */
export interface Scrubbed {
  readonly value: string
  /** The placeholder for the value, or `[redacted]`. */
  readonly shownAs: string
}

/** What replaces an injected value that has no placeholder. */
export const REDACTED = '[redacted]'

/** Secrets shorter than this many bytes are not tracked. */
export const MIN_SECRET_LENGTH = 8

/** A longer secret is searched for by its first this many bytes: finding them is finding it (or enough of it), and the search stays bounded. */
export const SEARCHED_SECRET_BYTES = 48

/** How much of a request body the tripwire reads. */
export const INSPECTED_BODY_BYTES = 64 * 1024

// -------------------------------------------------------------------------------------
// forms
// -------------------------------------------------------------------------------------

const encoder = new TextEncoder()

/** A text's UTF-8 bytes as a byte string. */
export const bytesOf = (text: string): string => {
  // eslint-disable-next-line no-control-regex
  if (/^[\x00-\x7f]*$/.test(text)) return text
  let out = ''
  for (const byte of encoder.encode(text)) out += String.fromCharCode(byte)
  return out
}

const toUrlAlphabet = (base64: string): string => base64.replace(/\+/g, '-').replace(/\//g, '_')

/**
 * The base64 characters that only `bytes` decide, at each alignment (0, 1 or 2 bytes before it in
 * the encoded text): what any base64 text holding these bytes contains, whatever surrounds them.
 */
export const base64Cores = (bytes: string): ReadonlyArray<string> => {
  const cores: Array<string> = []
  for (let before = 0; before < 3; before++) {
    const encoded = btoa('\0'.repeat(before) + bytes)
    const skip = Math.ceil((8 * before) / 6)
    const end = Math.floor((8 * (before + bytes.length)) / 6)
    cores.push(encoded.slice(skip, end))
  }
  return cores
}

const hex = (byte: number, upper: boolean): string => {
  const h = byte.toString(16).padStart(2, '0')
  return `%${upper ? h.toUpperCase() : h}`
}

/** Percent-encodes bytes: those outside `encodeURIComponent`'s unreserved set, or every byte. */
const percentEncoded = (bytes: string, every: boolean, upper = true): string => {
  let out = ''
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes.charCodeAt(i)
    out += !every && /[A-Za-z0-9\-_.!~*'()]/.test(bytes[i] as string) ? bytes[i] : hex(c, upper)
  }
  return out
}

/** The forms a secret is searched for in a request (after percent-decoding): exact and base64. */
const requestForms = (bytes: string): ReadonlyArray<string> => {
  const cores = base64Cores(bytes)
  return [...new Set([bytes, ...cores, ...cores.map(toUrlAlphabet)])]
}

/** Each form a value can reach a response in, paired with the same form of what replaces it. */
export const responseForms = (value: string, shownAs: string): ReadonlyArray<readonly [string, string]> => {
  const from = bytesOf(value)
  const to = bytesOf(shownAs)
  const fromCores = base64Cores(from)
  const toCores = base64Cores(to)
  const pairs: Array<readonly [string, string]> = [
    [from, to],
    [percentEncoded(from, false), percentEncoded(to, false)],
    [percentEncoded(from, true, true), percentEncoded(to, true, true)],
    [percentEncoded(from, true, false), percentEncoded(to, true, false)]
  ]
  fromCores.forEach((core, i) => {
    pairs.push([core, toCores[i] as string], [toUrlAlphabet(core), toUrlAlphabet(toCores[i] as string)])
  })
  const seen = new Set<string>()
  return pairs.filter(([find]) => find.length > 0 && !seen.has(find) && (seen.add(find), true))
}

// -------------------------------------------------------------------------------------
// the tripwire
// -------------------------------------------------------------------------------------

/** Compiles known secrets for searching; values shorter than MIN_SECRET_LENGTH are left out. */
export const compileSecrets = (secrets: ReadonlyArray<KnownSecret>): SecretMatcher => {
  const patterns: Array<{ readonly find: string; readonly secret: KnownSecret }> = []
  for (const secret of secrets) {
    const bytes = bytesOf(secret.value)
    if (bytes.length < MIN_SECRET_LENGTH) continue
    for (const find of requestForms(bytes.slice(0, SEARCHED_SECRET_BYTES))) patterns.push({ find, secret })
  }
  // Longest first, so the exact value is reported before a shorter base64 core of another.
  patterns.sort((a, b) => b.find.length - a.find.length)
  let escaped: RegExp | undefined
  return { patterns, escaped: () => (patterns.length === 0 ? undefined : (escaped ??= new RegExp(patterns.map((p) => `(${escapable(p.find)})`).join('|')))) }
}

const hexClass = (digit: string): string => (/[a-f]/i.test(digit) ? `[${digit.toLowerCase()}${digit.toUpperCase()}]` : digit)

/** How many times over a byte may be percent-encoded and still be seen (`%2B`, `%252B`, `%25252B`). */
const ESCAPE_DEPTH = 3
/** The longest a byte can be written under ESCAPE_DEPTH escapes (`%25252B`). */
const ESCAPED_BYTE = 3 + 2 * (ESCAPE_DEPTH - 1)

/** A pattern whose every byte may also come percent-encoded, up to ESCAPE_DEPTH times over (`%2B`, `%252b`). */
const escapable = (find: string): string => {
  let out = ''
  for (let i = 0; i < find.length; i++) {
    const c = find.charCodeAt(i)
    const h = c.toString(16).padStart(2, '0')
    const literal = (find[i] as string).replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&')
    out += `(?:${literal}|%(?:25){0,${ESCAPE_DEPTH - 1}}${hexClass(h[0] as string)}${hexClass(h[1] as string)})`
  }
  return out
}

/**
 * The first known secret a request carries in any of `texts`, and where; undefined when none. A
 * text without `%` is searched for each pattern as it is; one with `%` with each byte of each
 * pattern allowed escaped, up to three times over, so that no mix of escapes (nor a `%` put before
 * one to change how it decodes) hides a value.
 */
export const carriedSecret = (matcher: SecretMatcher, texts: ReadonlyArray<CarriedText>): Carried | undefined => {
  if (matcher.patterns.length === 0) return undefined
  // Most requests carry nothing: all their texts at once first (no pattern holds a line break, so
  // none can match across two), and one by one only when that finds something or holds an escape.
  if (texts.length > 1) {
    const all = texts.map((t) => t.text).join('\n')
    if (!all.includes('%') && !matcher.patterns.some((p) => all.includes(p.find))) return undefined
  }
  for (const { location, text } of texts) {
    if (!text.includes('%')) {
      for (const { find, secret } of matcher.patterns) if (text.includes(find)) return { secret, location }
      continue
    }
    const found = matcher.escaped()?.exec(text)
    if (found === null || found === undefined) continue
    const group = found.findIndex((g, i) => i > 0 && g !== undefined)
    const pattern = matcher.patterns[group - 1]
    if (pattern !== undefined) return { secret: pattern.secret, location }
  }
  return undefined
}

/** True when a secret found in a request may go to a route of `provider` (its owner's). */
export const ownedBy = (carried: Carried, provider: string | undefined): boolean => provider !== undefined && carried.secret.owners.includes(provider)

// -------------------------------------------------------------------------------------
// swap
// -------------------------------------------------------------------------------------

const BASIC = /^(\s*basic\s+)([A-Za-z0-9+/=_-]+)(\s*)$/i

const replaceAll = (text: string, from: string, to: string): string => (text.includes(from) ? text.split(from).join(to) : text)

const decodeBase64 = (text: string): string | undefined => {
  try {
    return atob(text.replace(/-/g, '+').replace(/_/g, '/'))
  } catch {
    return undefined
  }
}

/**
 * A header value with each placeholder replaced by its real value: where it stands in the value,
 * and inside `Basic` credentials after base64 decoding (encoded again after). Unchanged when it
 * holds none.
 */
export const swapPlaceholders = (value: string, swaps: ReadonlyArray<Swap>): string => {
  let out = value
  for (const { placeholder, real } of swaps) out = replaceAll(out, bytesOf(placeholder), bytesOf(real))
  const basic = BASIC.exec(out)
  if (basic === null) return out
  const decoded = decodeBase64(basic[2] as string)
  if (decoded === undefined) return out
  let swapped = decoded
  for (const { placeholder, real } of swaps) swapped = replaceAll(swapped, bytesOf(placeholder), bytesOf(real))
  return swapped === decoded ? out : `${basic[1] as string}${btoa(swapped)}${basic[3] as string}`
}

/**
 * The secret parts of an injected header value, the values a response is scrubbed of: the value,
 * the token after an auth scheme (`Bearer x`), and for `Basic` the decoded `user:password` and the
 * password.
 */
export const secretParts = (value: string): ReadonlyArray<string> => {
  const parts = [value]
  const scheme = /^\s*([A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*)\s+(\S+)\s*$/.exec(value)
  if (scheme !== null) {
    const token = scheme[2] as string
    parts.push(token)
    if ((scheme[1] as string).toLowerCase() === 'basic') {
      const decoded = decodeBase64(token)
      if (decoded !== undefined) {
        parts.push(decoded)
        const colon = decoded.indexOf(':')
        if (colon >= 0) parts.push(decoded.slice(colon + 1))
      }
    }
  }
  return [...new Set(parts)].filter((part) => bytesOf(part).length >= MIN_SECRET_LENGTH)
}

// -------------------------------------------------------------------------------------
// scrubbing
// -------------------------------------------------------------------------------------

/** One form of an injected value in a response, and what replaces it. */
export interface ScrubRule {
  readonly find: string
  readonly replace: string
}

/** The rules that scrub these values from a response, longest first; values shorter than MIN_SECRET_LENGTH are left out. */
export const scrubRules = (values: ReadonlyArray<Scrubbed>): ReadonlyArray<ScrubRule> => {
  const rules = new Map<string, string>()
  for (const { value, shownAs } of values) {
    if (bytesOf(value).length < MIN_SECRET_LENGTH) continue
    for (const [find, replace] of responseForms(value, shownAs)) if (!rules.has(find)) rules.set(find, replace)
  }
  return [...rules].map(([find, replace]) => ({ find, replace })).sort((a, b) => b.find.length - a.find.length)
}

/** A byte string with every form of every value replaced. */
export const scrub = (rules: ReadonlyArray<ScrubRule>, text: string): string => {
  let out = text
  for (const { find, replace } of rules) out = replaceAll(out, find, replace)
  return out
}

/**
 * How many bytes at the end of `text` could be the start of a form still to come: a stream keeps
 * them back until the next chunk shows whether they are. 0 when none could.
 */
export const pendingTail = (rules: ReadonlyArray<{ readonly find: string }>, text: string): number => {
  const longest = rules.reduce((n, rule) => Math.max(n, rule.find.length), 0)
  for (let i = Math.max(0, text.length - longest + 1); i < text.length; i++) {
    const tail = text.slice(i)
    if (rules.some((rule) => rule.find.length > tail.length && rule.find.startsWith(tail))) return text.length - i
  }
  return 0
}

/**
 * One chunk of a stream scrubbed, with the bytes kept back from the chunk before (`kept`): what
 * can be sent now, and what to keep back for the next chunk (bytes that could begin a value).
 */
export const scrubChunk = (rules: ReadonlyArray<ScrubRule>, kept: string, chunk: string): { readonly send: string; readonly kept: string } => {
  const text = scrub(rules, kept + chunk)
  const held = pendingTail(rules, text)
  return { send: text.slice(0, text.length - held), kept: text.slice(text.length - held) }
}

/** A request body's inspection so far: bytes seen, and the tail kept back to be searched with the next chunk. */
export interface BodyScan {
  readonly seen: number
  readonly held: string
}

/** A body's inspection before its first byte. */
export const BODY_SCAN_START: BodyScan = { seen: 0, held: '' }

/** What a body's next chunk comes to: bytes that may go on (and the scan after them), or a known secret found in it. */
export type BodyStep = { readonly _tag: 'Go'; readonly send: string; readonly scan: BodyScan } | { readonly _tag: 'Found'; readonly carried: Carried }

/**
 * Scans the next chunk of a request body as it streams (`last` at its end): the first
 * INSPECTED_BODY_BYTES are searched for every known secret, each chunk together with the tail
 * kept back from the one before, so a value split across chunks is found before its last byte
 * goes on. Only that tail is held: the bytes that could begin a form, or, when the end of the text
 * holds an escape, as many as the longest form can take escaped. After the inspected bytes the
 * body goes on untouched. An interactive body (a line, then a wait for the answer) is not held up.
 */
export const scanBodyChunk = (matcher: SecretMatcher, scan: BodyScan, chunk: string, last: boolean): BodyStep => {
  if (scan.seen >= INSPECTED_BODY_BYTES) return { _tag: 'Go', send: scan.held + chunk, scan: { seen: scan.seen, held: '' } }
  const window = scan.held + chunk
  const carried = carriedSecret(matcher, [{ location: 'body', text: window }])
  if (carried !== undefined) return { _tag: 'Found', carried }
  const seen = scan.seen + chunk.length
  if (last || seen >= INSPECTED_BODY_BYTES) return { _tag: 'Go', send: window, scan: { seen, held: '' } }
  const escaped = ESCAPED_BYTE * matcher.patterns.reduce((n, p) => Math.max(n, p.find.length), 0)
  const hold = window.slice(-escaped).includes('%') ? Math.min(window.length, escaped) : pendingTail(matcher.patterns, window)
  return { _tag: 'Go', send: window.slice(0, window.length - hold), scan: { seen, held: window.slice(window.length - hold) } }
}

/**
 * Request facts as records may show them: a host, path, method or header that carries a known
 * secret is replaced by `[redacted]` (a path by `/[redacted]`), so no record ever holds one.
 */
export const withoutSecrets = <F extends { readonly host: string; readonly path: string; readonly method: string; readonly hostHeader?: string; readonly sni?: string; readonly absoluteUriHost?: string }>(matcher: SecretMatcher, facts: F): F => {
  if (matcher.patterns.length === 0) return facts
  const carries = (text: string | undefined): boolean => text !== undefined && carriedSecret(matcher, [{ location: '', text }]) !== undefined
  const fields = [facts.host, facts.path, facts.method, facts.hostHeader, facts.sni, facts.absoluteUriHost]
  if (carriedSecret(matcher, fields.filter((f): f is string => typeof f === 'string').map((text) => ({ location: '', text }))) === undefined) return facts
  const out: Record<string, unknown> = { ...facts }
  for (const key of ['host', 'method', 'hostHeader', 'sni', 'absoluteUriHost'] as const) if (typeof facts[key] === 'string' && carries(facts[key])) out[key] = REDACTED
  if (carries(facts.path)) out['path'] = `/${REDACTED}`
  return out as F
}
