// A decision service on an ephemeral port over a guard with the test policy.
import * as E from 'fp-ts/lib/Either.js'

import type { ProxyMode } from '../../../core/index.js'
import { parsePolicyText } from '../../../adapters/config/PolicyFile.js'
import { startDecisionService, type RunningDecisionService } from '../../../adapters/decision-service/decisionService.js'
import { createGuard } from '../../../adapters/guard/createGuard.js'
import type { AuditEntry } from '../../../adapters/ports.js'

export const KEY = 'sk-service-4e2d'
export const TOKEN = 'service-token-91'

export const POLICY = (mode: ProxyMode) => `
mode: ${mode}
providers:
  - { name: alpha, apiUrl: "https://api.alpha.test/v1" }
  - { name: beta, apiUrl: "https://api.beta.test/", oauth: { tokenUrl: "https://api.beta.test/oauth/token" } }
connections:
  - { provider: alpha, name: default, credentials: { headers: { Authorization: "Bearer \${env:KEY}" } } }
  - { provider: beta, name: default, credentials: { headers: { x-api-key: "\${env:KEY}" } } }
passthrough: [pypi.test]
`

export const startService = async (mode: ProxyMode, token: string = TOKEN, extraPolicy = ''): Promise<{ service: RunningDecisionService; audit: Array<AuditEntry> }> => {
  const loaded = parsePolicyText(`${POLICY(mode)}\n${extraPolicy}`)
  if (E.isLeft(loaded)) throw new Error(loaded.left.messages.join())
  const audit: Array<AuditEntry> = []
  const guard = createGuard({ policy: loaded.right, env: { KEY }, log: () => undefined, audit: { write: (e) => audit.push(e), flush: async () => undefined, close: async () => undefined, dropped: () => 0 } })
  const service = await startDecisionService({ guard, token })
  return { service, audit }
}
