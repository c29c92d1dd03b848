import { pendingTail } from './Scrubbing.js'
import { carriedSecret, ESCAPED_BYTE, INSPECTED_BODY_BYTES, type Carried, type SecretMatcher } from './Secrets.js'

// The tripwire on a request body as it streams (docs/spec.md §13): its first INSPECTED_BODY_BYTES
// are searched chunk by chunk, and only the bytes that could begin a form still to come are kept
// back, so a request is never held up waiting for its body.

/** A request body's inspection so far: bytes seen, and the tail kept back to be searched with the next chunk. */
export interface BodyScan {
  readonly seen: number
  readonly held: string
}

/** A body's inspection before its first byte. */
export const BODY_SCAN_START: BodyScan = { seen: 0, held: '' }

/** What a body's next chunk comes to: bytes that may go on (and the scan after them), or a known secret found in it. */
export type BodyStep = { readonly _tag: 'Go'; readonly send: string; readonly scan: BodyScan } | { readonly _tag: 'Found'; readonly carried: Carried }

/** The bytes a form's match can be made of: its patterns' bytes, and those of an escape. */
const alphabets = new WeakMap<SecretMatcher, ReadonlySet<number>>()
const alphabetOf = (matcher: SecretMatcher): ReadonlySet<number> => {
  const known = alphabets.get(matcher)
  if (known !== undefined) return known
  const bytes = new Set<number>()
  for (const { find } of matcher.patterns) for (let i = 0; i < find.length; i++) bytes.add(find.charCodeAt(i))
  for (const c of '%0123456789abcdefABCDEF') bytes.add(c.charCodeAt(0))
  alphabets.set(matcher, bytes)
  return bytes
}

/**
 * How many bytes at the end of `window` could be a form still coming in: a match in progress is
 * made only of bytes a match can hold, so it lies within the window's last run of those; escaped
 * (a `%` in that run), as much of the run as the longest form takes escaped; plain, the longest
 * end that is the start of a form.
 */
const heldBack = (matcher: SecretMatcher, window: string): number => {
  const longest = ESCAPED_BYTE * matcher.patterns.reduce((n, p) => Math.max(n, p.find.length), 0)
  const alphabet = alphabetOf(matcher)
  let run = 0
  let escape = false
  while (run < window.length && run < longest) {
    const c = window.charCodeAt(window.length - 1 - run)
    if (!alphabet.has(c)) break
    if (c === 37) escape = true
    run++
  }
  return escape ? run : pendingTail(matcher.patterns, window)
}

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
  const hold = heldBack(matcher, window)
  return { _tag: 'Go', send: window.slice(0, window.length - hold), scan: { seen, held: window.slice(window.length - hold) } }
}
