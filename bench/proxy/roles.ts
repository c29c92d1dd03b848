// One process of the proxy benchmark, by role: the HTTPS upstream, a bare proxy (http-mitm-proxy
// or mockttp forwarding everything, or the node engine with a guard that decides nothing), the
// floor (floor.ts), or egress-guard on an engine. Guarded proxies run the built package, as users
// run it. Each prints `{"port": n}` once listening, and answers IPC requests for
// its event-loop delay; SIGTERM stops it.
import https from 'node:https'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Session } from 'node:inspector/promises'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { createSecureContext, rootCertificates } from 'node:tls'

import type * as GuardModule from '../../adapters/guard/index.js'
import type * as HttpMitmProxyModule from '../../adapters/http-mitm-proxy/index.js'
import type * as MockttpModule from '../../adapters/mockttp/index.js'
import type * as NodeModule from '../../adapters/node/index.js'
import type { Guard } from '../../adapters/guard/createGuard.js'

/** What the orchestrator hands a role (a JSON file named in argv[3]). */
export interface RoleConfig {
  readonly upstreamPort?: number
  readonly upstreamCa?: string
  readonly key?: string
  readonly cert?: string
  readonly policy?: string
  readonly secret?: string
  /** Host names mapped to the upstream (all on port 443). */
  readonly hosts?: ReadonlyArray<string>
  /** The flooder: the proxy to flood, the CAs to trust, and the new hosts to send a first request to, all at once. */
  readonly flood?: { readonly proxyUrl: string; readonly trusted: ReadonlyArray<string>; readonly hosts: ReadonlyArray<string> }
}

// The libraries' console chatter is silenced, as the command line does.
for (const method of ['debug', 'info', 'log', 'warn', 'error'] as const) console[method] = () => undefined

const role = process.argv[2] ?? ''
const config = JSON.parse(readFileSync(process.argv[3] ?? '', 'utf8')) as RoleConfig
const configDir = mkdtempSync(join(tmpdir(), `eg-bench-${role}-`))
// The event-loop delay monitor runs only between 'loop:start' and 'loop:read': its 1 ms timer
// would otherwise tax every throughput sample of this process.
const loop = monitorEventLoopDelay({ resolution: 1 })
process.on('message', (message: unknown) => {
  if (message === 'loop:start') {
    loop.reset()
    loop.enable()
  } else if (message === 'loop:read') {
    loop.disable()
    process.send?.({ maxMs: loop.max / 1e6, p99Ms: loop.percentile(99) / 1e6 })
  }
})

// BENCH_PROFILE=<role> writes a CPU profile of that role to bench/results/<role>-<pid>.cpuprofile.
const profiling = process.env['BENCH_PROFILE'] === role ? new Session() : undefined
if (profiling !== undefined) {
  profiling.connect()
  await profiling.post('Profiler.enable')
  await profiling.post('Profiler.setSamplingInterval', { interval: 200 })
  await profiling.post('Profiler.start')
}

const ready = (port: number, caPath: string | undefined, stop: () => Promise<void> | void): void => {
  process.stdout.write(`${JSON.stringify({ port, caPath })}\n`)
  process.once('SIGTERM', () => {
    const profiled = profiling === undefined ? Promise.resolve() : profiling.post('Profiler.stop').then(({ profile }) => writeFileSync(join('bench', 'results', `${role}-${process.pid}.cpuprofile`), JSON.stringify(profile)))
    profiled.then(() => stop()).finally(() => process.exit(0))
  })
}

const connectTo = () => (config.hosts ?? []).map((host) => ({ host, port: 443, toHost: '127.0.0.1', toPort: config.upstreamPort ?? 0 }))

const guarded = async () => {
  const guardPackage: string = 'egress-guard/guard'
  const { createGuard, jsonLinesSink, parsePolicyText } = (await import(guardPackage)) as typeof GuardModule
  const policy = parsePolicyText(config.policy ?? '', 'bench policy')
  if (policy._tag === 'Left') throw new Error(policy.left.messages.join('\n'))
  return createGuard({ policy: policy.right, audit: jsonLinesSink({ path: join(configDir, 'audit.jsonl') }), env: { BENCH_KEY: config.secret ?? '' }, log: () => undefined })
}

