// `egress-guard run` with the clients agents really use: the official openai and @anthropic-ai/sdk
// packages, Node's global fetch and https.request, and curl, each in a child of `run` on the
// bundled catalog, against stand-ins for the providers. A tripwire preload in the child (given in
// the user's own NODE_OPTIONS, which `run` keeps) fails any connection that does not go to the
// proxy, so a client that walks around it cannot pass.
import { execFile, spawn } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { createPki } from '../support/pki.js'
import { startUpstream, type Upstream } from '../support/upstream.js'

const CLI = fileURLToPath(new URL('../../../dist/cli.js', import.meta.url))
const resolve = createRequire(import.meta.url).resolve
const dir = mkdtempSync(join(tmpdir(), 'eg-run-clients-'))
const OPENAI_KEY = 'sk-proj-real-0a1b2c3d4e5f'
const ANTHROPIC_KEY = 'sk-ant-real-6a7b8c9d0e1f'

// Any TCP connection from the child that is not to the proxy named in HTTPS_PROXY is refused, and
// said on stderr: a client that ignores the proxy fails the test instead of passing unseen.
// (The CLI process itself reads the same NODE_OPTIONS; it has no HTTPS_PROXY, and is not watched.)
const TRIPWIRE = `
const net = require('node:net')
const proxy = process.env.HTTPS_PROXY ? new URL(process.env.HTTPS_PROXY) : undefined
if (proxy !== undefined) {
const connect = net.Socket.prototype.connect
net.Socket.prototype.connect = function (...args) {
  const options = typeof args[0] === 'object' && args[0] !== null ? (Array.isArray(args[0]) ? args[0][0] : args[0]) : { port: args[0], host: args[1] }
  const host = options.host ?? 'localhost'
  if (options.path === undefined && !((host === '127.0.0.1' || host === 'localhost') && String(options.port) === proxy.port)) {
    process.stderr.write('TRIPWIRE: direct connection to ' + host + ':' + options.port + '\\n')
    process.exit(99)
  }
  return connect.apply(this, args)
}
}
`

/** The environment of every `run`: the real keys, and the tripwire in the user's own NODE_OPTIONS. */
const CHILD_ENV: NodeJS.ProcessEnv = {
  PATH: process.env['PATH'] ?? '',
  HOME: dir,
  EGRESS_GUARD_CONFIG_DIR: join(dir, 'config'),
  OPENAI_API_KEY: OPENAI_KEY,
  ANTHROPIC_API_KEY: ANTHROPIC_KEY,
  NODE_OPTIONS: `--require ${join(dir, 'tripwire.cjs')}`
}

const run = (command: ReadonlyArray<string>, extraArgs: ReadonlyArray<string>): Promise<{ code: number; stdout: string; stderr: string }> =>
  new Promise((done) => {
    execFile(
      process.execPath,
      [CLI, 'run', ...extraArgs, '--', ...command],
      {
        env: CHILD_ENV,
        timeout: 60_000
      },
      (error, stdout, stderr) => done({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stdout, stderr })
    )
  })

