// How long the proxy's leaf certificates live, shared by the CA that issues them and the adapters
// that keep TLS servers made with them.

const DAY = 24 * 60 * 60 * 1000

/** How long a leaf certificate is valid (from a day before it is issued, for clock skew). */
export const LEAF_VALIDITY_MS = 90 * DAY

/** A leaf this old is issued again on its next use, two months before it expires. */
export const LEAF_REFRESH_MS = 30 * DAY

/** Whether a leaf issued at `issuedAt` is still to be used at `now` (false once the clock went back past it). */
export const leafIsFresh = (issuedAt: number, now: number): boolean => now >= issuedAt && now - issuedAt < LEAF_REFRESH_MS
