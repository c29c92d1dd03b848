// Memory under slow peers: a 100 MB download to a client that reads at 20 MB/s, and a 100 MB
// upload to an upstream that reads at 20 MB/s, through the real `egress-guard serve` process. The
// proxy must hold only what its buffers allow, not whatever the slower side has not taken yet: the
// node engine's resident memory may grow by at most 32 MB over its level after a warm-up (one
// download and one upload at full speed, so that compiled code, TLS and parser buffers and the
// allocator's arenas are already in the baseline; without it the first large transfer alone adds
// 20-50 MB here, with or without a slow peer, measured with forced collections too). The
// proxy libraries cannot meet that (they buffer without backpressure; docs/engines.md gives the
// figures); SLOW_PEER_ENGINES=node,http-mitm-proxy,mockttp measures them too, without the bound.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { Readable } from 'node:stream'
import { fileURLToPath } from 'node:url'

import { ProxyAgent } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { createPki } from '../adapters/support/pki.js'

const ENGINES = (process.env['SLOW_PEER_ENGINES'] ?? 'node').split(',')
const BOUND_MB = 32
const TOTAL = 100 * 1024 * 1024
const RATE = 20 * 1024 * 1024
const CHUNK = Buffer.alloc(64 * 1024, 'x')
const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const CLI = join(ROOT, 'dist', 'cli.js')

const rssMb = (pid: number): number => {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:')) ?? '0'
  return Number(/([0-9]+)/.exec(line)?.[1] ?? 0) / 1024
}

/** Reads `stream` to its end at no more than RATE bytes a second; resolves with the bytes read. */
const readSlowly = (stream: Readable): Promise<number> =>
  new Promise((resolve, reject) => {
    const started = performance.now()
    let bytes = 0
    stream.on('data', (chunk: Buffer) => {
      bytes += chunk.length
      const ahead = (bytes / RATE) * 1000 - (performance.now() - started)
      if (ahead > 0) {
        stream.pause()
        setTimeout(() => stream.resume(), ahead)
      }
    })
    stream.once('end', () => resolve(bytes))
    stream.once('error', reject)
  })

/** 100 MB as fast as the reader takes it. */
const hundredMegabytes = (): Readable => {
  let sent = 0
  return new Readable({
    read() {
      if (sent >= TOTAL) this.push(null)
      else {
        sent += CHUNK.length
        this.push(CHUNK)
      }
    }
  })
}

describe.each(ENGINES)('memory under slow peers through serve (%s)', (engine) => {
  const dir = mkdtempSync(join(tmpdir(), 'eg-slow-'))
  let upstream: Server
  let server: ChildProcess
  let agent: ProxyAgent
  let uploaded = 0

  beforeAll(async () => {
    const pki = createPki()
    const leaf = pki.leaf(['api.alpha.test'])
    upstream = createServer({ key: leaf.key, cert: leaf.cert }, (request, response) => {
      if (request.url === '/download') {
        response.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(TOTAL) })
        hundredMegabytes().pipe(response)
        return
      }
      // `/upload` is read at 20 MB/s; anything else (the warm-up) as fast as it comes.
      const read = request.url === '/upload' ? readSlowly(request) : request.toArray().then((chunks: Array<Buffer>) => chunks.reduce((n, c) => n + c.length, 0))
      read.then((bytes) => {
        uploaded = bytes
        response.end(String(bytes))
      }, () => response.destroy())
    })
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve))
    const port = (upstream.address() as AddressInfo).port
    writeFileSync(join(dir, 'upstream-ca.pem'), pki.caPem)
    writeFileSync(join(dir, 'policy.yaml'), `mode: connected_deny\nproviders:\n  - { name: alpha, apiUrl: "https://api.alpha.test/" }\nconnections:\n  - { provider: alpha, name: default, credentials: { headers: { Authorization: "Bearer \${env:ALPHA_KEY}" } } }\n`)
    server = spawn(
      process.execPath,
      [CLI, 'serve', '--policy', join(dir, 'policy.yaml'), '--engine', engine, '--port', '0', '--json', '--config-dir', join(dir, 'config'), '--upstream-ca', join(dir, 'upstream-ca.pem'), '--connect-to', `api.alpha.test:443:127.0.0.1:${port}`],
      { stdio: ['ignore', 'pipe', 'inherit'], env: { PATH: process.env['PATH'] ?? '', HOME: dir, ALPHA_KEY: 'sk-slow-peers', NODE_OPTIONS: process.env['EG_NODE_OPTIONS'] ?? '' } }
    )
    const listening = await new Promise<{ proxy: string; caCert: string }>((resolve, reject) => {
      createInterface({ input: server.stdout! }).once('line', (line) => resolve(JSON.parse(line) as { proxy: string; caCert: string }))
      server.once('exit', (code) => reject(new Error(`serve exited with ${code}`)))
    })
    agent = new ProxyAgent({ uri: listening.proxy, requestTls: { ca: readFileSync(listening.caCert, 'utf8') } })
    // Warm-up, before the baseline is taken: the host's leaf, the upstream pool, and the streaming
    // code paths (compiled, their buffers allocated) with one download and one upload at full speed.
    await (await agent.request({ origin: 'https://api.alpha.test', path: '/download', method: 'GET' })).body.dump({ limit: TOTAL })
    await (await agent.request({ origin: 'https://api.alpha.test', path: '/warm-up', method: 'POST', body: hundredMegabytes() })).body.text()
  }, 60_000)

  afterAll(async () => {
    await agent.close()
    server.kill('SIGTERM')
    await new Promise((resolve) => server.once('exit', resolve))
    await new Promise((resolve) => upstream.close(resolve))
    rmSync(dir, { recursive: true, force: true })
  })

  /** Runs `transfer` while sampling the proxy's resident memory; the growth over the level before it, in MB. */
  const growthDuring = async (transfer: () => Promise<void>): Promise<number> => {
    const pid = server.pid ?? 0
    const before = rssMb(pid)
    let peak = before
    const sampler = setInterval(() => (peak = Math.max(peak, rssMb(pid))), 50)
    try {
      await transfer()
    } finally {
      clearInterval(sampler)
    }
    return Math.round((peak - before) * 10) / 10
  }

  it('a 100 MB download to a client reading at 20 MB/s', async () => {
    let read = 0
    const growth = await growthDuring(async () => {
      const response = await agent.request({ origin: 'https://api.alpha.test', path: '/download', method: 'GET' })
      read = await readSlowly(response.body)
    })
    process.stdout.write(`${JSON.stringify({ engine, case: 'slow client download', rss_growth_mb: growth })}\n`)
    expect(read).toBe(TOTAL)
    if (engine === 'node') expect(growth).toBeLessThanOrEqual(BOUND_MB)
  }, 60_000)

  it('a 100 MB upload to an upstream reading at 20 MB/s', async () => {
    let answer = ''
    const growth = await growthDuring(async () => {
      const response = await agent.request({ origin: 'https://api.alpha.test', path: '/upload', method: 'POST', body: hundredMegabytes() })
      answer = await response.body.text()
    })
    process.stdout.write(`${JSON.stringify({ engine, case: 'slow upstream upload', rss_growth_mb: growth })}\n`)
    expect(answer).toBe(String(TOTAL))
    expect(uploaded).toBe(TOTAL)
    if (engine === 'node') expect(growth).toBeLessThanOrEqual(BOUND_MB)
  }, 60_000)
})
