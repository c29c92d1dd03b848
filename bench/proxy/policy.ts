// The proxy benchmark's hosts and policy: the measured API host, new hosts for the first-request
// and burst measurements, and the flood's hosts, each routed by the policy the guarded proxies run.

const NEW_HOSTS = Number(process.env['BENCH_NEW_HOSTS'] ?? 20)

/** The API host every configuration is measured against. */
export const HOST = 'api.bench.test'
// Hosts a guarded proxy has not seen: each needs a leaf certificate and a new upstream connection.
export const quietHosts = Array.from({ length: NEW_HOSTS }, (_, i) => `q${i}.burst.test`)
// One new host before those measured: the process's first leaf certificate also loads and compiles
// the certificate code, once a process, which is not what a new host costs a running proxy.
export const firstHost = 'w0.burst.test'
export const burstHosts = Array.from({ length: NEW_HOSTS }, (_, i) => `b${i}.burst.test`)
// A flood of new hosts under one domain (a regex route), and first requests to new hosts of
// another domain made while it goes on, on each guarded engine.
const FLOOD_HOSTS = Number(process.env['BENCH_FLOOD_HOSTS'] ?? 600)
export const floodHosts = (engine: string) => Array.from({ length: FLOOD_HOSTS }, (_, i) => `f${i}.${engine}.flood.test`)
export const legitHosts = (engine: string) => Array.from({ length: 5 }, (_, i) => `n${i}${engine}.burst.test`)

/** The guarded proxies' policy, with `extraRoutes` more providers of one route each. */
export const policy = (extraRoutes: number) => `
mode: connected_allow
providers:
  - { name: bench, apiUrl: "https://${HOST}/v1" }
  - { name: burst, apiUrl: "regex:^[qbwn][0-9a-z]+\\\\.burst\\\\.test$" }
  - { name: flood, apiUrl: "regex:^f[0-9]+\\\\.[a-z]+\\\\.flood\\\\.test$" }
${Array.from({ length: extraRoutes }, (_, i) => `  - { name: svc${i}, apiUrl: "https://api.svc${i}.example/v1" }`).join('\n')}
connections:
  - { provider: bench, name: default, credentials: { headers: { Authorization: "Bearer \${env:BENCH_KEY}" } } }
  - { provider: burst, name: default, credentials: { headers: { Authorization: "Bearer \${env:BENCH_KEY}" } } }
  - { provider: flood, name: default, credentials: { headers: { Authorization: "Bearer \${env:BENCH_KEY}" } } }
${Array.from({ length: extraRoutes }, (_, i) => `  - { provider: svc${i}, name: default, credentials: { headers: { Authorization: "Bearer \${env:BENCH_KEY}" } } }`).join('\n')}
`
