// Typings of the package entry (index.js). The functions implemented in Rust, and the types
// they use, are declared in binding.d.ts, which napi-rs generates from the Rust doc comments;
// functions implemented in index.js are declared here. __test__/typings.spec.mjs checks that
// the names declared here and in binding.d.ts are exactly what index.js exports.
export * from './binding'

import type { RegistryStats, SessionState, SessionStateUpdate } from './binding'

/**
 * Merges every own key of `updates` into the session's state and sets `lastActivity` to now.
 * Keys the registry does not know are kept (as JSON data). An unknown id does nothing.
 *
 * Throws `ERR_INVALID_STATE_UPDATE` when `updates` is not an object,
 * `ERR_INVALID_STATE_VALUE` for a value of the wrong type (`isConnected` must be a boolean,
 * `error` a string/null/Error, `status` a known status or null; functions, symbols and
 * bigints are not data), `ERR_FORBIDDEN_STATE_KEY` for `__proto__`, `constructor` or
 * `prototype` (at any depth), `ERR_READ_ONLY_STATE_KEY` for keys only the registry sets, and
 * `ERR_STATE_TOO_LARGE` (RangeError) past a limit: objects nested 64 deep, 100,000 values,
 * a key of 4 KiB, a string of 16 MiB, 32 MiB of keys and strings in all.
 * Nothing is changed when it throws.
 */
export declare function updateSessionState<T extends object = {}>(sessionId: string, updates: SessionStateUpdate & T): void

/** The session's state as a new plain object, or `null`. Answers for every thread. */
export declare function getSessionState<T extends object = Record<string, unknown>>(sessionId: string): (SessionState & T) | null

/** Every session of the process as `{ [sessionId]: state }`, in registration order. */
export declare function getAllSessions(): Record<string, SessionState>

/**
 * Statistics for the whole process, shaped as socket-factory.js's `getStats()` plus
 * `byStatus`, `idleAfterMs` and `socketFaults`.
 */
export declare function getStats(): RegistryStats
