import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtempSync, readFileSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough, Writable } from 'node:stream'

import { describe, expect, it } from 'vitest'

import { fanOut, httpSink, jsonLinesSink } from '../../../adapters/guard/auditSinks.js'
import { decisionLogSink } from '../../../adapters/cli/decisionLog.js'
import type { AuditEntry } from '../../../adapters/ports.js'

const entry = (n: number): AuditEntry => ({
  instance: 'test', time: new Date(0).toISOString(),
  mode: 'connected_deny',
  enforcement: 'enforce',
  client: null,
  policyHash: 'test',
  request: null,
  decisionId: `d${n}`,
  event: 'proxy_deny',
  source: 'external',
  provider: null,
  connection: null,
  metadata: { host: 'h', reason: 'no_match' }
})

describe('JSON-lines sink', () => {
  it('appends one JSON object per line to a file created 0600', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'eg-sink-')), 'audit.jsonl')
    const sink = jsonLinesSink({ path })
    for (let i = 0; i < 3; i++) sink.write(entry(i))
    await sink.close()
    expect(readFileSync(path, 'utf8').trim().split('\n').map((l) => JSON.parse(l).decisionId)).toEqual(['d0', 'd1', 'd2'])
    expect(statSync(path).mode & 0o777).toBe(0o600)
  })

  it('tightens an audit file that already existed to 0600', async () => {
    const { writeFileSync, chmodSync } = await import('node:fs')
    const path = join(mkdtempSync(join(tmpdir(), 'eg-sink-')), 'audit.jsonl')
    writeFileSync(path, '')
    chmodSync(path, 0o644)
    const sink = jsonLinesSink({ path })
    sink.write(entry(1))
    await sink.close()
    expect(statSync(path).mode & 0o777).toBe(0o600)
  })

  it('writes the entries of a burst together, within its batch delay and without a flush', async () => {
    const writes: Array<string> = []
    const stream = new Writable({
      write: (chunk: Buffer, _encoding, done) => {
        writes.push(chunk.toString())
        done()
      }
    })
    const sink = jsonLinesSink({ stream }, { batchMs: 10 })
    for (let i = 0; i < 100; i++) sink.write(entry(i))
    expect(writes).toEqual([])
    await new Promise((resolve) => setTimeout(resolve, 60))
    expect(writes).toHaveLength(1)
    expect((writes[0] ?? '').trim().split('\n').map((l) => JSON.parse(l).decisionId)).toEqual(Array.from({ length: 100 }, (_, i) => `d${i}`))
  })

  it('writes at once on flush, and never holds more than 512 entries back', async () => {
    const writes: Array<number> = []
    const stream = new Writable({
      write: (chunk: Buffer, _encoding, done) => {
        writes.push(chunk.toString().trim().split('\n').length)
        done()
      }
    })
    const sink = jsonLinesSink({ stream }, { batchMs: 60_000 })
    for (let i = 0; i < 1000; i++) sink.write(entry(i))
    expect(writes).toEqual([512])
    await sink.flush()
    expect(writes).toEqual([512, 488])
  })

  it('never blocks: past its bound it drops and counts', async () => {
    // A stream that never finishes a write: every entry stays pending.
    const stuck = new Writable({ write: () => undefined, highWaterMark: 1 })
    const sink = jsonLinesSink({ stream: stuck }, { maxQueue: 5 })
    for (let i = 0; i < 12; i++) sink.write(entry(i))
    expect(sink.dropped()).toBe(7)
  })

  it('counts what a broken stream loses instead of throwing', async () => {
    const stream = new PassThrough()
    const sink = jsonLinesSink({ stream }, { log: () => undefined })
    stream.destroy(new Error('disk gone'))
    await new Promise((resolve) => setImmediate(resolve))
    sink.write(entry(1))
    expect(sink.dropped()).toBe(1)
  })
})

describe('decision log', () => {
  it('writes the lines of a burst in one write, and the rest on close', async () => {
    const written: Array<string> = []
    const sink = decisionLogSink((text) => written.push(text), true, 10)
    sink.write(entry(1))
    sink.write(entry(2))
    await new Promise((resolve) => setTimeout(resolve, 60))
    expect(written.map((t) => t.split('\n').map((l) => JSON.parse(l).decisionId))).toEqual([['d1', 'd2']])
    sink.write(entry(3))
    await sink.close()
    expect(written).toHaveLength(2)
    expect(JSON.parse(written[1] ?? '').decisionId).toBe('d3')
  })
})

describe('HTTP sink', () => {
  it('keeps records queued while the endpoint is down and delivers them after it recovers', async () => {
    const received: Array<string> = []
    let up = false
    const server = http.createServer((request, response) => {
      let body = ''
      request.on('data', (c) => (body += c))
      request.on('end', () => {
        if (!up) {
          response.writeHead(503).end()
          return
        }
        for (const e of JSON.parse(body) as Array<AuditEntry>) received.push(e.decisionId)
        response.writeHead(204).end()
      })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/audit`
    const sink = httpSink({ url, retryMs: 20, maxQueue: 4, log: () => undefined })
    for (let i = 0; i < 6; i++) sink.write(entry(i))
    expect(sink.dropped()).toBe(2)
    expect(sink.queued?.()).toBe(4)
    expect(sink.accepting?.()).toBe(false)
    await new Promise((resolve) => setTimeout(resolve, 60))
    expect(received).toEqual([])
    up = true
    for (let i = 0; i < 50 && received.length < 4; i++) await new Promise((resolve) => setTimeout(resolve, 20))
    expect(received).toEqual(['d0', 'd1', 'd2', 'd3'])
    expect(sink.queued?.()).toBe(0)
    expect(sink.accepting?.()).toBe(true)
    await sink.close()
    await new Promise((resolve) => server.close(resolve))
  })

  it('fans out to every sink and sums their drops', () => {
    const stuck = () => jsonLinesSink({ stream: new Writable({ write: () => undefined, highWaterMark: 1 }) }, { maxQueue: 1 })
    const both = fanOut([stuck(), stuck()])
    both.write(entry(1))
    both.write(entry(2))
    expect(both.dropped()).toBe(2)
  })
})
