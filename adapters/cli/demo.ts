import { execFile } from 'node:child_process'
import http from 'node:http'
import https from 'node:https'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { rm, writeFile } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createSecureContext, type SecureContext } from 'node:tls'

import { fetch, ProxyAgent } from 'undici'

import { PROXY_MODES, type ProxyMode } from '../../core/index.js'
import { createGuard } from '../guard/createGuard.js'
import { loadOrCreateCa } from '../interception/certificates.js'
import { startNodeProxy } from '../node/nodeProxy.js'
import type { AuditEntry } from '../ports.js'
import { catalogPolicy } from './catalog.js'
import { decisionLine } from './decisionLog.js'
import type { Io } from './io.js'

// The offline demo: a local HTTPS stand-in answers for the providers' API hosts, the bundled
// catalog is the policy, and curl and Node's fetch make the same requests in each of the four
// modes. Only OPENAI_API_KEY is set (to a demo value), so Anthropic is configured but unconnected.

const HOSTS = ['api.openai.com', 'api.anthropic.com', 'example.com']
const DEMO_KEY = 'sk-demo-not-a-real-key'

interface Row {
  readonly mode: ProxyMode
  readonly client: string
  readonly request: string
  readonly decision: string
  readonly upstream: string
}

const REQUESTS: ReadonlyArray<{ readonly client: 'curl' | 'fetch'; readonly url: string }> = [
  { client: 'curl', url: 'https://api.openai.com/v1/models' },
  { client: 'fetch', url: 'https://api.openai.com/v1/chat/completions' },
  { client: 'curl', url: 'https://api.openai.com/v2/internal' },
  { client: 'fetch', url: 'https://api.anthropic.com/v1/messages' },
  { client: 'curl', url: 'http://api.openai.com/v1/models' },
  { client: 'curl', url: 'https://example.com/' }
]

const curl = (proxy: string, bundle: string, url: string): Promise<string> =>
  new Promise((resolve) => {
    execFile('curl', ['-sS', '--max-time', '10', '--proxy', proxy, '--cacert', bundle, '-o', '/dev/null', '-w', '%{http_code}', url], (error, stdout) =>
      resolve(error === null ? stdout : error.code === 'ENOENT' ? 'curl is not installed' : 'connection closed')
    )
  })

const nodeFetch = async (proxy: string, caPem: string, url: string): Promise<string> => {
  const dispatcher = new ProxyAgent({ uri: proxy, requestTls: { ca: caPem } })
  try {
    return String((await fetch(url, { dispatcher })).status)
  } catch {
    return 'connection closed'
  } finally {
    await dispatcher.close()
  }
}

