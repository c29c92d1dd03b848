/** egress-guard: the policy core; adapters are published under their own entry points. */
export * from './core/index.js'
