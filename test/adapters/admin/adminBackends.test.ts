// The admin backend of one process (docs/spec.md §14): /readyz is ready only while the policy is
// loaded, the CA file is readable and every audit sink takes records.
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import * as E from 'fp-ts/lib/Either.js'
import { describe, expect, it } from 'vitest'

import { localBackend } from '../../../adapters/admin/adminBackends.js'
import { proxyMetrics } from '../../../adapters/admin/metrics.js'
import { parsePolicyText } from '../../../adapters/config/PolicyFile.js'
import { createGuard } from '../../../adapters/guard/createGuard.js'
import type { AuditSink } from '../../../adapters/ports.js'

const loaded = parsePolicyText('providers: []\n')
if (E.isLeft(loaded)) throw new Error(loaded.left.messages.join())

describe('readiness', () => {
  it('is ready with a readable CA and accepting sinks, and says which check fails otherwise', async () => {
    let accepting = true
    const sink: AuditSink = { write: () => undefined, flush: async () => undefined, close: async () => undefined, dropped: () => 0, accepting: () => accepting }
    const guard = createGuard({ policy: loaded.right, audit: [sink], log: () => undefined })
    const dir = mkdtempSync(join(tmpdir(), 'eg-ready-'))
    const caCertPath = join(dir, 'ca.pem')
    writeFileSync(caCertPath, 'a certificate')
    const proxy = { caCertPath, open: () => ({ connections: 0, tunnels: 0 }) }
    const backend = localBackend({ guard, proxy, metrics: proxyMetrics() })
    expect(await backend.readiness()).toEqual({ ready: true, checks: { policy: true, ca: true, sinks: true } })
    accepting = false
    expect(await backend.readiness()).toEqual({ ready: false, checks: { policy: true, ca: true, sinks: false } })
    accepting = true
    const missing = localBackend({ guard, proxy: { ...proxy, caCertPath: join(dir, 'gone.pem') }, metrics: proxyMetrics() })
    expect(await missing.readiness()).toEqual({ ready: false, checks: { policy: true, ca: false, sinks: true } })
    await guard.close()
  })
})
