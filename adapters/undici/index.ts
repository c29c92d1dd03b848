/** egress-guard/undici: the guard as an undici dispatcher, for `fetch` in this process. Re-exports only. */
export * from './guardedDispatcher.js'
