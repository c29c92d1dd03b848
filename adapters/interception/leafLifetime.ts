// How long the proxy's leaf certificates live, shared by the CA that issues them and the adapters
// that keep TLS servers made with them.

/** A day in milliseconds. */
export const DAY = 24 * 60 * 60 * 1000

/** How long a leaf certificate is valid; it is also valid from a day before it is issued (clock skew). */
export const LEAF_VALIDITY_MS = 90 * DAY

/** A leaf this old is issued again on its next use, two months before it expires. */
export const LEAF_REFRESH_MS = 30 * DAY

/** How far the clock may step back (an NTP correction) before what was issued counts as not yet issued. */
const CLOCK_STEP_BACK_MS = 60 * 60 * 1000

/** Whether a leaf (or a server made with one) issued at `issuedAt` is still to be used at `now`. */
export const leafIsFresh = (issuedAt: number, now: number): boolean => now >= issuedAt - CLOCK_STEP_BACK_MS && now - issuedAt < LEAF_REFRESH_MS