/** `egress-guard demo`: everything offline, on loopback, in one run. */
export const demo = async (io: Io): Promise<number> => {
  // Interrupted, it still removes its directory (the stand-in's and the proxy's CA keys). The
  // handlers come first, and the directory is made synchronously: no signal falls in between.
  let dir = ''
  const interrupted = () => {
    // File operations already under way (the CAs being made) can land while it removes, and
    // recreate the directory: it waits for them, blocking, until the directory stays gone.
    const pause = new Int32Array(new SharedArrayBuffer(4))
    for (let tries = 0; dir !== '' && tries < 20 && existsSync(dir); tries++) {
      try {
        rmSync(dir, { recursive: true, force: true })
      } catch {
        // not empty yet: a write landed meanwhile
      }
      Atomics.wait(pause, 0, 0, 25)
    }
    process.exit(130)
  }
  process.once('SIGINT', interrupted).once('SIGTERM', interrupted)
  dir = mkdtempSync(join(tmpdir(), 'egress-guard-demo-'))
  const received: Array<string> = []
  const standInCa = await loadOrCreateCa(join(dir, 'stand-in-ca'))
  const contexts = new Map<string, SecureContext>()
  for (const host of HOSTS) {
    const leaf = await standInCa.leafFor(host)
    contexts.set(host, createSecureContext({ key: leaf.key, cert: leaf.cert }))
  }
  const answer = (request: http.IncomingMessage, response: http.ServerResponse) => {
    const auth = request.headers.authorization ?? request.headers['x-api-key']
    received.push(auth === undefined ? 'no credentials' : `${request.headers.authorization === undefined ? 'x-api-key' : 'Authorization'}: ${String(auth).replace(DEMO_KEY, 'sk-demo-…')}`)
    response.end('{}')
  }
  const standIn = https.createServer({ SNICallback: (name, done) => done(null, contexts.get(name)) }, answer)
  const plainStandIn = http.createServer(answer)
  await new Promise<void>((resolve) => standIn.listen(0, '127.0.0.1', resolve))
  await new Promise<void>((resolve) => plainStandIn.listen(0, '127.0.0.1', resolve))
  const port = (standIn.address() as AddressInfo).port
  const plainPort = (plainStandIn.address() as AddressInfo).port
  const rows: Array<Row> = []
  const audit: Array<AuditEntry> = []
  try {
    for (const mode of PROXY_MODES) {
      const entries: Array<AuditEntry> = []
      const env = { OPENAI_API_KEY: DEMO_KEY }
      const guard = createGuard({
        policy: catalogPolicy(env),
        mode,
        env,
        log: () => undefined,
        audit: { write: (e) => entries.push(e), flush: async () => undefined, close: async () => undefined, dropped: () => 0 }
      })
      const proxy = await startNodeProxy({
        guard,
        configDir: join(dir, 'proxy'),
        upstreamCa: [standInCa.certPem],
        connectTo: HOSTS.flatMap((host) => [
          { host, port: 443, toHost: '127.0.0.1', toPort: port },
          { host, port: 80, toHost: '127.0.0.1', toPort: plainPort }
        ]),
        log: () => undefined
      })
      const bundle = join(dir, 'bundle.pem')
      await writeFile(bundle, `${proxy.caCertPem}\n${standInCa.certPem}`)
      for (const { client, url } of REQUESTS) {
        const before = received.length
        const seen = entries.length
        const status = client === 'curl' ? await curl(proxy.url, bundle, url) : await nodeFetch(proxy.url, `${proxy.caCertPem}\n${standInCa.certPem}`, url)
        const records = entries.slice(seen)
        audit.push(...records)
        rows.push({
          mode,
          client,
          request: url,
          decision: `${status} ← ${records.map((r) => r.event.replace('proxy_', '') + (r.metadata['reason'] === undefined ? '' : ` ${r.metadata['reason']}`)).join(', ')}`,
          upstream: received.length > before ? (received.at(-1) ?? '') : 'nothing'
        })
      }
      await proxy.close()
      await guard.close()
    }
  } finally {
    await new Promise((resolve) => standIn.close(resolve))
    await new Promise((resolve) => plainStandIn.close(resolve))
    await rm(dir, { recursive: true, force: true })
    process.off('SIGINT', interrupted).off('SIGTERM', interrupted)
  }
  const width = (key: keyof Row) => Math.max(key.length, ...rows.map((r) => r[key].length))
  const keys: ReadonlyArray<keyof Row> = ['mode', 'client', 'request', 'decision', 'upstream']
  io.out('egress-guard demo: the bundled catalog, OPENAI_API_KEY set to a demo key, a local stand-in for the APIs\n')
  io.out(keys.map((k) => k.padEnd(width(k))).join('  '))
  io.out(keys.map((k) => '-'.repeat(width(k))).join('  '))
  for (const row of rows) io.out(keys.map((k) => row[k].padEnd(width(k))).join('  '))
  io.out('\naudit records:')
  for (const entry of audit) io.out(`  ${entry.mode.padEnd(16)} ${decisionLine(entry)}`)
  const leaked = audit.some((e) => JSON.stringify(e).includes(DEMO_KEY))
  io.out(`\nthe key reached the stand-in only as an injected header; it is in no audit record: ${leaked ? 'NO' : 'yes'}`)
  return leaked ? 1 : 0
}
