import * as E from 'fp-ts/lib/Either.js'

import { check } from './check.js'
import { decisionService } from './decisionServiceCommand.js'
import { explain } from './explain.js'
import { processIo, type Io } from './io.js'
import { parseOptions, type CommonOptions } from './options.js'
import { run } from './run.js'
import { serve } from './serve.js'

const USAGE = `egress-guard: a credential-injecting egress proxy

usage:
  egress-guard serve   [--policy FILE|URL] [--mode MODE] [--report] [--listen IP] [--port N] [--audit FILE] [--upstream-ca FILE]... [--connect-to H:P:H2:P2]... [--engine E] [--workers N] [--placeholders FILE]
                       [--admin HOST:PORT] [--admin-token T] [--instance NAME] [--policy-poll S] [--json]
  egress-guard run     [--policy FILE] [--mode MODE] [--report] [--audit FILE] [--upstream-ca FILE]... [--connect-to H:P:H2:P2]... [--engine E] [--isolate] -- <command...>
  egress-guard explain <url> [--method M] [--mode MODE] [--report] [--client NAME] [--policy FILE] [--json]
  egress-guard check   [--policy FILE] [--mode MODE] [--report] [--client NAME] [--json]
  egress-guard decision-service [--policy FILE] [--mode MODE] [--report] [--port N] [--token T] [--audit FILE] [--json]
  egress-guard replay  <audit.jsonl> [--policy FILE] [--mode MODE] [--json]
  egress-guard learn   <audit.jsonl> [--policy FILE]
  egress-guard demo

Without --policy, the bundled provider catalog is the policy; each provider's key comes from the
environment variable its SDK reads (OPENAI_API_KEY, ANTHROPIC_API_KEY, GITHUB_TOKEN, ...).
Modes: connected_allow (default), connected_deny, configured_allow, configured_deny.
--report: report-only rollout; what the mode would deny is passed without credentials and
recorded as proxy_would_deny.
Engines: node (default, egress-guard's own on Node's HTTP stack), or a proxy library:
http-mitm-proxy or mockttp (install the one you use).
--policy may be an https:// URL, polled with ETag every --policy-poll seconds (30); the last
good policy is kept when a fetch or the policy fails.
--admin serves /metrics, /healthz, /readyz and /proxy/mode; set the token in
$EGRESS_GUARD_ADMIN_TOKEN (or --admin-token).`

type Command = (options: CommonOptions, io: Io) => Promise<number>

const COMMANDS: Record<string, { readonly options: Parameters<typeof parseOptions>[1]; readonly run: Command }> = {
  serve: { options: ['policy', 'mode', 'report', 'port', 'audit', 'upstream-ca', 'connect-to', 'json', 'config-dir', 'engine', 'workers', 'placeholders', 'admin', 'admin-token', 'instance', 'policy-poll', 'listen'], run: serve },
  explain: { options: ['policy', 'mode', 'report', 'client', 'method', 'json'], run: explain },
  check: { options: ['policy', 'mode', 'report', 'client', 'json'], run: check },
  'decision-service': { options: ['policy', 'mode', 'report', 'port', 'audit', 'token', 'json'], run: decisionService },
  replay: { options: ['policy', 'mode', 'json'], run: async (options, io) => (await import('./replay.js')).replay(options, io) },
  learn: { options: ['policy'], run: async (options, io) => (await import('./learn.js')).learn(options, io) }
}

/** The command line: returns the exit code. */
export const main = async (argv: ReadonlyArray<string>, io: Io = processIo): Promise<number> => {
  const [name, ...rest] = argv
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    io.out(USAGE)
    return name === undefined ? 2 : 0
  }
  if (name === 'demo') {
    const { demo } = await import('./demo.js')
    return demo(io)
  }
  if (name === 'run') {
    const split = rest.indexOf('--')
    const parsed = parseOptions(split < 0 ? rest : rest.slice(0, split), ['policy', 'mode', 'report', 'audit', 'upstream-ca', 'connect-to', 'config-dir', 'engine', 'isolate'])
    // `run curl -s URL`: the command's own options reach the parser first.
    if (E.isLeft(parsed)) return usageError(io, split < 0 && /^Unknown option/.test(parsed.left) ? `put the command after \`--\`: egress-guard run [options] -- <command...> (${parsed.left})` : parsed.left)
    if (parsed.right.help) return help(io)
    if (split < 0 || parsed.right.positionals.length > 0) return usageError(io, 'put the command after `--`: egress-guard run [options] -- <command...>')
    return run(parsed.right, rest.slice(split + 1), io)
  }
  const command = COMMANDS[name]
  if (command === undefined) return usageError(io, `unknown command \`${name}\`: expected serve, run, explain, check, decision-service, replay, learn or demo`)
  const parsed = parseOptions(rest, command.options)
  if (E.isLeft(parsed)) return usageError(io, parsed.left)
  if (parsed.right.help) return help(io)
  return command.run(parsed.right, io)
}

const help = (io: Io): number => {
  io.out(USAGE)
  return 0
}

const usageError = (io: Io, message: string): number => {
  io.err(`error: ${message}\nrun \`egress-guard help\` for usage`)
  return 2
}
