import { readFile } from 'node:fs/promises'

import * as E from 'fp-ts/lib/Either.js'

import { redactUrl } from '../../core/index.js'
import { parsePolicyText, type LoadedPolicy } from '../config/PolicyFile.js'
import { fetchPolicy, isPolicyUrl } from '../config/policyUrl.js'
import { readPolicyFile } from '../config/readPolicyFile.js'
import { holdsCertificate } from '../upstream/upstreamTrust.js'
import { catalogPolicy } from './catalog.js'
import type { CommonOptions } from './options.js'

/** The policy a command works on: `--policy FILE`, or the bundled catalog with keys from the environment. */
export const loadPolicy = async (options: Pick<CommonOptions, 'policy'>, env: NodeJS.ProcessEnv): Promise<E.Either<ReadonlyArray<string>, LoadedPolicy>> => {
  if (options.policy === undefined) return E.right(catalogPolicy(env))
  if (isPolicyUrl(options.policy)) {
    const fetched = await fetchPolicy(options.policy, undefined)
    if (fetched._tag !== 'Fetched') return E.left([`--policy ${fetched._tag === 'Failed' ? fetched.message : 'answered 304'}; check the URL and that this host can reach it`])
    const parsed = parsePolicyText(fetched.text, redactUrl(options.policy))
    return E.isLeft(parsed) ? E.left(parsed.left.messages) : parsed
  }
  const loaded = await readPolicyFile(options.policy)
  return E.isLeft(loaded) ? E.left(loaded.left.messages) : loaded
}

/** Reads the `--upstream-ca` files (PEM); each must hold a certificate. */
export const readCaFiles = async (paths: ReadonlyArray<string>): Promise<E.Either<string, ReadonlyArray<string>>> => {
  const pems: Array<string> = []
  for (const path of paths) {
    let pem: string
    try {
      pem = await readFile(path, 'utf8')
    } catch (error) {
      return E.left(`--upstream-ca \`${path}\`: cannot read it (${(error as NodeJS.ErrnoException).code ?? 'error'}); give the path of a PEM certificate`)
    }
    // A file without a certificate would start a proxy whose every upstream request fails (502).
    if (!holdsCertificate(pem)) return E.left(`--upstream-ca \`${path}\`: holds no PEM certificate; give a file with -----BEGIN CERTIFICATE----- blocks`)
    pems.push(pem)
  }
  return E.right(pems)
}
