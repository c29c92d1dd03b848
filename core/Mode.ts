import * as E from 'fp-ts/lib/Either.js'

// -------------------------------------------------------------------------------------
// model
// -------------------------------------------------------------------------------------

/** The four proxy modes: intercept scope × unmatched policy (docs/spec.md §2). */
export type ProxyMode = 'connected_allow' | 'connected_deny' | 'configured_allow' | 'configured_deny'

/** Which providers feed the route table: those with a default connection, or every configured one. */
export type Scope = 'connected' | 'configured'

/** What happens to an unmatched request (or a matched one without credentials). */
export type UnmatchedPolicy = 'allow' | 'deny'

/** Why a mode string was rejected. */
export interface ModeError {
  readonly _tag: 'UnknownMode'
  readonly message: string
}

// -------------------------------------------------------------------------------------
// constants
// -------------------------------------------------------------------------------------

/** Every valid mode, in the order error messages list them. */
export const PROXY_MODES: ReadonlyArray<ProxyMode> = [
  'connected_allow',
  'connected_deny',
  'configured_allow',
  'configured_deny'
]

/** The mode used when none is configured. */
export const DEFAULT_MODE: ProxyMode = 'connected_allow'

// -------------------------------------------------------------------------------------
// constructors
// -------------------------------------------------------------------------------------

const isProxyMode = (input: unknown): input is ProxyMode =>
  typeof input === 'string' && (PROXY_MODES as ReadonlyArray<string>).includes(input)

const shown = (input: unknown): string => {
  const text = typeof input === 'string' ? input : JSON.stringify(input) ?? String(input)
  return text.length > 64 ? `${text.slice(0, 64)}…` : text
}

/** Parses a mode string; anything but the four exact mode names is an error naming all four. */
export const parseMode = (input: unknown): E.Either<ModeError, ProxyMode> => {
  if (isProxyMode(input)) return E.right(input)
  let what: string
  try {
    what = typeof input === 'string' ? `unknown mode \`${shown(input)}\`` : `mode must be a string, got \`${shown(input)}\``
  } catch {
    what = 'mode must be a string'
  }
  return E.left({ _tag: 'UnknownMode', message: `${what}: expected one of ${PROXY_MODES.join(', ')}` })
}

// -------------------------------------------------------------------------------------
// destructors
// -------------------------------------------------------------------------------------

/** The intercept scope of a mode; anything that is not a configured mode gets the narrower `connected`. */
export const scopeOf = (mode: ProxyMode): Scope =>
  mode === 'configured_allow' || mode === 'configured_deny' ? 'configured' : 'connected'

/** The unmatched policy of a mode; anything that is not an allow mode denies (fail closed). */
export const unmatchedPolicyOf = (mode: ProxyMode): UnmatchedPolicy =>
  mode === 'connected_allow' || mode === 'configured_allow' ? 'allow' : 'deny'
