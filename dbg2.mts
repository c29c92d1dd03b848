import { mkdtempSync, writeFileSync } from 'node:fs'
import https from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import * as E from 'fp-ts/lib/Either.js'
import { parsePolicyText } from './adapters/config/PolicyFile.js'
import { createGuard } from './adapters/guard/createGuard.js'
import { startMockttpProxy } from './adapters/mockttp/mockttpProxy.js'
import { startNodeProxy } from './adapters/node/nodeProxy.js'
import { createPki } from './test/adapters/support/pki.js'
const run = promisify(execFile)
const engine = process.argv[2]
const pki = createPki()
const server = https.createServer(pki.leaf(['api.alpha.test']), (request, response) => {
  request.resume()
  response.writeHead(200, { 'content-type': 'text/plain', 'content-length': '1000' })
  response.write('x'.repeat(100), () => setTimeout(() => response.socket?.destroy(), 20))
})
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
const port = (server.address() as any).port
const loaded = parsePolicyText(`mode: connected_deny
providers:
  - { name: alpha, apiUrl: "https://api.alpha.test/" }
connections:
  - { provider: alpha, name: default, credentials: { headers: { Authorization: "Bearer \${env:K}" } } }
`, 'p')
if (E.isLeft(loaded)) throw new Error('x')
const guard = createGuard({ policy: loaded.right, env: { K: 'sk-0123456789abcdef' }, log: () => undefined })
const dir = mkdtempSync(join(tmpdir(), 'dbg-'))
const start = engine === 'mockttp' ? startMockttpProxy : startNodeProxy
const proxy = await start({ guard, configDir: join(dir, 'c'), upstreamCa: [pki.caPem], connectTo: [{ host: 'api.alpha.test', port: 443, toHost: '127.0.0.1', toPort: port }], log: (l, m) => console.error(l, m) })
writeFileSync(join(dir, 'ca.pem'), proxy.caCertPem)
for (let i = 0; i < 2; i++) {
  try {
    const r = await run('curl', ['-sS', '-v', '--proxy', proxy.url, '--cacert', join(dir, 'ca.pem'), 'https://api.alpha.test/x'], { encoding: 'utf8' })
    console.log('OK', r.stdout.length, r.stderr.split('\n').filter((l) => l.startsWith('<') || l.startsWith('curl')).join('\n'))
  } catch (e) { console.log('ERR', (e as any).code, (e as any).stdout?.length, (e as any).stderr?.split('\n').filter((l: string) => l.startsWith('<') || l.startsWith('curl')).join('\n')) }
}
await proxy.close()
server.close()
