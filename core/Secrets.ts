// The secret in both directions (docs/spec.md §13): which texts count as a known secret, how a
// placeholder is swapped for the real value, and how a request that carries a secret somewhere it
// does not belong is caught (its body as it streams: BodyScan.ts). How a response is scrubbed of
// an injected value is in Scrubbing.ts.
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

/** A text a request carries, and where: `header <name>`, `path`, `query`, `body`, `host`, `method`. */
export interface CarriedText {
  readonly location: string
  readonly text: string
  /** A name whose case is not kept on its way (a host): matched whatever its case. */
  readonly caseless?: boolean
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
  /** The same secrets matched whatever their case (patterns and texts lower-cased), made when first needed. */
  readonly caseless: () => SecretMatcher
  /** This matcher lower-cases what it searches. */
  readonly folded: boolean
}

/** A placeholder and the real value it stands for in a request routed to its provider. */
export interface Swap {
  readonly placeholder: string
  readonly real: string
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

/** Base64 in the URL-safe alphabet. */
export const toUrlAlphabet = (base64: string): string => base64.replace(/\+/g, '-').replace(/\//g, '_')

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

/** The forms a secret is searched for in a request (after percent-decoding): exact and base64. */
const requestForms = (bytes: string): ReadonlyArray<string> => {
  const cores = base64Cores(bytes)
  return [...new Set([bytes, ...cores, ...cores.map(toUrlAlphabet)])]
}

// -------------------------------------------------------------------------------------
// the tripwire
// -------------------------------------------------------------------------------------

/** Compiles known secrets for searching; values shorter than MIN_SECRET_LENGTH are left out. `folded`: matched whatever their case. */
export const compileSecrets = (secrets: ReadonlyArray<KnownSecret>, folded = false): SecretMatcher => {
  const patterns: Array<{ readonly find: string; readonly secret: KnownSecret }> = []
  for (const secret of secrets) {
    const bytes = bytesOf(secret.value)
    if (bytes.length < MIN_SECRET_LENGTH) continue
    for (const find of requestForms(bytes.slice(0, SEARCHED_SECRET_BYTES))) patterns.push({ find: folded ? find.toLowerCase() : find, secret })
  }
  // Longest first, so the exact value is reported before a shorter base64 core of another.
  patterns.sort((a, b) => b.find.length - a.find.length)
  let escaped: RegExp | undefined
  let caseless: SecretMatcher | undefined
  const matcher: SecretMatcher = {
    patterns,
    escaped: () => (patterns.length === 0 ? undefined : (escaped ??= new RegExp(patterns.map((p) => `(${escapable(p.find)})`).join('|')))),
    caseless: () => (folded ? matcher : (caseless ??= compileSecrets(secrets, true))),
    folded
  }
  return matcher
}

const hexClass = (digit: string): string => (/[a-f]/i.test(digit) ? `[${digit.toLowerCase()}${digit.toUpperCase()}]` : digit)

/** How many times over a byte may be percent-encoded and still be seen (`%2B`, `%252B`, `%25252B`). */
const ESCAPE_DEPTH = 3
/** The longest a byte can be written under ESCAPE_DEPTH escapes (`%25252B`). */
export const ESCAPED_BYTE = 3 + 2 * (ESCAPE_DEPTH - 1)

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
  const caseless = texts.filter((t) => t.caseless === true && !matcher.folded)
  if (caseless.length > 0) {
    const found = carriedSecret(matcher.caseless(), caseless)
    if (found !== undefined) return found
  }
  const cased = caseless.length === 0 ? texts : texts.filter((t) => t.caseless !== true)
  // Most requests carry nothing: all their texts at once first (no pattern holds a line break, so
  // none can match across two), and one by one only when that finds something or holds an escape.
  if (cased.length > 1) {
    const all = cased.map((t) => (matcher.folded ? t.text.toLowerCase() : t.text)).join('\n')
    if (!all.includes('%') && !matcher.patterns.some((p) => all.includes(p.find))) return undefined
  }
  for (const carried of cased) {
    const { location } = carried
    const text = matcher.folded ? carried.text.toLowerCase() : carried.text
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


// -------------------------------------------------------------------------------------
// swap
// -------------------------------------------------------------------------------------

const BASIC = /^(\s*basic\s+)([A-Za-z0-9+/=_-]+)(\s*)$/i

/** `text` with every `from` replaced by `to`. */
export const replaceAll = (text: string, from: string, to: string): string => (text.includes(from) ? text.split(from).join(to) : text)

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

/**
 * Request facts as records may show them: a host, path, method or header that carries a known
 * secret is replaced by `[redacted]` (a path by `/[redacted]`), so no record ever holds one.
 */
export const withoutSecrets = <F extends { readonly host: string; readonly path: string; readonly method: string; readonly hostHeader?: string; readonly sni?: string; readonly absoluteUriHost?: string }>(matcher: SecretMatcher, facts: F): F => {
  if (matcher.patterns.length === 0) return facts
  // Names are matched whatever their case: a host is lower-cased on its way.
  const NAMES = ['host', 'hostHeader', 'sni', 'absoluteUriHost'] as const
  const textOf = (key: (typeof NAMES)[number] | 'path' | 'method'): CarriedText | undefined => {
    const value = facts[key]
    return typeof value === 'string' ? { location: key, text: value, caseless: (NAMES as ReadonlyArray<string>).includes(key) } : undefined
  }
  const texts = (['host', 'hostHeader', 'sni', 'absoluteUriHost', 'path', 'method'] as const).map(textOf).filter((t): t is CarriedText => t !== undefined)
  if (carriedSecret(matcher, texts) === undefined) return facts
  const out: Record<string, unknown> = { ...facts }
  for (const text of texts) {
    if (carriedSecret(matcher, [text]) === undefined) continue
    out[text.location] = text.location === 'path' ? `/${REDACTED}` : REDACTED
  }
  return out as F
}
