// The proxy CA's leaf certificates: reused while fresh, issued again before they expire, and kept
// in memory for a bounded number of hosts.
import { X509Certificate } from 'node:crypto'
import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { afterAll, describe, expect, it } from 'vitest'

import { loadOrCreateCa } from '../../../adapters/interception/certificates.js'

const DAY = 24 * 60 * 60 * 1000
const dirs: Array<string> = []
const freshDir = () => {
  const dir = mkdtempSync(join(tmpdir(), 'egress-guard-ca-'))
  dirs.push(dir)
  return dir
}
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})

const serialOf = async (leaf: Promise<{ readonly cert: string }>) => new X509Certificate((await leaf).cert).serialNumber

describe('leaf certificates', () => {
  it('are reused for a host (whatever its case) until 30 days old, then issued again, dated by the clock', async () => {
    let now = Date.UTC(2026, 0, 1)
    const ca = await loadOrCreateCa(freshDir(), { now: () => now })
    const first = new X509Certificate((await ca.leafFor('api.example.test')).cert)
    expect(new Date(first.validFrom).getTime()).toBe(now - DAY)
    expect(new Date(first.validTo).getTime() - new Date(first.validFrom).getTime()).toBe(91 * DAY)
    now += 30 * DAY - 1
    expect(await serialOf(ca.leafFor('API.Example.test'))).toBe(first.serialNumber)
    now += 1
    const renewed = new X509Certificate((await ca.leafFor('api.example.test')).cert)
    expect(renewed.serialNumber).not.toBe(first.serialNumber)
    expect(new Date(renewed.validFrom).getTime()).toBe(now - DAY)
    expect(renewed.verify(new X509Certificate(ca.certPem).publicKey)).toBe(true)
  })

  it('are reused across a clock step back of up to an hour, and issued again after a larger one', async () => {
    let now = Date.UTC(2026, 0, 1)
    const ca = await loadOrCreateCa(freshDir(), { now: () => now })
    const first = await serialOf(ca.leafFor('api.example.test'))
    now -= 60 * 60 * 1000
    expect(await serialOf(ca.leafFor('api.example.test'))).toBe(first)
    now -= 1
    expect(await serialOf(ca.leafFor('api.example.test'))).not.toBe(first)
  })

  it('refuses a maxLeaves that is not a whole number of at least 1', async () => {
    await expect(loadOrCreateCa(freshDir(), { maxLeaves: 0 })).rejects.toThrow('`maxLeaves` is `0`: expected a whole number of at least 1')
  })

  it('are kept for at most maxLeaves hosts, the least recently used dropped first', async () => {
    const ca = await loadOrCreateCa(freshDir(), { maxLeaves: 2 })
    const a = await serialOf(ca.leafFor('a.example.test'))
    const b = await serialOf(ca.leafFor('b.example.test'))
    expect(await serialOf(ca.leafFor('a.example.test'))).toBe(a) // a is now the most recently used
    await ca.leafFor('c.example.test') // drops b
    expect(await serialOf(ca.leafFor('a.example.test'))).toBe(a)
    expect(await serialOf(ca.leafFor('b.example.test'))).not.toBe(b)
  })
})

describe('a CA directory shared by instances (docs/spec.md §14)', () => {
  it('gets one CA when instances start at once: each loads the same certificate, and its key signs for it', async () => {
    const shared = mkdtempSync(join(tmpdir(), 'eg-shared-ca-'))
    try {
      const cas = await Promise.all([loadOrCreateCa(shared), loadOrCreateCa(shared), loadOrCreateCa(shared), loadOrCreateCa(shared)])
      expect(new Set(cas.map((ca) => ca.certPem)).size).toBe(1)
      const authority = new X509Certificate(cas[0]?.certPem ?? '')
      for (const ca of cas) expect(new X509Certificate((await ca.leafFor('api.shared.test')).cert).checkIssued(authority)).toBe(true)
      expect(readdirSync(join(shared, 'keys')).sort()).toEqual(['ca.private.key', 'ca.public.key'])
      expect(readdirSync(join(shared, 'certs'))).toEqual(['ca.pem'])
    } finally {
      rmSync(shared, { recursive: true, force: true })
    }
  })
})
