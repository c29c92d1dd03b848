/** egress-guard/mockttp: the guard on mockttp (an optional peer dependency). Re-exports only. */
export * from '../upstream/connectTo.js'
export * from '../interception/certificates.js'
export * from './mockttpProxy.js'
export type { RunningProxy } from '../ports.js'
