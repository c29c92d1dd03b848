/** egress-guard/node: the guard on egress-guard's own engine (Node's HTTP stack and undici; no peer dependency). Re-exports only. */
export * from '../upstream/connectTo.js'
export * from '../interception/certificates.js'
export * from './nodeProxy.js'
export type { EngineOptions } from '../proxy/engineOptions.js'
export type { RunningProxy } from '../ports.js'
