import {
  compileSecrets,
  REDACTED,
  scrubRules,
  secretParts,
  swapPlaceholders,
  type CredentialOutcome,
  type KnownSecret,
  type ScrubRule,
  type SecretMatcher,
  type Swap
} from '../../core/index.js'
import type { PolicyFile } from '../config/PolicyFile.js'
import { variablesRead } from './credentialSources.js'

// The secrets a guard knows (docs/spec.md §13), and whose they are: the placeholders `run` (or
// `serve --placeholders`) handed out, the real values of the variables they stand for, and every
// credential value the guard has resolved. The tripwire searches requests for all of them; an
// injected request gets the swaps and scrub rules of its provider.

/** A placeholder handed out for a variable (`OPENAI_API_KEY`). */
export interface HandedOut {
  readonly variable: string
  readonly value: string
}

/** What an injected request carries out with it: its placeholders' swaps, and the rules that scrub its response. */
export interface InjectionSecrets {
  readonly swaps: ReadonlyArray<Swap>
  readonly scrub: ReadonlyArray<ScrubRule>
}

/** The secrets one policy's guard knows. */
export interface SecretBook {
  /** True when there is anything to search for. */
  readonly any: () => boolean
  /** The secrets that may not go to a route of `provider` (all of them for a request no route matched), compiled. */
  readonly foreignTo: (provider: string | undefined) => SecretMatcher
  /** Learns the values of a resolved credential (once per outcome). */
  readonly learn: (provider: string, outcome: CredentialOutcome | undefined) => void
  /** The swaps and scrub rules for a request injected with `headers` for `provider`. */
  readonly forInjection: (provider: string, headers: Readonly<Record<string, string>>) => InjectionSecrets
}

/** Credential values remembered at most (token refreshes add new ones); placeholders and their variables' values are always kept. */
const MAX_LEARNED = 1_024

/** The providers each variable belongs to: those whose SDK reads it (`envVar`), and those whose connections' templates read it. */
export const variableOwners = (file: PolicyFile): ReadonlyMap<string, ReadonlyArray<string>> => {
  const owners = new Map<string, Set<string>>()
  const own = (variable: string, provider: string): void => {
    const set = owners.get(variable) ?? new Set<string>()
    set.add(provider)
    owners.set(variable, set)
  }
  for (const p of file.providers) if (p.envVar !== undefined) own(p.envVar, p.name)
  for (const connection of file.connections ?? []) for (const name of variablesRead(connection.credentials)) own(name, connection.provider)
  return new Map([...owners].map(([variable, set]) => [variable, [...set]]))
}

/** Builds the book for a policy, with the placeholders handed out and the environment their variables are read from. */
export const secretBook = (file: PolicyFile, handedOut: ReadonlyArray<HandedOut>, env: NodeJS.ProcessEnv): SecretBook => {
  const owners = variableOwners(file)
  // Placeholders, with the real value each stands for (the variable's value here, when set).
  const placeholders = handedOut.map(({ variable, value }) => ({ value, owners: owners.get(variable) ?? [], real: env[variable] ?? '' }))
  const fixed: Array<KnownSecret> = placeholders.flatMap((p) => [
    { value: p.value, owners: p.owners, kind: 'placeholder' as const },
    ...(p.real === '' ? [] : [{ value: p.real, owners: p.owners, kind: 'credential' as const }])
  ])
  const learned = new Map<string, KnownSecret>()
  const seenOutcomes = new WeakSet<object>()
  const injections = new WeakMap<object, Map<string, InjectionSecrets>>()
  // Compiled per provider whose requests are searched ('' for requests no route matched).
  let compiled = new Map<string, SecretMatcher>()

  const learn: SecretBook['learn'] = (provider, outcome) => {
    if (outcome === undefined || outcome._tag !== 'Available' || seenOutcomes.has(outcome)) return
    seenOutcomes.add(outcome)
    for (const value of Object.values(outcome.headers)) {
      for (const part of secretParts(value)) {
        const known = learned.get(part)
        if (known !== undefined && known.owners.includes(provider)) continue
        // A value the book knows already (a variable's) keeps its owners, and gains this provider.
        const owners = new Set([...fixed.filter((f) => f.value === part).flatMap((f) => f.owners), ...(known?.owners ?? []), provider])
        learned.delete(part)
        learned.set(part, { value: part, owners: [...owners], kind: 'credential' })
        compiled = new Map()
      }
    }
    while (learned.size > MAX_LEARNED) learned.delete(learned.keys().next().value as string)
  }

  // What the client is shown for a value: the value with each real value it holds replaced by its placeholder; `[redacted]` when it holds none.
  // `Basic` credentials are decoded to be looked into, as a swap does.
  const unswaps = placeholders.filter((p) => p.real !== '').map((p) => ({ placeholder: p.real, real: p.value }))
  const shownAs = (value: string): string => {
    const shown = swapPlaceholders(value, unswaps)
    return shown === value ? REDACTED : shown
  }

  const forInjection: SecretBook['forInjection'] = (provider, headers) => {
    const byProvider = injections.get(headers) ?? new Map<string, InjectionSecrets>()
    injections.set(headers, byProvider)
    const known = byProvider.get(provider)
    if (known !== undefined) return known
    const swaps = placeholders.filter((p) => p.real !== '' && p.owners.includes(provider)).map((p) => ({ placeholder: p.value, real: p.real }))
    const values = [...new Set([...Object.values(headers).flatMap(secretParts), ...swaps.map((s) => s.real)])]
    const made: InjectionSecrets = { swaps, scrub: scrubRules(values.map((value) => ({ value, shownAs: shownAs(value) }))) }
    byProvider.set(provider, made)
    return made
  }

  return {
    any: () => fixed.length > 0 || learned.size > 0,
    foreignTo: (provider) => {
      const key = provider ?? ''
      const known = compiled.get(key)
      if (known !== undefined) return known
      const made = compileSecrets([...fixed, ...learned.values()].filter((secret) => provider === undefined || !secret.owners.includes(provider)))
      compiled.set(key, made)
      return made
    },
    learn,
    forInjection
  }
}
