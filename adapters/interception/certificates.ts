import { chmod, link, mkdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises'
import { isIP } from 'node:net'
import { join } from 'node:path'
import { webcrypto } from 'node:crypto'

import type * as X509 from '@peculiar/x509'

import { atLeastOne } from './atLeastOne.js'
import { fairQueue, hostGroup } from './fairQueue.js'
import { DAY, LEAF_VALIDITY_MS, leafIsFresh } from './leafLifetime.js'

/** The proxy's own certificate authority, kept in a config directory. */
export interface CertificateAuthority {
  /** Path of the CA certificate clients must trust. */
  readonly certPath: string
  readonly certPem: string
  /** Path of the CA private key (0600), for proxies that issue their own leaf certificates from it. */
  readonly keyPath: string
  /** A leaf certificate for a host: from memory while it is fresh (see leafLifetime.ts), else newly issued; never blocks the event loop. */
  readonly leafFor: (host: string) => Promise<{ readonly cert: string; readonly key: string }>
}

const RSA = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } as const

/** How a CA is kept; the defaults suit a long-running proxy. */
export interface CaOptions {
  /** The clock leaf certificates are dated and aged by (tests). */
  readonly now?: () => number
  /** Leaf certificates kept in memory; the least recently used beyond this is dropped. Default 1,024. */
  readonly maxLeaves?: number
  /** Leaves issued at once; the others wait, each domain served in turn (fairQueue.ts). Default 2. */
  readonly issueConcurrency?: number
}

/** Leaves waiting to be issued, at most; beyond this a new host's leaf fails at once. */
const MAX_WAITING_LEAVES = 4_096

// x509 takes a WebCrypto implementation; Node's is the one to use.
const provider = webcrypto as unknown as Parameters<typeof X509.X509CertificateGenerator.create>[1]

// x509 takes a fifth of a second to load, which every `run` paid before its child started: it is
// loaded only to make a CA, or in the background once the CA is read, before the first leaf.
let x509Loading: Promise<typeof X509> | undefined
const loadX509 = (): Promise<typeof X509> => (x509Loading ??= import('@peculiar/x509'))
type KeyPair = webcrypto.CryptoKeyPair

const pem = (label: string, der: ArrayBuffer): string =>
  `-----BEGIN ${label}-----\n${Buffer.from(der).toString('base64').replace(/(.{64})/g, '$1\n').trimEnd()}\n-----END ${label}-----\n`

const derOf = (text: string): ArrayBuffer => {
  const bytes = Buffer.from(text.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, ''), 'base64')
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)
}

const serial = (): string => {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16))
  bytes[0] = (bytes[0] ?? 0) & 0x7f
  return Buffer.from(bytes).toString('hex')
}

/**
 * Sets a mode on the CA's key or its directory. On a read-only mount (a Kubernetes Secret shared by
 * instances) the mode cannot change: that is fine for a directory, and for a key that nobody else
 * can read (others no bits; the group at most reading, and only when it is this process's own
 * group, as a pod's `fsGroup` makes it).
 */
const tighten = async (path: string, mode: number): Promise<void> => {
  try {
    await chmod(path, mode)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code !== 'EROFS' && code !== 'EPERM') throw error
    const found = await stat(path)
    if (found.isDirectory()) return
    const kept = found.mode & 0o777
    const groups = new Set([process.getgid?.(), ...(process.getgroups?.() ?? [])])
    const groupOk = (kept & 0o030) === 0 && ((kept & 0o040) === 0 || groups.has(found.gid))
    if ((kept & 0o007) !== 0 || !groupOk) throw new Error(`${path} is readable by others (mode ${kept.toString(8)}) and cannot be changed; mount it 0400, or 0440 for this process's own group`)
  }
}

/** How long an instance waits for the CA another instance is creating in a shared directory. */
const CA_CREATION_WAIT_MS = 30_000

