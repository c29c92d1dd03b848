// HTTP/2 through the node engine, end to end: a real gRPC client (@grpc/grpc-js, in a process of
// its own with `grpc_proxy` set, as an agent would run it) calls a real gRPC server over TLS behind
// the proxy. The client speaks HTTP/2 to the proxy, the proxy HTTP/2 to the upstream; the
// credential is injected as gRPC metadata, the server's trailers (grpc-status) reach the client,
// and a method the policy does not route is refused without reaching the server.
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

import * as grpc from '@grpc/grpc-js'
import * as E from 'fp-ts/lib/Either.js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { parsePolicyText } from '../../../adapters/config/PolicyFile.js'
import { createGuard, type Guard } from '../../../adapters/guard/createGuard.js'
import { startNodeProxy } from '../../../adapters/node/nodeProxy.js'
import type { RunningProxy } from '../../../adapters/ports.js'
import { createPki } from '../support/pki.js'

const KEY = 'sk-grpc-5e6f7a8b'
const ROOT = fileURLToPath(new URL('../../..', import.meta.url))
const POLICY = `
mode: connected_deny
providers:
  - { name: greeter, apiUrl: "https://api.grpc.test/demo.Greeter/SayHello" }
connections:
  - { provider: greeter, name: default, credentials: { headers: { authorization: "Bearer \${env:GRPC_KEY}" } } }
`

/** A gRPC client in a child process: calls `method` on api.grpc.test through the proxy; prints the reply or the error. */
const CLIENT = `
const grpc = require('@grpc/grpc-js')
const json = { serialize: (v) => Buffer.from(JSON.stringify(v)), deserialize: (b) => JSON.parse(b.toString()) }
const method = process.env.EG_METHOD
const Client = grpc.makeGenericClientConstructor({ call: { path: method, requestStream: false, responseStream: false, requestSerialize: json.serialize, requestDeserialize: json.deserialize, responseSerialize: json.serialize, responseDeserialize: json.deserialize } }, 'Demo')
const client = new Client('api.grpc.test:443', grpc.credentials.createSsl(Buffer.from(process.env.EG_CA)))
client.call({ name: 'agent' }, new grpc.Metadata(), { deadline: Date.now() + 10000 }, (error, reply) => {
  console.log(JSON.stringify(error ? { code: error.code, details: error.details } : { reply }))
  client.close()
})
`

const callThroughProxy = (proxy: RunningProxy, dir: string, method: string): Promise<{ reply?: unknown; code?: number; details?: string }> =>
  new Promise((resolve, reject) => {
    const script = join(dir, 'client.cjs')
    writeFileSync(script, CLIENT)
    execFile(
      process.execPath,
      [script],
      { cwd: ROOT, env: { PATH: process.env['PATH'] ?? '', NODE_PATH: join(ROOT, 'node_modules'), grpc_proxy: proxy.url, EG_CA: proxy.caCertPem, EG_METHOD: method }, timeout: 20_000 },
      (error, stdout, stderr) => (error === null ? resolve(JSON.parse(stdout) as { reply?: unknown }) : reject(new Error(`${error.message}\n${stderr}`)))
    )
  })

describe('node engine: HTTP/2 and gRPC end to end', () => {
  const dir = mkdtempSync(join(tmpdir(), 'eg-grpc-'))
  const seen: Array<{ method: string; authorization: ReadonlyArray<grpc.MetadataValue> }> = []
  let server: grpc.Server
  let guard: Guard
  let proxy: RunningProxy

  beforeAll(async () => {
    const pki = createPki()
    const leaf = pki.leaf(['api.grpc.test'])
    const json = { serialize: (v: unknown) => Buffer.from(JSON.stringify(v)), deserialize: (b: Buffer) => JSON.parse(b.toString()) as { name: string } }
    server = new grpc.Server()
    for (const method of ['/demo.Greeter/SayHello', '/demo.Admin/Drop']) {
      server.register(
        method,
        (call: grpc.ServerUnaryCall<{ name: string }, unknown>, callback: grpc.sendUnaryData<unknown>) => {
          seen.push({ method, authorization: call.metadata.get('authorization') })
          callback(null, { message: `hello ${call.request.name}`, protocol: call.getPeer() === '' ? 'none' : 'h2' })
        },
        json.serialize,
        json.deserialize,
        'unary'
      )
    }
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createSsl(null, [{ private_key: Buffer.from(leaf.key), cert_chain: Buffer.from(leaf.cert) }]), (error, bound) =>
        error === null ? resolve(bound) : reject(error)
      )
    )
    const policy = parsePolicyText(POLICY, 'grpc policy')
    if (E.isLeft(policy)) throw new Error(policy.left.messages.join('\n'))
    guard = createGuard({ policy: policy.right, env: { GRPC_KEY: KEY }, log: () => undefined })
    proxy = await startNodeProxy({ guard, configDir: join(dir, 'config'), upstreamCa: [pki.caPem], connectTo: [{ host: 'api.grpc.test', port: 443, toHost: '127.0.0.1', toPort: port }], log: () => undefined })
  }, 30_000)

  afterAll(async () => {
    await proxy.close()
    await guard.close()
    server.forceShutdown()
    rmSync(dir, { recursive: true, force: true })
  })

  it('carries a gRPC call over HTTP/2 both ways, with the credential injected as metadata', async () => {
    const answer = await callThroughProxy(proxy, dir, '/demo.Greeter/SayHello')
    expect(answer).toEqual({ reply: { message: 'hello agent', protocol: 'h2' } })
    expect(seen.at(-1)).toEqual({ method: '/demo.Greeter/SayHello', authorization: [`Bearer ${KEY}`] })
  })

  it('refuses a gRPC method the policy does not route, before it reaches the server', async () => {
    const before = seen.length
    const answer = await callThroughProxy(proxy, dir, '/demo.Admin/Drop')
    // gRPC maps HTTP 403 to PERMISSION_DENIED (7).
    expect(answer.code).toBe(grpc.status.PERMISSION_DENIED)
    expect(seen).toHaveLength(before)
  })
})
