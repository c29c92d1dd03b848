// `egress-guard run` through real processes, against a stand-in upstream (support.ts).
import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { describe, expect, it } from 'vitest'

import { createPki } from '../support/pki.js'
import type { Upstream } from '../support/upstream.js'
import { CLI, cliEnv, KEY, useStandIn, workspace } from './support.js'


const space = workspace()
const { dir, policyPath, cli } = space

describe('egress-guard run, with a stand-in upstream', () => {
  let upstream: Upstream
  let common: ReadonlyArray<string> = []
  useStandIn(space, (standIn) => {
    ;({ upstream, common } = standIn)
  })
  const env = cliEnv(space)
  const runDirs = () => readdirSync(tmpdir()).filter((d) => d.startsWith('egress-guard-run-'))

  it('gives the child the proxy, the CA bundle and placeholders, never the key', async () => {
    const script = "console.log(JSON.stringify(Object.fromEntries(['HTTP_PROXY','HTTPS_PROXY','http_proxy','https_proxy','NO_PROXY','no_proxy','SSL_CERT_FILE','REQUESTS_CA_BUNDLE','CURL_CA_BUNDLE','NODE_EXTRA_CA_CERTS','ALPHA_API_KEY','GAMMA_API_KEY','TIE_SECRET'].map((k) => [k, process.env[k]]))))"
    const result = await cli(['run', ...common, '--', process.execPath, '-e', script], env)
    expect(result.code).toBe(0)
    const seen = JSON.parse(result.stdout) as Record<string, string | undefined>
    expect(seen['HTTPS_PROXY']).toMatch(/^http:\/\/run:[A-Za-z0-9_-]{43}@127\.0\.0\.1:\d+$/)
    for (const k of ['HTTP_PROXY', 'http_proxy', 'https_proxy']) expect(seen[k]).toBe(seen['HTTPS_PROXY'])
    expect(seen['NO_PROXY']).toBe('internal.corp,localhost,127.0.0.1,::1')
    expect(seen['no_proxy']).toBe(seen['NO_PROXY'])
    expect(seen['REQUESTS_CA_BUNDLE']).toBe(seen['SSL_CERT_FILE'])
    expect(seen['CURL_CA_BUNDLE']).toBe(seen['SSL_CERT_FILE'])
    expect(seen['NODE_EXTRA_CA_CERTS']).toMatch(/egress-guard-run-[^/]+\/node-extra-ca\.pem$/)
    // Fresh random placeholders (144 bits), one a variable, never the key (docs/spec.md §13).
    expect(seen['ALPHA_API_KEY']).toMatch(/^egress-guard-[A-Za-z0-9_-]{24}$/)
    expect(seen['GAMMA_API_KEY']).toBeUndefined() // gamma is not routed in connected_deny
    expect(seen['TIE_SECRET']).toMatch(/^egress-guard-[A-Za-z0-9_-]{24}$/) // read by a template, no envVar declared
    expect(seen['TIE_SECRET']).not.toBe(seen['ALPHA_API_KEY'])
    const again = JSON.parse((await cli(['run', ...common, '--', process.execPath, '-e', script], env)).stdout) as Record<string, string | undefined>
    expect(again['ALPHA_API_KEY']).toMatch(/^egress-guard-/)
    expect(again['ALPHA_API_KEY']).not.toBe(seen['ALPHA_API_KEY'])
    expect(result.stdout).not.toContain(KEY)
    expect(result.stdout).not.toContain('tie-secret-value')
    expect(existsSync(seen['SSL_CERT_FILE'] ?? '')).toBe(false) // removed after the child exited
  })

  it('keeps the shape of a provider’s keys in its placeholder, for SDKs that check it (the bundled catalog)', async () => {
    const script = "console.log(JSON.stringify([process.env.OPENAI_API_KEY, process.env.ANTHROPIC_API_KEY, process.env.GITHUB_TOKEN]))"
    const result = await cli(['run', '--', process.execPath, '-e', script], { OPENAI_API_KEY: 'sk-proj-real-0123', ANTHROPIC_API_KEY: 'sk-ant-real-0123', GITHUB_TOKEN: 'ghp_real0123', EGRESS_GUARD_CONFIG_DIR: join(dir, 'config') })
    expect(result.code).toBe(0)
    const [openai, anthropic, github] = JSON.parse(result.stdout) as Array<string>
    expect(openai).toMatch(/^sk-egress-guard-[A-Za-z0-9_-]{24}$/)
    expect(anthropic).toMatch(/^sk-ant-egress-guard-[A-Za-z0-9_-]{24}$/)
    expect(github).toMatch(/^egress-guard-[A-Za-z0-9_-]{24}$/)
    expect(result.stdout).not.toContain('real')
  })

  it('keeps the user’s own CAs beside the proxy CA, and names the bundle in every tool’s variable', async () => {
    const corporate = createPki().caPem
    const extra = createPki().caPem
    writeFileSync(join(dir, 'corporate.pem'), corporate)
    writeFileSync(join(dir, 'extra.pem'), extra)
    const script = `const fs = require('fs'); const read = (n) => fs.readFileSync(process.env[n], 'utf8'); console.log(JSON.stringify({ bundle: read('SSL_CERT_FILE'), node: read('NODE_EXTRA_CA_CERTS'), same: ['REQUESTS_CA_BUNDLE','CURL_CA_BUNDLE','GIT_SSL_CAINFO','AWS_CA_BUNDLE','PIP_CERT','npm_config_cafile','DENO_CERT','CARGO_HTTP_CAINFO'].every((n) => process.env[n] === process.env.SSL_CERT_FILE) }))`
    const result = await cli(['run', ...common, '--', process.execPath, '-e', script], { ...env, SSL_CERT_FILE: join(dir, 'corporate.pem'), NODE_EXTRA_CA_CERTS: join(dir, 'extra.pem') })
    expect(result.code).toBe(0)
    const seen = JSON.parse(result.stdout) as { bundle: string; node: string; same: boolean }
    const proxyCa = readFileSync(join(dir, 'config', 'certs', 'ca.pem'), 'utf8')
    expect(seen.same).toBe(true)
    expect(seen.bundle).toContain(corporate.trim())
    expect(seen.bundle).toContain(proxyCa.trim())
    expect(seen.bundle.split('BEGIN CERTIFICATE').length).toBeGreaterThan(50) // the system's roots too
    expect(seen.node).toContain(extra.trim())
    expect(seen.node).toContain(proxyCa.trim())
  })

  it.each(['http-mitm-proxy', 'mockttp'])('sends the child’s traffic through the proxy (--engine %s), which injects the key', async (engine) => {
    const before = upstream.received.length
    const result = await cli(['run', ...common, '--engine', engine, '--', 'curl', '-sS', 'https://api.alpha.test/v1/models'], env)
    expect(result.code).toBe(0)
    expect(upstream.received).toHaveLength(before + 1)
    expect(upstream.received.at(-1)?.headers.authorization).toBe(`Bearer ${KEY}`)
  })

  it('keeps its proxy private: a connection without the child’s token gets 407', async () => {
    const script = "const u = new URL(process.env.HTTPS_PROXY); const s = require('net').connect(Number(u.port), u.hostname, () => s.write('CONNECT api.alpha.test:443 HTTP/1.1\\r\\nHost: api.alpha.test:443\\r\\n\\r\\n')); s.on('data', (d) => { console.log(d.toString().split('\\r\\n')[0]); s.destroy() })"
    const result = await cli(['run', ...common, '--', process.execPath, '-e', script], env)
    expect(result).toMatchObject({ code: 0, stdout: 'HTTP/1.1 407 Proxy Authentication Required\n' })
  })

  describe('--isolate', () => {
    it('gives the child no way out but the proxy: the proxy works, a direct connection and DNS do not', async () => {
      const before = upstream.received.length
      // Inside: curl through the proxy; a raw connection to the upstream (listening on this
      // machine's loopback, so reachable from outside the namespace); a DNS query.
      const script = [
        'curl -sS -o /dev/null -w "proxy:%{http_code}\\n" https://api.alpha.test/v1/models',
        `node -e "require('net').connect(${upstream.port}, '127.0.0.1').on('connect', () => { console.log('direct:connected'); process.exit() }).on('error', (e) => console.log('direct:' + e.code))"`,
        `node -e "require('dns').promises.resolve4('egress-guard.invalid').then(() => console.log('dns:answered'), (e) => console.log('dns:' + e.code))"`
      ].join('; ')
      const result = await cli(['run', '--isolate', ...common, '--', 'sh', '-c', script], env)
      expect(result.stderr).toBe('')
      expect(result.code).toBe(0)
      const lines = result.stdout.trim().split('\n')
      expect(lines[0]).toBe('proxy:200')
      expect(lines[1]).toMatch(/^direct:(ECONNREFUSED|ENETUNREACH)$/)
      expect(lines[2]).not.toBe('dns:answered')
      expect(upstream.received).toHaveLength(before + 1)
      expect(upstream.received.at(-1)?.headers.authorization).toBe(`Bearer ${KEY}`)
    })

    it('exits with the child’s code', async () => {
      expect((await cli(['run', '--isolate', ...common, '--', 'sh', '-c', 'exit 7'], env)).code).toBe(7)
    })

    it('refuses to start, and runs nothing, where no namespace can be made', async () => {
      const fake = join(dir, 'no-userns')
      mkdirSync(fake, { recursive: true })
      writeFileSync(join(fake, 'unshare'), '#!/bin/sh\necho "unshare: unshare failed: Operation not permitted" >&2\nexit 1\n', { mode: 0o755 })
      const marker = join(dir, 'isolate-marker')
      const result = await cli(['run', '--isolate', ...common, '--', 'touch', marker], { ...env, PATH: `${fake}:${process.env['PATH'] ?? ''}` })
      expect(result.code).toBe(1)
      expect(result.stderr).toContain('error: --isolate: cannot make a user and network namespace here (unshare: unshare failed: Operation not permitted)')
      expect(existsSync(marker)).toBe(false)
    })
  })

  it('exits with the child’s exit code and passes its output through', async () => {
    const result = await cli(['run', ...common, '--', process.execPath, '-e', 'process.stdout.write("out"); process.stderr.write("err"); process.exit(3)'], env)
    expect(result).toEqual({ code: 3, stdout: 'out', stderr: 'err' })
  })

  it('forwards signals to the child', async () => {
    const child = spawn(process.execPath, [CLI, 'run', ...common, '--', process.execPath, '-e', "process.on('SIGTERM', () => process.exit(42)); console.log('ready'); setInterval(() => {}, 1000)"], {
      env: { PATH: process.env['PATH'] ?? '', HOME: dir, ...env }
    })
    await new Promise<void>((resolve) => child.stdout.on('data', (d: Buffer) => d.toString().includes('ready') && resolve()))
    child.kill('SIGTERM')
    expect(await new Promise((resolve) => child.on('exit', resolve))).toBe(42)
  })

  it('cleans up and exits 127 when the command cannot start', async () => {
    const before = runDirs()
    const result = await cli(['run', ...common, '--', '/nonexistent/agent'], env)
    expect(result.code).toBe(127)
    expect(result.stderr).toContain('error: cannot run `/nonexistent/agent`: command not found')
    expect(runDirs()).toEqual(before)
  })

  it.each([
    ['an --upstream-ca file without a certificate', (marker: string) => ['--upstream-ca', policyPath, '--', 'touch', marker], 'holds no PEM certificate; give a file with -----BEGIN CERTIFICATE----- blocks'],
    ['an --audit file in a missing directory', (marker: string) => ['--audit', join(dir, 'missing', 'audit.jsonl'), '--', 'touch', marker], 'does not exist; create it or choose another path']
  ])('refuses %s before the child starts, naming the option and the fix', async (_, args, message) => {
    const marker = join(dir, `marker-${Math.random().toString(36).slice(2)}`)
    const result = await cli(['run', '--policy', policyPath, ...args(marker)], env)
    expect(result.code).toBe(1)
    expect(result.stderr).toContain(message)
    expect(existsSync(marker)).toBe(false)
  })

  it('says to put the command after `--` when its own options come first', async () => {
    const result = await cli(['run', 'curl', '-s', 'https://api.alpha.test/v1/models'], env)
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('put the command after `--`')
  })

  it('exits 2 when no command follows `--`', async () => {
    expect((await cli(['run', ...common], env)).code).toBe(2)
  })

  it('refuses an unknown engine, naming the ones it has', async () => {
    const result = await cli(['serve', ...common, '--engine', 'squid'], env)
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('--engine `squid`: expected one of node, http-mitm-proxy, mockttp')
  })
})
