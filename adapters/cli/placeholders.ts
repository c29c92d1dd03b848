import { randomBytes } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'

import * as E from 'fp-ts/lib/Either.js'

import type { Guard } from '../guard/createGuard.js'
import type { HandedOut } from '../guard/secretBook.js'
import { variablesRead } from '../guard/credentialSources.js'
import type { PolicyFile } from '../config/PolicyFile.js'

// The placeholders a child holds instead of real keys (docs/spec.md §13): fresh and random for
// each run (or each `serve --placeholders`), shaped like the provider's keys, and handed to the
// guard, which swaps them for the real values on their own provider's routes and trips on them
// anywhere else.

/** What every placeholder holds after its prefix: this marker, then 144 random bits. */
const PLACEHOLDER_MARK = 'egress-guard-'

/**
 * The value an SDK finds in its key variable: enough to start, worthless to steal, fresh each
 * time. It starts with `prefix`, the prefix the provider's keys carry, for SDKs that check a key's shape.
 */
export const placeholder = (prefix = ''): string => `${prefix}${PLACEHOLDER_MARK}${randomBytes(18).toString('base64url')}`

/** The variables the policy's credential templates read (`${env:NAME}`), the real keys a child must not see. */
export const templateVariables = (file: PolicyFile): ReadonlyArray<string> => [...new Set((file.connections ?? []).flatMap((c) => variablesRead(c.credentials)))]

/**
 * A placeholder for every routed provider's variable, and for every variable a credential
 * template reads that is set in `env`: one a variable, in the shape of the first routed provider's
 * keys that reads it.
 */
export const placeholdersFor = (guard: Guard, env: NodeJS.ProcessEnv): ReadonlyArray<HandedOut> => {
  const routed = new Set(guard.table().routes.map((r) => r.provider))
  const placeholders = new Map<string, string>()
  for (const p of guard.policy().file.providers) {
    if (p.envVar !== undefined && routed.has(p.name) && !placeholders.has(p.envVar)) placeholders.set(p.envVar, placeholder(p.keyPrefix))
  }
  for (const name of templateVariables(guard.policy().file)) if (env[name] !== undefined && !placeholders.has(name)) placeholders.set(name, placeholder())
  return [...placeholders].map(([variable, value]) => ({ variable, value }))
}

/** Writes placeholders as `NAME=value` lines (a file a shell can source), readable by its owner only. */
export const writePlaceholderFile = (path: string, placeholders: ReadonlyArray<HandedOut>): Promise<void> =>
  writeFile(path, placeholders.map(({ variable, value }) => `${variable}=${value}\n`).join(''), { mode: 0o600 })

/** Reads a file writePlaceholderFile wrote (a `serve` worker reads its primary's). */
export const readPlaceholderFile = async (path: string): Promise<E.Either<string, ReadonlyArray<HandedOut>>> => {
  try {
    const lines = (await readFile(path, 'utf8')).split('\n').filter((line) => line !== '')
    const read = lines.map((line) => /^([A-Za-z_][A-Za-z0-9_]*)=(\S+)$/.exec(line))
    if (read.some((m) => m === null)) return E.left(`--placeholders \`${path}\` holds a line that is not NAME=value`)
    return E.right(read.map((m) => ({ variable: (m as RegExpExecArray)[1] as string, value: (m as RegExpExecArray)[2] as string })))
  } catch (error) {
    return E.left(`--placeholders \`${path}\` cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})`)
  }
}
