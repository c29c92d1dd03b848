import * as E from 'fp-ts/lib/Either.js'

import { checkAdminToken, isLoopbackAddress, startAdmin, type AdminBackend, type RunningAdmin } from '../admin/adminServer.js'
import { stderrLogger } from '../ports.js'
import type { CommonOptions } from './options.js'

/** The environment variable that holds the admin token (safer than `--admin-token`, which `ps` shows). */
export const ADMIN_TOKEN_VARIABLE = 'EGRESS_GUARD_ADMIN_TOKEN'

/**
 * Starts `serve --admin HOST:PORT` (docs/spec.md §14) on `backend`, or says why it cannot: a token
 * too short, a port in use. Undefined without `--admin`. A listener off loopback without a token
 * would serve nothing but health and readiness: it starts, and the log says so.
 */
export const openAdmin = async (options: Pick<CommonOptions, 'admin' | 'adminToken' | 'listen'>, env: NodeJS.ProcessEnv, backend: AdminBackend): Promise<E.Either<string, RunningAdmin | undefined>> => {
  if (options.admin === undefined) return E.right(undefined)
  const token = options.adminToken ?? (env[ADMIN_TOKEN_VARIABLE] === '' ? undefined : env[ADMIN_TOKEN_VARIABLE])
  const weak = checkAdminToken(token)
  if (weak !== undefined) return E.left(`$${ADMIN_TOKEN_VARIABLE}: ${weak}`)
  // A proxy beyond loopback could carry a client to 127.0.0.1: then /metrics needs the token too.
  const openMetrics = isLoopbackAddress(options.admin.host) && (options.listen === undefined || isLoopbackAddress(options.listen))
  if (token === undefined) stderrLogger('warn', `the admin listener has no token: /proxy/mode${openMetrics ? '' : ' and /metrics'} will answer 403; set $${ADMIN_TOKEN_VARIABLE}`)
  try {
    return E.right(await startAdmin({ host: options.admin.host, port: options.admin.port, token, openMetrics, backend, log: stderrLogger }))
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    return E.left(`--admin ${options.admin.host}:${options.admin.port}: ${code === 'EADDRINUSE' ? 'the port is in use; choose another' : code === 'EADDRNOTAVAIL' ? 'no interface has that address' : (error as Error).message}`)
  }
}
