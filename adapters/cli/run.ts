import { spawn, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { constants, tmpdir } from 'node:os'
import { createServer, type Server } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { rootCertificates } from 'node:tls'

import * as E from 'fp-ts/lib/Either.js'

import { startGuardedProxy } from './guardedProxy.js'
import type { Io } from './io.js'
import type { CommonOptions } from './options.js'
import { placeholdersFor } from './placeholders.js'

const SYSTEM_BUNDLES = ['/etc/ssl/certs/ca-certificates.crt', '/etc/pki/tls/certs/ca-bundle.crt', '/etc/ssl/cert.pem']
const FORWARDED: ReadonlyArray<NodeJS.Signals> = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2']

/** NO_PROXY with the user's entries kept and the loopback names added. */
export const mergeNoProxy = (existing: string | undefined): string => {
  const entries = (existing ?? '').split(',').map((e) => e.trim()).filter((e) => e !== '')
  for (const local of ['localhost', '127.0.0.1', '::1']) if (!entries.includes(local)) entries.push(local)
  return entries.join(',')
}

/**
 * The variables that name a CA bundle for common tools: OpenSSL and Python (`SSL_CERT_FILE`),
 * requests, curl, git (Debian's is built on GnuTLS and reads only its own), the AWS CLI and SDKs,
 * pip, npm, Deno and Cargo. Each gets the child's bundle.
 */
export const BUNDLE_VARIABLES = ['SSL_CERT_FILE', 'REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE', 'GIT_SSL_CAINFO', 'AWS_CA_BUNDLE', 'PIP_CERT', 'npm_config_cafile', 'DENO_CERT', 'CARGO_HTTP_CAINFO'] as const

/** The text of the file a user's variable names ('' when unset); an unreadable one is said, not silently dropped. */
const readUserFile = async (io: Io, name: string): Promise<string> => {
  const path = io.env[name]
  if (path === undefined || path === '') return ''
  try {
    return await readFile(path, 'utf8')
  } catch (error) {
    io.err(`egress-guard warn: ${name} names \`${path}\`, which cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'}); the child will not trust it`)
    return ''
  }
}

/** Every distinct bundle the user's variables name, read. */
const userBundles = async (io: Io): Promise<ReadonlyArray<string>> => {
  const seen = new Set<string>()
  const texts: Array<string> = []
  for (const name of BUNDLE_VARIABLES) {
    const path = io.env[name]
    if (path === undefined || path === '' || seen.has(path)) continue
    seen.add(path)
    const text = await readUserFile(io, name)
    if (text !== '') texts.push(text)
  }
  return texts
}

/** The bridge `run --isolate` runs inside the child's network namespace (dist/isolate.cjs). */
export const ISOLATE = fileURLToPath(new URL('./isolate.cjs', import.meta.url))

/**
 * Why a network namespace cannot be had here, or undefined when one can: `--isolate` never runs a
 * child unisolated. Tried for real: a user and network namespace whose loopback comes up.
 */
export const namespaceRefusal = (): string | undefined => {
  const tried = spawnSync('unshare', ['-rn', '--', 'ip', 'link', 'set', 'lo', 'up'], { encoding: 'utf8', timeout: 10_000 })
  if (tried.error !== undefined) {
    const code = (tried.error as NodeJS.ErrnoException).code
    return code === 'ENOENT' ? 'this machine has no `unshare` (util-linux); install it, or run without --isolate' : `cannot start \`unshare\` (${code ?? 'error'})`
  }
  if (tried.status === 0) return undefined
  const why = (tried.stderr ?? '').trim().split('\n').at(-1) ?? ''
  return `cannot make a user and network namespace here (${why === '' ? `unshare exited with ${tried.status}` : why}); allow unprivileged user namespaces (user.max_user_namespaces, kernel.unprivileged_userns_clone) and install iproute2, or run without --isolate`
}

/** The Node preload `run` gives its children (dist/preload.cjs, beside the CLI). */
export const PRELOAD = fileURLToPath(new URL('./preload.cjs', import.meta.url))

/** NODE_OPTIONS with the user's options kept and the preload required after them. */
export const withPreload = (existing: string | undefined): string => {
  const own = `--require ${JSON.stringify(PRELOAD)}`
  return existing === undefined || existing.trim() === '' ? own : `${existing} ${own}`
}

const systemBundle = async (): Promise<string> => {
  for (const path of SYSTEM_BUNDLES) if (existsSync(path)) return readFile(path, 'utf8')
  return rootCertificates.join('\n')
}

/** `egress-guard run [options] -- <command...>`: runs a command whose traffic goes through the guard. */
export const run = async (options: CommonOptions, command: ReadonlyArray<string>, io: Io): Promise<number> => {
  const [file, ...args] = command
  if (file === undefined) {
    io.err('usage: egress-guard run [--policy F] [--mode M] [--report] [--audit F] [--upstream-ca F] [--connect-to H:P:H2:P2] [--isolate] -- <command...>')
    return 2
  }
  const quiet = (level: 'info' | 'warn' | 'error', message: string) => {
    if (level !== 'info') io.err(`egress-guard ${level}: ${message}`)
  }
  if (options.isolate) {
    const refused = namespaceRefusal()
    if (refused !== undefined) {
      io.err(`error: --isolate: ${refused}`)
      return 1
    }
  }
  if (!existsSync(PRELOAD)) {
    io.err(`error: the Node preload \`${PRELOAD}\` is missing, so Node children could go around the proxy; build egress-guard (npm run build) or reinstall it`)
    return 1
  }
  // The proxy is the child's alone: any other local process or user that finds its port would
  // have the child's credentials injected, so it demands a random token the child gets in its
  // proxy URL (what every common client turns into Proxy-Authorization: Basic).
  const client = { name: 'run', token: randomBytes(32).toString('base64url') }
  const started = await startGuardedProxy(options, io, { log: quiet, port: 0, proxyAuthentication: client })
  if (E.isLeft(started)) {
    for (const message of started.left) io.err(`error: ${message}`)
    return 1
  }
  const { proxy, guard, stop } = started.right
  const dir = await mkdtemp(join(tmpdir(), 'egress-guard-run-'))
  let bridge: Server | undefined
  let launched: ReadonlyArray<string> = [file, ...args]
  try {
    // The child trusts the system's CAs, every bundle the user's variables name (a corporate CA
    // keeps working for tunnelled hosts), and the proxy CA; Node gets the user's extra CAs plus
    // the proxy CA on top of its own roots.
    const own = await userBundles(io)
    const bundle = join(dir, 'ca-bundle.pem')
    await writeFile(bundle, [await systemBundle(), ...own, proxy.caCertPem].join('\n'), { mode: 0o600 })
    const nodeExtra = join(dir, 'node-extra-ca.pem')
    await writeFile(nodeExtra, `${await readUserFile(io, 'NODE_EXTRA_CA_CERTS')}\n${proxy.caCertPem}`, { mode: 0o600 })
    const env: NodeJS.ProcessEnv = { ...io.env }
    // Isolated, the child reaches the proxy only through a bridge in its namespace, on the same
    // port number there, carried over a Unix socket in the run's private directory.
    if (options.isolate) {
      bridge = createServer((socket) => proxy.accept(socket))
      const socketPath = join(dir, 'proxy.sock')
      await new Promise<void>((resolve, reject) => bridge?.once('error', reject).listen(socketPath, resolve))
      launched = ['unshare', '-rn', '--', 'sh', '-c', 'ip link set lo up && exec "$0" "$@"', process.execPath, ISOLATE, socketPath, String(proxy.port), file, ...args]
    }
    const proxyUrl = proxy.url.replace(/^http:\/\//, `http://${client.name}:${client.token}@`)
    for (const name of ['HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy']) env[name] = proxyUrl
    const noProxy = mergeNoProxy(io.env['NO_PROXY'] ?? io.env['no_proxy'])
    env['NO_PROXY'] = noProxy
    env['no_proxy'] = noProxy
    for (const name of BUNDLE_VARIABLES) env[name] = bundle
    env['NODE_EXTRA_CA_CERTS'] = nodeExtra // Node adds it to its own roots
    // Node 20's fetch and http modules ignore the proxy variables: a preload makes them use them,
    // after the user's own NODE_OPTIONS; newer Node reads NODE_USE_ENV_PROXY itself.
    env['NODE_OPTIONS'] = withPreload(io.env['NODE_OPTIONS'])
    env['NODE_USE_ENV_PROXY'] = '1'
    // Every routed provider's SDK finds a placeholder, never the real key; so does every variable
    // a credential template reads (`${env:NAME}`), declared as a provider's envVar or not. The
    // guard knows whose each is (docs/spec.md §13).
    const placeholders = placeholdersFor(guard, io.env)
    guard.handOut(placeholders)
    for (const { variable, value } of placeholders) env[variable] = value
    return await new Promise<number>((resolve) => {
      const [program = file, ...programArgs] = launched
      const child = spawn(program, programArgs, { stdio: 'inherit', env })
      const forward = (signal: NodeJS.Signals) => () => child.kill(signal)
      const handlers = FORWARDED.map((signal) => [signal, forward(signal)] as const)
      for (const [signal, handler] of handlers) process.on(signal, handler)
      let finished = false
      const done = (code: number) => {
        if (finished) return
        finished = true
        for (const [signal, handler] of handlers) process.off(signal, handler)
        resolve(code)
      }
      child.on('error', (error: NodeJS.ErrnoException) => {
        io.err(`error: cannot run \`${file}\`: ${error.code === 'ENOENT' ? 'command not found' : error.code === 'EACCES' ? 'permission denied' : error.message}`)
        done(error.code === 'ENOENT' ? 127 : 126)
      })
      child.on('exit', (code, signal) => done(code ?? 128 + (signal === null ? 0 : (constants.signals[signal] ?? 0))))
    })
  } finally {
    bridge?.close()
    await stop()
    await rm(dir, { recursive: true, force: true })
  }
}
