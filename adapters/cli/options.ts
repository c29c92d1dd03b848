import { isIP } from 'node:net'
import { parseArgs } from 'node:util'

import * as E from 'fp-ts/lib/Either.js'

import { parseMode, type Enforcement, type ProxyMode } from '../../core/index.js'
import { checkAdminToken, parseAdminAddress } from '../admin/adminServer.js'
import { checkPolicyUrl, isPolicyUrl } from '../config/policyUrl.js'
import { parseConnectTo, type ConnectTo } from '../upstream/connectTo.js'

/** The engines the command line can run on: egress-guard's own (`node`, the default) or a proxy library (an optional peer dependency). */
export const ENGINES = ['node', 'http-mitm-proxy', 'mockttp'] as const
export type Engine = (typeof ENGINES)[number]

/** Options shared by `serve`, `run`, `explain`, `check` and `decision-service`, in the words scripts rely on. */
export interface CommonOptions {
  readonly policy: string | undefined
  readonly mode: ProxyMode | undefined
  /** `--report`: report-only enforcement (docs/spec.md §11), over the policy's `enforcement`. */
  readonly enforcement: Enforcement | undefined
  readonly port: number | undefined
  readonly audit: string | undefined
  readonly upstreamCa: ReadonlyArray<string>
  readonly connectTo: ReadonlyArray<ConnectTo>
  readonly json: boolean
  readonly method: string | undefined
  readonly configDir: string | undefined
  readonly token: string | undefined
  /** `explain`, `check`: the client (docs/spec.md §9) whose mode and routes apply. */
  readonly client: string | undefined
  /** The proxy library `serve` and `run` use. */
  readonly engine: Engine
  /** `serve`: how many worker processes share the port (1: none, the proxy runs in this process). */
  readonly workers: number
  /** `run`: start the child in a network namespace whose only way out is the proxy. */
  readonly isolate: boolean
  /** `serve`: the file to write fresh placeholders to, for clients to use instead of real keys (docs/spec.md §13). */
  readonly placeholders: string | undefined
  /** `serve --admin HOST:PORT`: the admin listener (docs/spec.md §14). */
  readonly admin: { readonly host: string; readonly port: number } | undefined
  /** `serve --admin-token`: the admin listener's bearer token (else `$EGRESS_GUARD_ADMIN_TOKEN`). */
  readonly adminToken: string | undefined
  /** `serve --instance NAME`: the instance id every record carries (docs/spec.md §14). */
  readonly instance: string | undefined
  /** `serve --listen HOST`: the address the proxy listens on (default 127.0.0.1). */
  readonly listen: string | undefined
  /** `--policy-poll SECONDS`: how often a policy URL is fetched again (default 30). */
  readonly policyPollSeconds: number
  readonly positionals: ReadonlyArray<string>
}

const SPEC = {
  policy: { type: 'string' },
  mode: { type: 'string' },
  report: { type: 'boolean' },
  port: { type: 'string' },
  audit: { type: 'string' },
  'upstream-ca': { type: 'string', multiple: true },
  'connect-to': { type: 'string', multiple: true },
  json: { type: 'boolean' },
  method: { type: 'string' },
  'config-dir': { type: 'string' },
  token: { type: 'string' },
  client: { type: 'string' },
  engine: { type: 'string' },
  workers: { type: 'string' },
  isolate: { type: 'boolean' },
  placeholders: { type: 'string' },
  admin: { type: 'string' },
  'admin-token': { type: 'string' },
  instance: { type: 'string' },
  'policy-poll': { type: 'string' },
  listen: { type: 'string' },
  help: { type: 'boolean', short: 'h' }
} as const