/** The size of the upstream's `/big` answer. */
const BIG_BYTES = 50 * 1024 * 1024

/**
 * The guard with the secret in both directions taken out (no tripwire, no swap, no scrubbing):
 * what the node engine cost before it, measured beside the guard as users run it.
 */
const withoutSecrets = (guard: Guard): Guard => {
  const plain = <V extends { secrets?: unknown; body?: unknown }>(verdict: V): V => ({ ...verdict, secrets: undefined, body: undefined })
  return {
    ...guard,
    inspects: () => false,
    evaluate: async (request) => plain(await guard.evaluate(request)),
    evaluateNow: (request) => {
      const verdict = guard.evaluateNow(request)
      return verdict === undefined ? undefined : plain(verdict)
    }
  }
}

switch (role) {
  case 'upstream': {
    // Answers every request with which Authorization it saw, so the bench can check its premise;
    // `/big` answers 50 MB of JSON-like text (no secret in it), for the scrubber's throughput.
    const line = Buffer.from(`${JSON.stringify({ id: 'chatcmpl-0123456789', object: 'chat.completion.chunk', choices: [{ delta: { content: 'some words of a streamed answer' } }] })}\n`)
    const server = https.createServer({ key: config.key, cert: config.cert, keepAliveTimeout: 60_000 }, (request, response) => {
      request.resume()
      request.on('end', () => {
        if (request.url === '/big') {
          const lines = Math.floor(BIG_BYTES / line.length)
          response.writeHead(200, { 'content-type': 'application/x-ndjson', 'content-length': String(lines * line.length) })
          const block = Buffer.concat(Array.from({ length: 512 }, () => line))
          let left = lines
          const more = (): void => {
            while (left > 0) {
              const n = Math.min(512, left)
              left -= n
              if (!response.write(n === 512 ? block : block.subarray(0, n * line.length))) return void response.once('drain', more)
            }
            response.end()
          }
          more()
          return
        }
        const body = `auth:${request.headers.authorization === undefined ? 'none' : request.headers.authorization === `Bearer ${config.secret}` ? 'injected' : 'other'}`
        response.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(body.length) })
        response.end(body)
      })
    })
    server.listen(0, '127.0.0.1', () => ready((server.address() as AddressInfo).port, undefined, () => void server.close()))
    break
  }
  case 'hmp-bare': {
    const { Proxy } = await import('http-mitm-proxy')
    const proxy = new Proxy()
    const agent = new https.Agent({ keepAlive: true, ca: config.upstreamCa })
    // The least a proxy must do here: send each request to the stand-in, with the right TLS name.
    // Leaf certificates are the library's own (RSA, made synchronously): this role is measured
    // with kept-alive connections only, after warm-up, never for new hosts.
    proxy.onRequest((ctx, callback) => {
      const options = ctx.proxyToServerRequestOptions as https.RequestOptions
      options.servername = String(options.host)
      options.host = '127.0.0.1'
      options.port = config.upstreamPort ?? 0
      callback()
    })
    proxy.listen({ host: '127.0.0.1', port: 0, sslCaDir: configDir, keepAlive: true, httpsAgent: agent }, () =>
      ready((proxy as unknown as { httpPort: number }).httpPort, join(configDir, 'certs', 'ca.pem'), () => {
        proxy.close()
      })
    )
    break
  }
  case 'mockttp-bare': {
    const { getLocal, generateCACertificate } = await import('mockttp')
    const ca = await generateCACertificate()
    const mock = getLocal({ https: ca, recordTraffic: false, http2: false })
    // The stand-in's certificate also names 127.0.0.1, which mockttp checks once the host is replaced.
    // Its CA is trusted the way the adapter trusts extra CAs (one secure context): as
    // `additionalTrustedCAs` it would cost this baseline 40% of its CPU (see bench/README.md).
    await mock.forAnyRequest().thenPassThrough({
      clientCertificateHostMap: { '*': { secureContext: createSecureContext({ ca: [...rootCertificates, config.upstreamCa ?? ''] }) } },
      transformRequest: { replaceHost: { targetHost: `127.0.0.1:${config.upstreamPort ?? 0}`, updateHostHeader: false } }
    } as never)
    await mock.start(0)
    writeFileSync(join(configDir, 'ca.pem'), ca.cert)
    ready(mock.port, join(configDir, 'ca.pem'), () => mock.stop())
    break
  }
  case 'floor': {
    const { startFloor } = await import('./floor.js')
    const floor = await startFloor({ key: config.key ?? '', cert: config.cert ?? '', upstreamPort: config.upstreamPort ?? 0, upstreamCa: config.upstreamCa ?? '', servername: config.hosts?.[0] ?? '', secret: config.secret ?? '' })
    ready(floor.port, undefined, () => floor.close())
    break
  }
  case 'node-bare': {
    // The node engine with a guard that intercepts every CONNECT and passes every request, deciding
    // and recording nothing: what the engine costs without the policy.
    const pass = { decision: { _tag: 'Pass' }, audit: [], decisionId: '', mode: 'connected_allow' } as const
    const bare = {
      evaluate: async () => pass,
      evaluateNow: () => pass,
      evaluateTunnel: () => ({ decision: { _tag: 'Intercept' }, audit: [], decisionId: '', mode: 'connected_allow' }),
      authenticate: () => ({ _tag: 'Anonymous' }),
      generation: () => 0,
      inspects: () => false,
      screenHost: () => undefined
    } as unknown as Guard
    const entry: string = 'egress-guard/node'
    const proxy = await ((await import(entry)) as typeof NodeModule).startNodeProxy({ guard: bare, configDir, upstreamCa: [config.upstreamCa ?? ''], connectTo: connectTo(), log: () => undefined })
    ready(proxy.port, proxy.caCertPath, () => proxy.close())
    break
  }
  case 'node-guarded':
  case 'node-guarded-unscrubbed':
  case 'hmp-guarded':
  case 'mockttp-guarded': {
    const guard = role === 'node-guarded-unscrubbed' ? withoutSecrets(await guarded()) : await guarded()
    const options = { guard, configDir, upstreamCa: [config.upstreamCa ?? ''], connectTo: connectTo(), log: () => undefined }
    const entry: string = role === 'hmp-guarded' ? 'egress-guard/http-mitm-proxy' : role.startsWith('node-guarded') ? 'egress-guard/node' : 'egress-guard/mockttp'
    const proxy =
      role === 'hmp-guarded'
        ? await ((await import(entry)) as typeof HttpMitmProxyModule).startHttpMitmProxy(options)
        : role.startsWith('node-guarded')
          ? await ((await import(entry)) as typeof NodeModule).startNodeProxy(options)
          : await ((await import(entry)) as typeof MockttpModule).startMockttpProxy(options)
    ready(proxy.port, proxy.caCertPath, async () => {
      await proxy.close()
      await guard.close()
    })
    break
  }
  case 'flooder': {
    // A process of its own, so that the first requests measured beside the flood are not slowed
    // by the flood's own client work: on 'flood:go', every host's first request at once; the
    // outcome counts come back as a message.
    const { tryFirstRequest } = await import('./load.js')
    const flood = config.flood
    if (flood === undefined) throw new Error('the flooder needs its flood configuration')
    process.on('message', (message: unknown) => {
      if (message !== 'flood:go') return
      void Promise.all(flood.hosts.map((host) => tryFirstRequest(flood.proxyUrl, flood.trusted, `https://${host}`, '/v1/x', 'auth:injected'))).then((done) => {
        const answered = done.filter((o) => typeof o === 'number').length
        const refused = done.filter((o) => typeof o === 'string' && /503/.test(o)).length
        process.send?.({ hosts: done.length, answered, refused, failed: done.length - answered - refused })
      })
    })
    ready(0, undefined, () => undefined)
    break
  }
  default:
    process.stderr.write(`unknown role ${role}\n`)
    process.exit(2)
}
