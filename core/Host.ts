import * as E from 'fp-ts/lib/Either.js'

// -------------------------------------------------------------------------------------
// model
// -------------------------------------------------------------------------------------

/** A normalised host: lower case, punycode, IPv4 dotted-quad, IPv6 without brackets, no trailing dot. */
export type Host = string & { readonly Host: unique symbol }

/** Why a string is not a host. */
export type HostError =
  | { readonly _tag: 'EmptyHost' }
  | { readonly _tag: 'IllegalHostCharacter' }
  | { readonly _tag: 'UnparsableHost' }

/** A host with an optional port, as written in a `Host` header or an authority. */
export interface Authority {
  readonly host: Host
  readonly port: number | undefined
}

// -------------------------------------------------------------------------------------
// constructors
// -------------------------------------------------------------------------------------

const EMPTY: HostError = { _tag: 'EmptyHost' }
const ILLEGAL: HostError = { _tag: 'IllegalHostCharacter' }
const UNPARSABLE: HostError = { _tag: 'UnparsableHost' }

// Characters that would change how `https://<host>/` is split into URL parts, or that the
// URL parser silently strips or decodes (tab, newline, percent-escapes).
const STRUCTURAL = /[\x00-\x20\x7f/\\?#@:%[\]^|<>]/
// Inside IPv6 brackets only hex digits, colons and dots (an embedded IPv4) are meaningful.
const STRUCTURAL_V6 = /[^0-9a-fA-F:.]/

const stripTrailingDot = (host: string): string => (host.endsWith('.') ? host.slice(0, -1) : host)

const isDigit = (c: number): boolean => c >= 48 && c <= 57
const isHexDigit = (c: number): boolean => isDigit(c) || (c >= 97 && c <= 102) || (c >= 65 && c <= 70)

// The WHATWG "ends in a number" test on the label in [start, end): such a last label makes the
// whole host an IPv4 literal, which only the URL parser may interpret.
const isNumericLabel = (text: string, start: number, end: number): boolean => {
  let i = start
  let hex = false
  if (end - start >= 2 && text.charCodeAt(start) === 48 && (text.charCodeAt(start + 1) | 0x20) === 120) {
    hex = true
    i += 2
  }
  for (; i < end; i++) if (!(hex ? isHexDigit(text.charCodeAt(i)) : isDigit(text.charCodeAt(i)))) return false
  return true
}

/**
 * The fast path: a plain ASCII DNS name (letters, digits, `-`, non-empty labels, at most one
 * trailing dot, no `xn--` label, not ending in a number) is returned as the WHATWG parser would
 * return it; anything else yields `undefined` and goes to the parser. One pass, no allocation
 * unless the name needs lower-casing or its trailing dot removed.
 */
const plainName = (input: string): string | undefined => {
  const n = input.length
  let labelStart = 0
  let lastStart = 0
  let upper = false
  for (let i = 0; i < n; i++) {
    const c = input.charCodeAt(i)
    if (c >= 97 && c <= 122) continue
    if (c === 46) {
      if (i === labelStart) return undefined
      lastStart = labelStart
      labelStart = i + 1
    } else if (c === 45) {
      // A label that starts `xn--` is punycode, which the parser validates.
      if (i === labelStart + 3 && (input.charCodeAt(labelStart) | 0x20) === 120 && (input.charCodeAt(labelStart + 1) | 0x20) === 110 && input.charCodeAt(labelStart + 2) === 45) {
        return undefined
      }
    } else if (c >= 65 && c <= 90) upper = true
    else if (!isDigit(c)) return undefined
  }
  const trailingDot = labelStart === n
  const end = trailingDot ? n - 1 : n
  if (!trailingDot) lastStart = labelStart
  if (isNumericLabel(input, lastStart, end)) return undefined
  const lower = upper ? input.toLowerCase() : input
  return trailingDot ? lower.slice(0, end) : lower
}

const viaUrlParser = (wrapped: string): E.Either<HostError, Host> => {
  try {
    const url = new URL(`https://${wrapped}/`)
    if (url.pathname !== '/' || url.port !== '' || url.username !== '' || url.password !== '') return E.left(UNPARSABLE)
    let host = url.hostname
    if (host.startsWith('[')) host = host.slice(1, -1)
    host = stripTrailingDot(host)
    // One trailing dot is the root label; a second means an empty label, which no DNS name has.
    if (host.endsWith('.')) return E.left(UNPARSABLE)
    return host === '' ? E.left(EMPTY) : E.right(host as Host)
  } catch {
    return E.left(UNPARSABLE)
  }
}

/**
 * Normalises a host as the WHATWG URL parser does (case, IDN to punycode, every IPv4 notation),
 * removes IPv6 brackets and one trailing dot. Never throws.
 */
export const parseHost = (input: unknown): E.Either<HostError, Host> => {
  if (typeof input !== 'string' || input === '') return E.left(EMPTY)
  const plain = plainName(input)
  if (plain !== undefined) return E.right(plain as Host)
  if (input.startsWith('[') && input.endsWith(']')) {
    const inner = input.slice(1, -1)
    return inner.includes(':') && !STRUCTURAL_V6.test(inner) ? viaUrlParser(`[${inner}]`) : E.left(ILLEGAL)
  }
  if (input.includes(':')) return STRUCTURAL_V6.test(input) ? E.left(ILLEGAL) : viaUrlParser(`[${input}]`)
  if (STRUCTURAL.test(input)) return E.left(ILLEGAL)
  return viaUrlParser(input)
}

/** Parses `host[:port]` (a `Host` header, an absolute URI's authority); never throws. */
export const parseAuthority = (input: unknown): E.Either<HostError, Authority> => {
  if (typeof input !== 'string' || input === '') return E.left(EMPTY)
  let hostPart = input
  let portPart: string | undefined
  if (input.startsWith('[')) {
    const close = input.indexOf(']')
    if (close < 0) return E.left(UNPARSABLE)
    hostPart = input.slice(0, close + 1)
    const rest = input.slice(close + 1)
    if (rest !== '') {
      if (!rest.startsWith(':')) return E.left(UNPARSABLE)
      portPart = rest.slice(1)
    }
  } else {
    const colon = input.lastIndexOf(':')
    if (colon >= 0) {
      if (input.indexOf(':') !== colon) return E.left(UNPARSABLE)
      hostPart = input.slice(0, colon)
      portPart = input.slice(colon + 1)
    }
  }
  let port: number | undefined
  if (portPart !== undefined && portPart !== '') {
    if (!/^[0-9]{1,5}$/.test(portPart) || Number(portPart) > 65535) return E.left(UNPARSABLE)
    port = Number(portPart)
  }
  const host = parseHost(hostPart)
  return E.isLeft(host) ? host : E.right({ host: host.right, port })
}

// -------------------------------------------------------------------------------------
// refinements
// -------------------------------------------------------------------------------------

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/

const isLocalIpv4 = (a: number, b: number): boolean =>
  a === 0 || // "this network", including the unspecified 0.0.0.0
  a === 10 ||
  a === 127 ||
  (a === 100 && b >= 64 && b <= 127) ||
  (a === 169 && b === 254) || // link-local, cloud metadata
  (a === 172 && b >= 16 && b <= 31) ||
  (a === 192 && b === 168)

// Expands the canonical (already URL-serialised) IPv6 text into eight 16-bit groups.
const ipv6Groups = (host: string): ReadonlyArray<number> | undefined => {
  const halves = host.split('::')
  if (halves.length > 2) return undefined
  const parse = (part: string | undefined): Array<number> =>
    part === undefined || part === '' ? [] : part.split(':').map((g) => parseInt(g, 16))
  const head = parse(halves[0])
  const tail = parse(halves[1])
  const fill = halves.length === 2 ? 8 - head.length - tail.length : 0
  const groups = [...head, ...Array<number>(fill).fill(0), ...tail]
  return groups.length === 8 && groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff) ? groups : undefined
}

