/** egress-guard/http-mitm-proxy: the guard on http-mitm-proxy (an optional peer dependency). Re-exports only. */
export * from '../upstream/connectTo.js'
export * from '../interception/certificates.js'
export * from './httpMitmProxy.js'
export type { RunningProxy } from '../ports.js'