/** Parses the shared options; an unknown option or a bad value is an error that says what to write. */
export const parseOptions = (args: ReadonlyArray<string>, allowed: ReadonlyArray<keyof typeof SPEC>): E.Either<string, CommonOptions & { readonly help: boolean }> => {
  let parsed: ReturnType<typeof parseArgs<{ options: typeof SPEC; allowPositionals: true; strict: true; args: Array<string> }>>
  try {
    parsed = parseArgs({ args: [...args], options: SPEC, allowPositionals: true, strict: true })
  } catch (error) {
    return E.left(error instanceof Error ? error.message.replace(/\. To specify a positional argument.*$/s, '') : 'unreadable options')
  }
  const values = parsed.values
  for (const key of Object.keys(values) as Array<keyof typeof SPEC>) {
    if (key !== 'help' && !allowed.includes(key)) return E.left(`option --${key} does not apply here`)
  }
  let mode: ProxyMode | undefined
  if (values.mode !== undefined) {
    const m = parseMode(values.mode)
    if (E.isLeft(m)) return E.left(`--mode: ${m.left.message}`)
    mode = m.right
  }
  let port: number | undefined
  if (values.port !== undefined) {
    if (!/^[0-9]{1,5}$/.test(values.port) || Number(values.port) > 65535) return E.left(`--port \`${values.port}\`: expected a port number from 0 to 65535`)
    port = Number(values.port)
  }
  const engine = values.engine ?? 'node'
  if (!(ENGINES as ReadonlyArray<string>).includes(engine)) return E.left(`--engine \`${engine}\`: expected one of ${ENGINES.join(', ')}`)
  const workers = values.workers ?? '1'
  if (!/^[0-9]{1,2}$/.test(workers) || Number(workers) < 1 || Number(workers) > 64) return E.left(`--workers \`${workers}\`: expected a number of processes from 1 to 64`)
  const connectTo: Array<ConnectTo> = []
  for (const spec of values['connect-to'] ?? []) {
    const rule = parseConnectTo(spec)
    if (E.isLeft(rule)) return rule
    connectTo.push(rule.right)
  }
  const admin = values.admin === undefined ? E.right(undefined) : parseAdminAddress(values.admin)
  if (E.isLeft(admin)) return admin
  const adminToken = checkAdminToken(values['admin-token'])
  if (adminToken !== undefined) return E.left(`--admin-token: ${adminToken}`)
  if (values.instance !== undefined && !/^[A-Za-z0-9._:@/-]{1,128}$/.test(values.instance)) return E.left(`--instance \`${values.instance.slice(0, 64)}\`: expected 1 to 128 of A-Z, a-z, 0-9 and . _ : @ / -`)
  if (values.listen !== undefined && isIP(values.listen.replace(/^\[|\]$/g, '')) === 0) return E.left(`--listen \`${values.listen.slice(0, 64)}\`: expected an IP address, such as 0.0.0.0 or ::`)
  const poll = values['policy-poll'] ?? '30'
  if (!/^[0-9]{1,5}$/.test(poll) || Number(poll) < 1 || Number(poll) > 86_400) return E.left(`--policy-poll \`${poll.slice(0, 16)}\`: expected a number of seconds from 1 to 86400`)
  if (values.policy !== undefined && isPolicyUrl(values.policy)) {
    const url = checkPolicyUrl(values.policy)
    if (E.isLeft(url)) return url
  }
  return E.right({
    policy: values.policy,
    mode,
    enforcement: values.report === true ? 'report' : undefined,
    port,
    audit: values.audit,
    upstreamCa: values['upstream-ca'] ?? [],
    connectTo,
    json: values.json ?? false,
    method: values.method,
    configDir: values['config-dir'],
    token: values.token,
    client: values.client,
    engine: engine as Engine,
    workers: Number(workers),
    isolate: values.isolate ?? false,
    placeholders: values.placeholders,
    admin: admin.right,
    adminToken: values['admin-token'],
    instance: values.instance,
    policyPollSeconds: Number(poll),
    listen: values.listen?.replace(/^\[|\]$/g, ''),
    positionals: parsed.positionals,
    help: values.help ?? false
  })
}
