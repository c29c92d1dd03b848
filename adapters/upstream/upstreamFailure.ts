// What a client is told when the upstream fails (refuses, resets, fails TLS verification): the
// error's code only. Its message can name the internal address that was dialled.

/** An error's code when it is one (`ECONNREFUSED`, `UNABLE_TO_VERIFY_LEAF_SIGNATURE`), else `fallback`; never its message. */
export const upstreamErrorCode = (error: unknown, fallback = 'ERROR'): string => {
  const code = (error as { code?: unknown } | undefined)?.code
  return typeof code === 'string' && /^[A-Z0-9_]{2,60}$/.test(code) ? code : fallback
}

/** The body of the 502 both proxy adapters answer when the upstream failed before any response. */
export const upstreamFailureBody = (code: string): string => `Bad gateway: egress-guard could not complete the request upstream (${code})`