const makeCa = async (created: number): Promise<{ readonly certPem: string; readonly keyPem: string; readonly publicPem: string }> => {
  const x509 = await loadX509()
  const keys = (await webcrypto.subtle.generateKey({ ...RSA, modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]) }, true, ['sign', 'verify'])) as KeyPair
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: serial(),
      name: 'CN=egress-guard local CA, O=egress-guard',
      notBefore: new Date(created - DAY),
      notAfter: new Date(created + 5 * 365 * DAY),
      signingAlgorithm: RSA,
      keys,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey)
      ]
    },
    provider
  )
  return {
    certPem: cert.toString('pem'),
    keyPem: pem('PRIVATE KEY', await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)),
    publicPem: pem('PUBLIC KEY', await webcrypto.subtle.exportKey('spki', keys.publicKey))
  }
}

/**
 * Creates the CA in `dir`, or, when another instance sharing the directory (docs/spec.md §14)
 * creates it at the same moment, waits for that one. The key is linked into place (link fails if
 * the name exists), so exactly one instance's key wins; its certificate is renamed into place
 * after it, so a certificate on disk always has its key beside it.
 */
const createOrAwaitCa = async (dir: string, created: number): Promise<{ readonly certPem: string; readonly keyPem: string }> => {
  const certPath = join(dir, 'certs', 'ca.pem')
  const keyPath = join(dir, 'keys', 'ca.private.key')
  const made = await makeCa(created)
  const unique = `${process.pid}.${serial()}`
  const keyDraft = join(dir, 'keys', `.ca.private.key.${unique}`)
  await writeFile(keyDraft, made.keyPem, { mode: 0o600 })
  let won: boolean
  try {
    await link(keyDraft, keyPath)
    won = true
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
    won = false
  } finally {
    await unlink(keyDraft).catch(() => undefined)
  }
  if (won) {
    await writeFile(join(dir, 'keys', 'ca.public.key'), made.publicPem, { mode: 0o644 })
    const certDraft = join(dir, 'certs', `.ca.pem.${unique}`)
    await writeFile(certDraft, made.certPem, { mode: 0o644 })
    await rename(certDraft, certPath)
    return made
  }
  for (const started = Date.now(); Date.now() - started < CA_CREATION_WAIT_MS; await new Promise((resolve) => setTimeout(resolve, 50))) {
    try {
      return { certPem: await readFile(certPath, 'utf8'), keyPem: await readFile(keyPath, 'utf8') }
    } catch {
      // not there yet: the instance that won is still writing it
    }
  }
  throw new Error(`${keyPath} has no certificate beside it (${certPath}); if no other instance is creating the CA, remove the key and start again`)
}

/**
 * Loads the CA from `dir`, or creates one (RSA 2048, 5 years) with the directory at 0700 and the
 * private key at 0600. The layout (`certs/ca.pem`, `keys/ca.private.key`, `keys/ca.public.key`)
 * is the one http-mitm-proxy loads, so it never generates a CA of its own.
 */
