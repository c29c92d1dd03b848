// -------------------------------------------------------------------------------------
// model
// -------------------------------------------------------------------------------------

/** Headers to inject for a connection. */
export interface Available {
  readonly _tag: 'Available'
  readonly headers: Readonly<Record<string, string>>
  readonly expiresAt?: Date
}

/** Why a connection has no usable credentials; the text never holds a credential value. */
export interface Unavailable {
  readonly _tag: 'Unavailable'
  readonly error: string
}

/** The outcome of resolving credentials for a (provider, connection). */
export type CredentialOutcome = Available | Unavailable

// -------------------------------------------------------------------------------------
// constructors
// -------------------------------------------------------------------------------------

/** Credentials that could not be had. */
export const unavailable = (error: string): Unavailable => ({ _tag: 'Unavailable', error })

// RFC 9110 token characters.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
// Field values: visible ASCII, space, tab and obs-text; never CR, LF or NUL.
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/
// Headers that steer the connection or the proxy rather than authenticate the request.
const RESERVED = new Set(['host', 'connection', 'content-length', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'keep-alive'])

const isDict = (value: unknown): value is Readonly<Record<string, unknown>> =>
  typeof value === 'object' && value !== null && !Array.isArray(value)

// Outcomes this function returned, frozen with their headers. A frozen outcome cannot change, so
// it needs no second check: the guard passes the same checked outcome for every request until its
// credentials change, and only the first request pays for the checks.
const checkedOutcomes = new WeakSet<object>()

/**
 * Checks an outcome before anything is injected: credential headers must be legal HTTP headers
 * (no CR, LF, NUL), none may be a connection or `Proxy-*` header, and no name may repeat in
 * another case. Anything else becomes `Unavailable`, with an error that names no value.
 */
export const usableCredentials = (outcome: unknown): CredentialOutcome => {
  if (!isDict(outcome)) return unavailable('no credentials were resolved')
  // INVARIANT: only an outcome returned below (frozen, so unchanged) skips the checks.
  if (checkedOutcomes.has(outcome)) return outcome as unknown as Available
  if (outcome['_tag'] === 'Unavailable') {
    const error = outcome['error']
    return unavailable(typeof error === 'string' && error !== '' ? error : 'credentials are unavailable')
  }
  if (outcome['_tag'] !== 'Available') return unavailable('credential outcome is malformed')
  const headers = outcome['headers']
  if (!isDict(headers)) return unavailable('credential headers are malformed')
  const names = Object.keys(headers)
  if (names.length === 0) return unavailable('credentials have no headers')
  const seen = new Set<string>()
  // INVARIANT: what is injected is the copy checked here, never the caller's (mutable) object.
  const checked: Record<string, string> = {}
  for (const name of names) {
    if (!TOKEN.test(name)) return unavailable('a credential header name is not a legal HTTP header name')
    const lower = name.toLowerCase()
    if (RESERVED.has(lower) || lower.startsWith('proxy-')) {
      return unavailable(`credential header \`${name}\` is not allowed: it controls the connection, not authentication`)
    }
    if (seen.has(lower)) return unavailable(`credential header \`${name}\` is given twice`)
    seen.add(lower)
    const value = headers[name]
    if (typeof value !== 'string' || !FIELD_VALUE.test(value)) {
      return unavailable(`credential header \`${name}\` has an illegal value (not a string, or CR, LF or NUL in it)`)
    }
    checked[name] = value
  }
  const expiresAt = outcome['expiresAt']
  // An expiry that is not a real Date (an ISO string read from JSON, an invalid Date) would be
  // cached as if it never expired: refused instead.
  if (expiresAt !== undefined && !(expiresAt instanceof Date && Number.isFinite(expiresAt.getTime()))) {
    return unavailable('credential expiresAt is not a valid Date')
  }
  const usable: Available = Object.freeze({ _tag: 'Available', headers: Object.freeze(checked), ...(expiresAt === undefined ? {} : { expiresAt }) })
  checkedOutcomes.add(usable)
  return usable
}