// The embedded IPv4 address sits in the last two groups; its first two octets decide locality.
const embeddedIpv4IsLocal = (g6: number): boolean => isLocalIpv4(g6 >> 8, g6 & 0xff)

const isLocalIpv6 = (g: ReadonlyArray<number>): boolean => {
  const [g0 = 0, g1 = 0, g2 = 0, g3 = 0, g4 = 0, g5 = 0, g6 = 0, g7 = 0] = g
  const firstFiveZero = g0 === 0 && g1 === 0 && g2 === 0 && g3 === 0 && g4 === 0
  if (firstFiveZero && g5 === 0 && g6 === 0 && (g7 === 0 || g7 === 1)) return true // :: and ::1
  if ((g0 & 0xfe00) === 0xfc00) return true // unique local fc00::/7
  if ((g0 & 0xffc0) === 0xfe80 || (g0 & 0xffc0) === 0xfec0) return true // link-local, old site-local
  if (firstFiveZero && (g5 === 0xffff || g5 === 0)) return embeddedIpv4IsLocal(g6) // mapped, compatible
  if (g0 === 0 && g1 === 0 && g2 === 0 && g3 === 0 && g4 === 0xffff && g5 === 0) return embeddedIpv4IsLocal(g6) // translated
  if (g0 === 0x64 && g1 === 0xff9b && (g2 === 0 || g2 === 1)) return embeddedIpv4IsLocal(g6) // NAT64
  return false
}

/**
 * True for hosts that must never receive credentials: `localhost`, `*.localhost`, and loopback,
 * unspecified, private, shared (100.64/10) and link-local addresses, also IPv4-mapped and NAT64.
 */
export const isLocalHost = (host: Host): boolean => {
  if (host === 'localhost' || host.endsWith('.localhost')) return true
  // Normalised IPv4 literals end in a digit, IPv6 literals in a hex digit or a colon: a name
  // ending in anything else is neither, and needs no further look.
  const last = host.charCodeAt(host.length - 1)
  if (last !== 58 && !isHexDigit(last)) return false
  const v4 = IPV4.exec(host)
  if (v4 !== null) return isLocalIpv4(Number(v4[1]), Number(v4[2]))
  if (!host.includes(':')) return false
  const groups = ipv6Groups(host)
  // INVARIANT: an IPv6 literal we cannot read is treated as local: never a route, never credentials.
  return groups === undefined || isLocalIpv6(groups)
}
