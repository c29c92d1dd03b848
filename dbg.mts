import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
const run = promisify(execFile)
import * as E from 'fp-ts/lib/Either.js'
import { parsePolicyText } from './adapters/config/PolicyFile.js'
import { createGuard } from './adapters/guard/createGuard.js'
import { startHttpMitmProxy } from './adapters/http-mitm-proxy/httpMitmProxy.js'
import { startMockttpProxy } from './adapters/mockttp/mockttpProxy.js'
const engine = process.argv[2]
const loaded = parsePolicyText(`mode: connected_deny
providers:
  - { name: alpha, apiUrl: "https://api.alpha.test/" }
connections:
  - { provider: alpha, name: default, credentials: { headers: { Authorization: "Bearer \${env:K}" } } }
`, 'p')
if (E.isLeft(loaded)) throw new Error('x')
const guard = createGuard({ policy: loaded.right, env: { K: 'sk-0123456789abcdef' }, log: () => undefined })
const dir = mkdtempSync(join(tmpdir(), 'dbg-'))
const start = engine === 'mockttp' ? startMockttpProxy : startHttpMitmProxy
const proxy = await start({ guard, configDir: join(dir, 'c'), connectTo: [{ host: 'api.alpha.test', port: 443, toHost: '127.0.0.1', toPort: 1 }], log: (l, m) => console.error(l, m) })
const { writeFileSync } = await import('node:fs')
writeFileSync(join(dir, 'ca.pem'), proxy.caCertPem)
for (let i = 0; i < 2; i++) {
  try {
    console.log((await run('curl', ['-sS', '-v', '--proxy', proxy.url, '--cacert', join(dir, 'ca.pem'), 'https://api.alpha.test/x', '-w', '\n%{http_code}'], { encoding: 'utf8' })).stdout)
  } catch (e) { console.log('ERR', (e as any).stdout, (e as any).stderr?.slice(-1500)) }
}
await proxy.close()
