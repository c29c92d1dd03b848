// Test PKI made with the openssl CLI, independent of the proxy's own certificate code: a CA for
// the stand-in upstreams, and leaf certificates for the names they answer to.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { isIP } from 'node:net'
import { join } from 'node:path'

export interface Pki {
  readonly caPem: string
  /** A leaf certificate for host names and IP addresses. */
  readonly leaf: (names: ReadonlyArray<string>) => { readonly key: string; readonly cert: string }
}

const openssl = (args: ReadonlyArray<string>, cwd: string) => execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] })

/** A fresh CA in a temporary directory. */
export const createPki = (): Pki => {
  const dir = mkdtempSync(join(tmpdir(), 'egress-guard-pki-'))
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes']
  openssl(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=egress-guard test upstream CA'], dir)
  let n = 0
  return {
    caPem: readFileSync(join(dir, 'ca.pem'), 'utf8'),
    leaf: (names) => {
      const id = `leaf${n++}`
      writeFileSync(join(dir, `${id}.cnf`), `subjectAltName=${names.map((h) => `${isIP(h) === 0 ? 'DNS' : 'IP'}:${h}`).join(',')}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`)
      openssl(['req', ...ec, '-keyout', `${id}.key`, '-out', `${id}.csr`, '-subj', `/CN=${names[0] ?? 'upstream'}`], dir)
      openssl(['x509', '-req', '-in', `${id}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${id}.pem`, '-days', '2', '-extfile', `${id}.cnf`], dir)
      return { key: readFileSync(join(dir, `${id}.key`), 'utf8'), cert: readFileSync(join(dir, `${id}.pem`), 'utf8') }
    }
  }
}
