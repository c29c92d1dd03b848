import { base64Cores, bytesOf, MIN_SECRET_LENGTH, replaceAll, toUrlAlphabet } from './Secrets.js'

// Scrubbing (docs/spec.md §13): in the response to an injected request, every form of an injected
// value (exact, `encodeURIComponent`, every byte `%XX`, base64 at each alignment) is replaced by the
// same form of what the client is shown instead: the value's placeholder, or `[redacted]`. Texts
// are byte strings, as in Secrets.ts.

/** A value to take out of a response, and what the client sees instead. */
export interface Scrubbed {
  readonly value: string
  /** The placeholder for the value, or `[redacted]`. */
  readonly shownAs: string
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

/** Each form a value can reach a response in, paired with the same form of what replaces it. */
const responseForms = (value: string, shownAs: string): ReadonlyArray<readonly [string, string]> => {
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
