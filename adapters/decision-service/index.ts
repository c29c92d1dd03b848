/** egress-guard/decision-service: the guard over HTTP for nginx, Envoy, mitmproxy and others. Re-exports only. */
export * from './codecs.js'
export * from './decisionService.js'
