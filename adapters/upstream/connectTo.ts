import { isIP } from 'node:net'

import * as E from 'fp-ts/lib/Either.js'

/** curl's `--connect-to HOST:PORT:HOST2:PORT2`: dial HOST2:PORT2 for HOST:PORT; TLS and policy still see HOST. */
export interface ConnectTo {
  readonly host: string
  readonly port: number
  readonly toHost: string
  readonly toPort: number
}

/** Where a connection for a host and port actually goes, and whether a rule sent it there. */
export interface Upstream {
  readonly host: string
  readonly port: number
  readonly overridden: boolean
}

const PORT = /^[0-9]{1,5}$/

/** Parses `HOST:PORT:HOST2:PORT2` (IPv6 hosts in brackets). */
export const parseConnectTo = (spec: string): E.Either<string, ConnectTo> => {
  const parts = /^(\[[^\]]+\]|[^:[\]]+):([0-9]+):(\[[^\]]+\]|[^:[\]]+):([0-9]+)$/.exec(spec)
  const unbracket = (h: string) => h.replace(/^\[(.*)\]$/, '$1')
  if (parts === null || !PORT.test(parts[2] ?? '') || !PORT.test(parts[4] ?? '')) {
    return E.left(`--connect-to \`${spec}\`: expected HOST:PORT:HOST2:PORT2, e.g. api.openai.com:443:127.0.0.1:8443`)
  }
  const port = Number(parts[2])
  const toPort = Number(parts[4])
  if (port < 1 || port > 65535 || toPort < 1 || toPort > 65535) return E.left(`--connect-to \`${spec}\`: ports must be 1-65535`)
  return E.right({ host: unbracket(parts[1] ?? '').toLowerCase(), port, toHost: unbracket(parts[3] ?? ''), toPort })
}

/** The upstream for a destination under the rules (the first rule for that host and port wins). */
export const upstreamFor = (rules: ReadonlyArray<ConnectTo>, host: string, port: number): Upstream => {
  const lower = host.toLowerCase().replace(/\.$/, '')
  const rule = rules.find((r) => r.host === lower && r.port === port)
  return rule === undefined ? { host, port, overridden: false } : { host: rule.toHost, port: rule.toPort, overridden: true }
}

/** A host as it may stand in a URL (IPv6 in brackets). */
export const hostForUrl = (host: string): string => (isIP(host) === 6 ? `[${host}]` : host)
