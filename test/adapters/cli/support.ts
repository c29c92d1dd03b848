// What the command-line tests share: the built CLI run in a workspace of its own, a policy with
// every §5 case in it, and a stand-in upstream the CLI reaches with --connect-to.
import { execFile, type ChildProcess } from 'node:child_process'
import http from 'node:http'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect as tlsConnect } from 'node:tls'
import { fileURLToPath } from 'node:url'

import { afterAll, beforeAll } from 'vitest'

import { createPki } from '../support/pki.js'
import { startUpstream, type Upstream } from '../support/upstream.js'

/** The built CLI (`npm test` builds it first). */
export const CLI = fileURLToPath(new URL('../../../dist/cli.js', import.meta.url))
/** The key the policy's `alpha` provider reads from ALPHA_API_KEY. */
export const KEY = 'sk-cli-test-51d2a9'

/** How a CLI run ended. */
export interface Result {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** The SHA-256 fingerprint of the certificate the proxy presents for `host`, over a new CONNECT. */
export const leafFingerprint = (proxyPort: number, host: string): Promise<string> =>
  new Promise((resolve, reject) => {
    const request = http.request({ host: '127.0.0.1', port: proxyPort, method: 'CONNECT', path: `${host}:443` })
    request.on('connect', (_response, socket) => {
      const tls = tlsConnect({ socket, servername: host, rejectUnauthorized: false }, () => {
        resolve(tls.getPeerCertificate().fingerprint256)
        tls.destroy()
      })
      tls.on('error', reject)
    })
    request.on('error', reject)
    request.end()
  })

/** A child's exit code once it has exited (at once if it already has). */
export const exitCode = (child: ChildProcess): Promise<number | null> =>
  child.exitCode !== null || child.signalCode !== null ? Promise.resolve(child.exitCode) : new Promise((resolve) => child.once('exit', resolve))

/** The policy every CLI test starts from. */
export const POLICY = `
mode: connected_deny
denyText: { loginCommand: "authsome login {provider}" }
providers:
  - name: alpha
    apiUrl: https://api.alpha.test/v1
    envVar: ALPHA_API_KEY
    oauth: { tokenUrl: "https://api.alpha.test/oauth/token" }
  - name: gamma
    apiUrl: https://api.gamma.test/
    envVar: GAMMA_API_KEY
  - name: tie-a
    apiUrl: https://shared.test/api
  - name: tie-b
    apiUrl: https://shared.test/api
connections:
  - provider: alpha
    name: default
    credentials: { headers: { Authorization: "Bearer \${env:ALPHA_API_KEY}" } }
  - { provider: tie-a, name: default, credentials: { headers: { x: "\${env:ALPHA_API_KEY}" } } }
  - { provider: tie-b, name: default, credentials: { headers: { x: "\${env:TIE_SECRET}" } } }
passthrough: [pypi.test]
`

/** A directory of its own (the CLI's HOME), the policy written in it, and the CLI run there. */
export interface Workspace {
  readonly dir: string
  readonly policyPath: string
  readonly cli: (args: ReadonlyArray<string>, env?: NodeJS.ProcessEnv) => Promise<Result>
}

/** Makes a workspace. */
export const workspace = (): Workspace => {
  const dir = mkdtempSync(join(tmpdir(), 'eg-cli-'))
  const policyPath = join(dir, 'policy.yaml')
  writeFileSync(policyPath, POLICY)
  const cli = (args: ReadonlyArray<string>, env: NodeJS.ProcessEnv = {}): Promise<Result> =>
    new Promise((resolve) => {
      execFile(process.execPath, [CLI, ...args], { env: { PATH: process.env['PATH'] ?? '', HOME: dir, ...env }, timeout: 30_000, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
        resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stdout, stderr })
      })
    })
  return { dir, policyPath, cli }
}

/** A stand-in for api.alpha.test and the options that make `run` and `serve` reach it. */
export interface StandIn {
  readonly upstream: Upstream
  /** `--policy`, `--upstream-ca` and `--connect-to` for the stand-in. */
  readonly common: ReadonlyArray<string>
  readonly close: () => Promise<void>
}

/** Starts the stand-in upstream for a workspace. */
export const startStandIn = async (space: Workspace): Promise<StandIn> => {
  const pki = createPki()
  const upstream = await startUpstream('alpha', pki.leaf(['api.alpha.test']))
  const caPath = join(space.dir, 'upstream-ca.pem')
  writeFileSync(caPath, pki.caPem)
  return { upstream, common: ['--policy', space.policyPath, '--upstream-ca', caPath, '--connect-to', `api.alpha.test:443:127.0.0.1:${upstream.port}`], close: () => upstream.close() }
}

/** The environment `run` and `serve` get in these tests: the key, a second secret, a config directory. */
export const cliEnv = (space: Workspace): NodeJS.ProcessEnv => ({ ALPHA_API_KEY: KEY, TIE_SECRET: 'tie-secret-value', EGRESS_GUARD_CONFIG_DIR: join(space.dir, 'config'), NO_PROXY: 'internal.corp' })

/** Starts the stand-in before the calling suite and stops it after; `take` receives it once started. */
export const useStandIn = (space: Workspace, take: (standIn: StandIn) => void): void => {
  let standIn: StandIn | undefined
  beforeAll(async () => {
    standIn = await startStandIn(space)
    take(standIn)
  })
  afterAll(async () => {
    await standIn?.close()
  })
}