export const loadOrCreateCa = async (dir: string, options: CaOptions = {}): Promise<CertificateAuthority> => {
  const now = options.now ?? Date.now
  const maxLeaves = atLeastOne('maxLeaves', options.maxLeaves ?? 1_024)
  // Issuing a leaf is about 5 ms of this thread (x509 in JavaScript): all of a flood's at once held
  // every other new host's first request for seconds. Two at a time, domains in turn.
  const issuer = fairQueue({ concurrency: atLeastOne('issueConcurrency', options.issueConcurrency ?? 2), maxWaiting: MAX_WAITING_LEAVES })
  const certPath = join(dir, 'certs', 'ca.pem')
  const keyPath = join(dir, 'keys', 'ca.private.key')
  // A new config directory is created 0700; an existing one (it may be shared) is left as it is,
  // but the directory holding the key is always 0700 and the key 0600.
  await mkdir(dir, { recursive: true, mode: 0o700 })
  await mkdir(join(dir, 'certs'), { recursive: true, mode: 0o755 })
  await mkdir(join(dir, 'keys'), { recursive: true, mode: 0o700 })
  await tighten(join(dir, 'keys'), 0o700)
  let certPem: string
  let keyPem: string
  try {
    ;[certPem, keyPem] = await Promise.all([readFile(certPath, 'utf8'), readFile(keyPath, 'utf8')])
  } catch {
    ;({ certPem, keyPem } = await createOrAwaitCa(dir, now()))
  }
  await tighten(keyPath, 0o600)
  const caKey = await webcrypto.subtle.importKey('pkcs8', derOf(keyPem), RSA, false, ['sign'])
  const caPem = certPem
  // Issued leaves by host, least recently used first, with when each was issued.
  const leaves = new Map<string, { readonly issuedAt: number; readonly leaf: Promise<{ cert: string; key: string }> }>()
  // Made once for all leaves: the CA's key identifier, and always one leaf key pair ahead, so that
  // the first request to a new host waits only for the signature (measured: 10 ms down to 7).
  type Authority = { readonly x509: typeof X509; readonly subject: string; readonly keyId: X509.AuthorityKeyIdentifierExtension }
  let authority: Promise<Authority> | undefined
  const authorityNow = (): Promise<Authority> =>
    (authority ??= (async () => {
      const x509 = await loadX509()
      const caCert = new x509.X509Certificate(caPem)
      return { x509, subject: caCert.subject, keyId: await x509.AuthorityKeyIdentifierExtension.create(caCert, false, provider) }
    })())
  // Made a moment after start (a short-lived `run` never waits for it), or by the first leaf.
  setTimeout(() => authorityNow().catch(() => undefined), 100).unref()
  const newKeyPair = async (): Promise<{ readonly keys: KeyPair; readonly pkcs8: string }> => {
    const keys = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify'])) as KeyPair
    return { keys, pkcs8: pem('PRIVATE KEY', await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)) }
  }
  // A failed generation is seen (and retried) by the issue that takes it, never left unhandled.
  const prepared = () => {
    const next = newKeyPair()
    next.catch(() => undefined)
    return next
  }
  let nextKeyPair = prepared()
  const takeKeyPair = (): Promise<{ readonly keys: KeyPair; readonly pkcs8: string }> => {
    const taken = nextKeyPair
    // INVARIANT: a key pair is handed out once; the next one is made as this one is taken.
    nextKeyPair = prepared()
    return taken
  }

  const issue = async (host: string, issuedAt: number): Promise<{ cert: string; key: string }> => {
    const { keys, pkcs8 } = await takeKeyPair()
    const { x509, subject, keyId } = await authorityNow()
    const cert = await x509.X509CertificateGenerator.create(
      {
        serialNumber: serial(),
        subject: `CN=${isIP(host) === 0 ? host : 'egress-guard'}`,
        issuer: subject,
        notBefore: new Date(issuedAt - DAY),
        notAfter: new Date(issuedAt + LEAF_VALIDITY_MS),
        signingAlgorithm: RSA,
        publicKey: keys.publicKey,
        signingKey: caKey,
        extensions: [
          new x509.SubjectAlternativeNameExtension([{ type: isIP(host) === 0 ? 'dns' : 'ip', value: host }]),
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
          keyId
        ]
      },
      provider
    )
    return { cert: cert.toString('pem'), key: pkcs8 }
  }

  return {
    certPath,
    certPem,
    keyPath,
    leafFor: (host) => {
      const key = host.toLowerCase()
      const at = now()
      const cached = leaves.get(key)
      // INVARIANT: `leaves` holds at most maxLeaves hosts, the most recently used last.
      leaves.delete(key)
      if (cached !== undefined && leafIsFresh(cached.issuedAt, at)) {
        leaves.set(key, cached)
        return cached.leaf
      }
      const entry = { issuedAt: at, leaf: issuer.run(hostGroup(key), () => issue(key, at)) }
      leaves.set(key, entry)
      if (leaves.size > maxLeaves) leaves.delete(leaves.keys().next().value as string)
      entry.leaf.catch(() => leaves.get(key) === entry && leaves.delete(key))
      return entry.leaf
    }
  }
}