describe('egress-guard run with real Node clients, on the bundled catalog', () => {
  let openai: Upstream
  let anthropic: Upstream
  let args: Array<string> = []
  beforeAll(async () => {
    const pki = createPki()
    openai = await startUpstream('openai', pki.leaf(['api.openai.com']))
    anthropic = await startUpstream('anthropic', pki.leaf(['api.anthropic.com']))
    writeFileSync(join(dir, 'upstream-ca.pem'), pki.caPem)
    writeFileSync(join(dir, 'tripwire.cjs'), TRIPWIRE)
    args = ['--mode', 'connected_deny', '--upstream-ca', join(dir, 'upstream-ca.pem'), '--connect-to', `api.openai.com:443:127.0.0.1:${openai.port}`, '--connect-to', `api.anthropic.com:443:127.0.0.1:${anthropic.port}`]
  })
  afterAll(async () => {
    await openai.close()
    await anthropic.close()
  })

  const script = (name: string, body: string): string => {
    const path = join(dir, name)
    writeFileSync(path, `(async () => {\n${body}\n})().catch((error) => { console.error('FAILED', error && error.message); process.exit(1) })\n`)
    return path
  }

  it('the openai SDK goes through the proxy, which swaps the placeholder for the key', async () => {
    const path = script('openai.cjs', `
      const OpenAI = require(${JSON.stringify(resolve('openai'))})
      const client = new OpenAI.OpenAI({ maxRetries: 0 })
      const answer = await client.chat.completions.create({ model: 'gpt-x', messages: [{ role: 'user', content: 'hi' }] })
      console.log(JSON.stringify(answer))`)
    const before = openai.received.length
    const result = await run([process.execPath, path], args)
    expect(result.stderr).not.toContain('TRIPWIRE')
    expect(result.code).toBe(0)
    expect(JSON.parse(result.stdout)).toEqual({ upstream: 'openai', path: '/v1/chat/completions' })
    expect(openai.received).toHaveLength(before + 1)
    expect(openai.received.at(-1)?.headers.authorization).toBe(`Bearer ${OPENAI_KEY}`)
  })

  it('the @anthropic-ai/sdk goes through the proxy, and its key reaches the upstream only as injected', async () => {
    const path = script('anthropic.cjs', `
      const Anthropic = require(${JSON.stringify(resolve('@anthropic-ai/sdk'))})
      const client = new (Anthropic.default ?? Anthropic.Anthropic)({ maxRetries: 0 })
      const answer = await client.messages.create({ model: 'claude-x', max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] })
      console.log(JSON.stringify(answer))`)
    const before = anthropic.received.length
    const result = await run([process.execPath, path], args)
    expect(result.stderr).not.toContain('TRIPWIRE')
    expect(result.code).toBe(0)
    expect(JSON.parse(result.stdout)).toEqual({ upstream: 'anthropic', path: '/v1/messages' })
    expect(anthropic.received).toHaveLength(before + 1)
    // 1.x sends the key as `Authorization: Bearer`, 0.x as `x-api-key`: both carry the real key.
    const seen = anthropic.received.at(-1)?.headers
    expect(seen?.['x-api-key']).toBe(ANTHROPIC_KEY)
    expect(seen?.authorization).toBe(`Bearer ${ANTHROPIC_KEY}`)
    expect(JSON.stringify(seen)).not.toContain('egress-guard-')
  })

  it.each([
    ['global fetch', `const r = await fetch('https://api.openai.com/v1/models'); console.log(r.status)`],
    ['https.request', `const status = await new Promise((ok, no) => require('node:https').get('https://api.openai.com/v1/models', (r) => { r.resume(); ok(r.statusCode) }).on('error', no)); console.log(status)`]
  ])('Node’s %s goes through the proxy too', async (name, body) => {
    const path = script(`${name.replace(/\W/g, '')}.cjs`, body)
    const before = openai.received.length
    const result = await run([process.execPath, path], args)
    expect(result.stderr).not.toContain('TRIPWIRE')
    expect(result).toMatchObject({ code: 0, stdout: '200\n' })
    expect(openai.received.at(-1)?.headers.authorization).toBe(`Bearer ${OPENAI_KEY}`)
    expect(openai.received).toHaveLength(before + 1)
  })

  // Streaming: the stand-in sends the first event and holds the stream open until the child has
  // printed it; a proxy that buffered the response would never let it print, and the test times out.
  it.each([
    ['openai', `
      const OpenAI = require(${JSON.stringify(resolve('openai'))})
      const stream = await new OpenAI.OpenAI({ maxRetries: 0 }).chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'hi' }], stream: true })
      for await (const chunk of stream) console.log('event', chunk.choices[0].delta.content)`],
    ['@anthropic-ai/sdk', `
      const Anthropic = require(${JSON.stringify(resolve('@anthropic-ai/sdk'))})
      const stream = await new (Anthropic.default ?? Anthropic.Anthropic)({ maxRetries: 0 }).messages.create({ model: 'm', max_tokens: 8, messages: [{ role: 'user', content: 'hi' }], stream: true })
      for await (const event of stream) console.log('event', event.type)`]
  ])('the %s SDK streams: its first event arrives before the stream ends', async (name, body) => {
    const path = script(`stream-${name.replace(/\W/g, '')}.cjs`, body)
    const upstream = name === 'openai' ? openai : anthropic
    const child = spawn(process.execPath, [CLI, 'run', ...args, '--', process.execPath, path], { env: CHILD_ENV })
    let stdout = ''
    let stderr = ''
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    await new Promise<void>((resolve) =>
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString()
        if (stdout.includes('event')) resolve()
      })
    )
    expect(stdout).toMatch(/^event (first|message_start)\n$/) // the first event, while the stream is held open
    upstream.releaseStreams()
    const code = await new Promise((resolve) => child.on('exit', resolve))
    expect(stderr).not.toContain('TRIPWIRE')
    expect(code).toBe(0)
    expect(stdout).toMatch(/^event (first\n$|message_start\nevent message_stop\n$)/)
  })

  // Python's clients read the proxy (with its token) and the CA bundle from the variables run sets.
  // Only the proxy reaches the stand-in (through --connect-to), so an answer proves the way it took.
  it.each([
    ['requests', "import requests; r = requests.get('https://api.openai.com/v1/models', timeout=20); print(r.status_code)"],
    ['httpx', "import httpx; r = httpx.get('https://api.openai.com/v1/models', timeout=20); print(r.status_code)"],
    ['urllib', "import urllib.request; print(urllib.request.urlopen('https://api.openai.com/v1/models', timeout=20).status)"]
  ])('Python %s goes through the proxy, which injects the key', async (_, code) => {
    const before = openai.received.length
    const result = await run(['/usr/bin/python3', '-c', code], args)
    expect(result).toMatchObject({ code: 0, stdout: '200\n' })
    expect(openai.received).toHaveLength(before + 1)
    expect(openai.received.at(-1)?.headers.authorization).toBe(`Bearer ${OPENAI_KEY}`)
  })

  it('keeps the user’s own NODE_OPTIONS (the tripwire here) and denies what the mode denies', async () => {
    const path = script('denied.cjs', `const r = await fetch('https://api.openai.com/v2/other'); console.log(r.status)`)
    const result = await run([process.execPath, path], args)
    expect(result.stderr).not.toContain('TRIPWIRE')
    expect(result).toMatchObject({ code: 0, stdout: '403\n' })
  })

  it('under --isolate, the openai SDK still goes through the proxy, and a direct connection cannot', async () => {
    const path = script('openai-isolated.cjs', `
      const OpenAI = require(${JSON.stringify(resolve('openai'))})
      const client = new OpenAI.OpenAI({ maxRetries: 0 })
      const answer = await client.chat.completions.create({ model: 'gpt-x', messages: [{ role: 'user', content: 'hi' }] })
      console.log(JSON.stringify(answer))`)
    const before = openai.received.length
    const result = await run([process.execPath, path], ['--isolate', ...args])
    expect(result.stderr).not.toContain('TRIPWIRE')
    expect(result.code).toBe(0)
    expect(JSON.parse(result.stdout)).toEqual({ upstream: 'openai', path: '/v1/chat/completions' })
    expect(openai.received).toHaveLength(before + 1)
    expect(openai.received.at(-1)?.headers.authorization).toBe(`Bearer ${OPENAI_KEY}`)
  })

  it('a child that ignores the proxy is caught by the tripwire (the test can fail)', async () => {
    const path = script('direct.cjs', `require('node:net').connect(443, '127.0.0.2')`)
    const result = await run([process.execPath, path], args)
    expect(result.stderr).toContain('TRIPWIRE: direct connection to 127.0.0.2:443')
  })
})
