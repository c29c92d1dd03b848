// Credential sources that never answer must not starve the process. A `${file:…}` or `file:`
// reference on a FIFO with no writer used to hold one of the four threads of Node's I/O pool for
// good at every timed-out resolution; after four, no new host got a certificate and audit writes
// stopped. Here four FIFOs are resolved (twice each, past their timeout) on a real proxy, and then
// a host the proxy has never seen must still get its certificate and its credential. A helper that
// ignores SIGTERM, and what it started, are killed after the grace period.
import { execFileSync } from 'node:child_process'
import { closeSync, constants, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import * as E from 'fp-ts/lib/Either.js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { parsePolicyText } from '../../adapters/config/PolicyFile.js'
import { createGuard, type Guard } from '../../adapters/guard/createGuard.js'
import { HELPER_KILL_GRACE_MS, resolveReference } from '../../adapters/guard/credentialSources.js'
import type { RunningProxy } from '../../adapters/ports.js'
import { curl } from '../adapters/support/clients.js'
import { ADAPTERS, startProxy } from '../adapters/support/harness.js'
import { createPki } from '../adapters/support/pki.js'
import { startUpstream, type Upstream } from '../adapters/support/upstream.js'

const SECRET = 'sk-stuck-1c2d3e4f'
const FIFOS = ['one', 'two', 'three', 'four'] as const

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

const waitUntil = async (what: string, check: () => boolean): Promise<void> => {
  for (let i = 0; i < 200; i++) {
    if (check()) return
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error(`gave up waiting: ${what}`)
}

describe.each(ADAPTERS)('credential sources that never answer, on %s', (adapter) => {
  const dir = mkdtempSync(join(tmpdir(), 'eg-stuck-'))
  const pki = createPki()
  let upstream: Upstream
  let guard: Guard
  let proxy: RunningProxy

  beforeAll(async () => {
    for (const name of FIFOS) execFileSync('mkfifo', [join(dir, name)])
    const policy = `
mode: connected_deny
providers:
${FIFOS.map((name) => `  - { name: ${name}, apiUrl: "https://api.${name}.test/" }`).join('\n')}
  - { name: fresh, apiUrl: "https://api.fresh.test/" }
connections:
${FIFOS.map((name, i) =>
  i % 2 === 0
    ? `  - { provider: ${name}, name: default, credentials: { headers: { authorization: "Bearer \${file:${join(dir, name)}}" } } }`
    : `  - { provider: ${name}, name: default, credentials: { file: "${join(dir, name)}" } }`
).join('\n')}
  - { provider: fresh, name: default, credentials: { headers: { authorization: "Bearer \${env:EG_SECRET}" } } }
`
    const loaded = parsePolicyText(policy, 'stuck policy')
    if (E.isLeft(loaded)) throw new Error(loaded.left.messages.join('\n'))
    const hosts = [...FIFOS, 'fresh'].map((name) => `api.${name}.test`)
    upstream = await startUpstream('stuck', pki.leaf(hosts))
    guard = createGuard({ policy: loaded.right, env: { EG_SECRET: SECRET }, credentialTimeoutMs: 200, log: () => undefined })
    proxy = await startProxy(adapter, {
      guard,
      configDir: join(dir, 'config'),
      upstreamCa: [pki.caPem],
      connectTo: hosts.map((host) => ({ host, port: 443, toHost: '127.0.0.1', toPort: upstream.port })),
      log: () => undefined
    })
  })
  afterAll(async () => {
    // Whatever is still blocked on a FIFO (the code before the fix) is let go: a writer opens it.
    for (const name of FIFOS) {
      try {
        closeSync(openSync(join(dir, name), constants.O_WRONLY | constants.O_NONBLOCK))
      } catch {
        // No reader left on it.
      }
    }
    await proxy.close()
    await guard.close()
    await upstream.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('a FIFO is refused as no regular file, and a new host still gets its certificate and credential', async () => {
    // Two rounds over four FIFOs: eight timed-out resolutions, twice the I/O pool's threads.
    for (let round = 0; round < 2; round++) {
      const answers = await Promise.all(FIFOS.map((name) => curl(proxy.url, proxy.caCertPath, `https://api.${name}.test/x`)))
      for (const answer of answers) expect(answer.status).toBe(403)
    }
    expect(upstream.received).toHaveLength(0)
    const fresh = await curl(proxy.url, proxy.caCertPath, 'https://api.fresh.test/x')
    expect(fresh.status).toBe(200)
    expect(upstream.received.at(-1)?.headers.authorization).toBe(`Bearer ${SECRET}`)
  })
})

describe('reading credential files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'eg-files-'))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))
  const signal = new AbortController().signal

  it.each([
    ['a FIFO with no writer', () => {
      execFileSync('mkfifo', [join(dir, 'fifo')])
      return join(dir, 'fifo')
    }],
    ['a character device', () => '/dev/zero'],
    ['a directory', () => dir]
  ])('refuses %s at once, naming it and what to do', async (_, make) => {
    const path = make()
    const outcome = await resolveReference({ file: path }, signal)
    expect(outcome).toEqual({ _tag: 'Unavailable', error: expect.stringContaining(`credential file \`${path}\``) })
    expect(outcome._tag === 'Unavailable' && outcome.error).toMatch(/not a regular file|cannot be read \(EISDIR\)/)
    const template = await resolveReference({ headers: { authorization: `Bearer \${file:${path}}` } }, signal, {})
    expect(template._tag).toBe('Unavailable')
  })

  it('refuses a file over 64 KiB without quoting it', async () => {
    const path = join(dir, 'big')
    execFileSync('sh', ['-c', `head -c 70000 /dev/zero | tr '\\0' 'k' > ${path}`])
    expect(await resolveReference({ file: path }, signal)).toEqual({ _tag: 'Unavailable', error: `credential file \`${path}\` is larger than 65536 bytes` })
  })
})

describe('a credential helper that ignores SIGTERM', () => {
  const dir = mkdtempSync(join(tmpdir(), 'eg-helper-'))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it(`is killed with what it started ${HELPER_KILL_GRACE_MS} ms after its resolution is abandoned`, async () => {
    const pids = join(dir, 'pids')
    // The helper starts a child of its own, records both pids, ignores SIGTERM and never answers.
    const script = `process.on('SIGTERM', () => {}); const c = require('child_process').spawn('sleep', ['60'], { stdio: 'ignore' }); require('fs').writeFileSync(${JSON.stringify(pids)}, process.pid + ' ' + c.pid); setInterval(() => {}, 1000)`
    const controller = new AbortController()
    const outcome = resolveReference({ exec: ['node', '-e', script] }, controller.signal, { PATH: process.env['PATH'] ?? '' })
    await waitUntil('the helper to start', () => {
      try {
        return readFileSync(pids, 'utf8').includes(' ')
      } catch {
        return false
      }
    })
    const [helper = 0, child = 0] = readFileSync(pids, 'utf8').split(' ').map(Number)
    controller.abort()
    expect(await outcome).toEqual({ _tag: 'Unavailable', error: 'credential helper `node` was stopped' })
    await waitUntil('the helper and its child to be killed', () => !alive(helper) && !alive(child))
  })
})
