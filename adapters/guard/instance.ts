import { hostname } from 'node:os'

/** The environment variable that names this instance in every record (set by `serve --instance`, inherited by workers). */
export const INSTANCE_VARIABLE = 'EGRESS_GUARD_INSTANCE'

/** This instance's id (docs/spec.md §14): `$EGRESS_GUARD_INSTANCE`, else this host's name and the process id. */
export const instanceId = (env: NodeJS.ProcessEnv = process.env): string => env[INSTANCE_VARIABLE] ?? `${hostname()}:${process.pid}`
