import type {
  CarriedText,
  Decided,
  Enforcement,
  Explanation,
  ProxyMode,
  RequestFacts,
  RouteTable,
  RouteWarning,
  TunnelDecided,
  Unauthenticated
} from '../../core/index.js'
import type { LoadedPolicy } from '../config/PolicyFile.js'
import type { HandedOut, InjectionSecrets } from './secretBook.js'

// What the guard is to everything that uses it (engines, the pipeline, the decision service, the
// CLI): its interface and the values it hands out. createGuard.ts builds one.

/** Who a proxy request is (docs/spec.md §9). */
export type Authentication =
  /** The policy lists no clients: anyone who reaches the proxy may use it. */
  | { readonly _tag: 'Anonymous' }
  | { readonly _tag: 'Client'; readonly name: string }
  /** Missing, malformed or wrong credentials: 407. */
  | { readonly _tag: 'Refused' }


/** A request decision with its id, and the mode and enforcement it was made under. */
export interface Verdict extends Decided {
  readonly decisionId: string
  readonly mode: ProxyMode
  readonly enforcement: Enforcement
  /** For an injection: the placeholders to swap in its headers, and how to scrub its response (docs/spec.md §13). */
  readonly secrets?: InjectionSecrets
  /** For a request that goes on while the guard knows secrets: the tripwire on its body (docs/spec.md §13). */
  readonly body?: BodyCheck
}

/** The tripwire on a request body as it streams (docs/spec.md §13). */
export interface BodyCheck {
  /** The body's next chunk (a byte string; `last` at its end): the bytes that may go on now, or the verdict that stops the request. */
  readonly next: (chunk: string, last: boolean) => { readonly _tag: 'Go'; readonly send: string } | { readonly _tag: 'Stopped'; readonly verdict: Verdict }
  /** True once the inspected start of the body has gone by: the rest goes on untouched. */
  readonly done: () => boolean
}

/** A tunnel decision with its id, and the mode and enforcement it was made under. */
export interface TunnelVerdict extends TunnelDecided {
  readonly decisionId: string
  readonly mode: ProxyMode
  readonly enforcement: Enforcement
}

/** The guard's counters and gauges, read by the admin listener (docs/spec.md §14). */
export interface GuardStats {
  /** The instance id every record carries. */
  readonly instance: string
  /** Credentials cached now; lookups answered from the cache; resolutions started, and those that failed. */
  readonly credentials: { readonly entries: number; readonly hits: number; readonly resolutions: number; readonly failures: number }
  /** Audit records waiting in the sinks, dropped so far, and whether every sink still takes records. */
  readonly audit: { readonly queued: number; readonly dropped: number; readonly accepting: boolean }
  /** Rate-limit buckets kept (bounded, see rateLimiter.ts). */
  readonly rateLimitBuckets: number
  /** Distinct hosts whose CONNECT was intercepted since the start (counted up to 65,536). */
  readonly interceptedHosts: number
}

/** What a reload did. */
export type ReloadResult =
  | { readonly _tag: 'Reloaded'; readonly mode: ProxyMode; readonly routes: number; readonly warnings: ReadonlyArray<RouteWarning> }
  | { readonly _tag: 'KeptLastGood'; readonly messages: ReadonlyArray<string> }
  /** A reload started later is the one that counts; this one changed nothing. */
  | { readonly _tag: 'Superseded' }

/** The guard: the policy engine with credentials, audit and reload around it. */
export interface Guard {
  /**
   * Decides a request. `carried` are the texts it carries before its body (method, headers, path,
   * query), searched by the tripwire for a known secret bound where it does not belong; the body is
   * searched as it streams, by the verdict's `body`.
   */
  readonly evaluate: (request: RequestFacts, carried?: ReadonlyArray<CarriedText>) => Promise<Verdict>
  /**
   * The same decision as `evaluate`, made at once when it needs no credential resolution (none is
   * needed, or the credentials are cached); undefined when one is needed, and `evaluate` must be
   * awaited instead. Lets an adapter act in the same turn of the event loop.
   */
  readonly evaluateNow: (request: RequestFacts, carried?: ReadonlyArray<CarriedText>) => Verdict | undefined
  /** True when the guard knows a secret (a placeholder, a resolved credential) the tripwire searches requests for. */
  readonly inspects: () => boolean
  /** The placeholders handed out for the variables that hold real keys (`run`, `serve --placeholders`), which the guard swaps and searches for. */
  readonly handOut: (placeholders: ReadonlyArray<HandedOut>) => void
  /** Decides a CONNECT, for `client` when one authenticated it (docs/spec.md §9); a target that names a known secret is refused before anything else. */
  readonly evaluateTunnel: (host: string, port: number, client?: string) => TunnelVerdict
  /**
   * The tripwire on a destination's name, before it is looked up (a plain proxy request's host): a
   * refusal, recorded, when the name carries a known secret; undefined otherwise.
   */
  readonly screenHost: (host: string, port: number, method: string, client?: string) => Verdict | undefined
  /** Who a proxy request is, by its `Proxy-Authorization`: anonymous when the policy lists no clients; tokens compared in constant time. */
  readonly authenticate: (proxyAuthorization: string | ReadonlyArray<string> | undefined) => Authentication
  /** The clients the policy lists, by name. */
  readonly clients: () => ReadonlyArray<string>
  /** Changes whenever the policy does: an authentication made before must be made again. */
  readonly generation: () => number
  /** The fail-closed verdict for a request an adapter could not even describe. */
  readonly failClosed: (request: Partial<RequestFacts>) => Verdict
  /** Refuses (407) and records a request to `host` that did not authenticate to the proxy. */
  readonly refuseUnauthenticated: (host: string) => Unauthenticated
  readonly reload: () => Promise<ReloadResult>
  /** Switches the mode at run time (a mode endpoint, a signal); `undefined` returns to the policy's. */
  readonly setMode: (mode: ProxyMode | undefined) => void
  /** The mode in force: the policy's (after any override), or a client's own. */
  readonly mode: (client?: string) => ProxyMode
  /** How verdicts are carried out: `report` passes what `enforce` would deny, and records it (docs/spec.md §11). */
  readonly enforcement: () => Enforcement
  readonly policy: () => LoadedPolicy
  /** The route table in force: the current policy under the current mode's scope, or a client's own. */
  readonly table: (client?: string) => RouteTable
  /** `explainRoute` on the table in force: the resolution `evaluate` would reach, and each route's part in it. */
  readonly explain: (request: RequestFacts) => Explanation
  /** Audit entries dropped by the sinks so far. */
  readonly dropped: () => number
  /** What the admin listener's metrics read (docs/spec.md §14). */
  readonly stats: () => GuardStats
  readonly close: () => Promise<void>
}
