// Typings of the package entry (index.js). The functions implemented in Rust, and the types
// they use, are declared in binding.d.ts, which napi-rs generates from the Rust doc comments;
// functions implemented in index.js are declared here. __test__/typings.spec.mjs checks that
// the names declared here and in binding.d.ts are exactly what index.js exports.
import type { RegisterOptions, RegistryStats, SessionState, SessionStateUpdate, SocketWrapperConfig, Supervision } from './binding'

export * from './binding'

/**
 * Stores `socket` under `sessionId` and returns the same socket.
 *
 * If the id already has another socket in this thread, the new socket takes its place and
 * then the old one is let go silently: the registry's listeners are removed from it
 * (`ev.off`), its `connection.update` is silenced, and it is ended (`end(undefined)`). If that
 * `end()` registers the id again, that registration is the latest and wins. Registering the
 * socket that is already registered under the id changes nothing.
 * The new session's state starts as `{ createdAt: now, lastActivity: now, isConnected: false,
 * error: null, status: 'connecting' }` (status `null` when not tracked). Unless
 * `{ track: false }`, the registry follows the socket's `connection.update`,
 * `messages.upsert` and `creds.update` events to keep that state current. `{ takeover: true }`
 * moves a session owned by another worker thread here (that thread ends its socket).
 *
 * Throws `ERR_INVALID_SESSION_ID` (TypeError) for an id that is not a non-empty string (or
 * holds a lone surrogate), `ERR_INVALID_SOCKET` (TypeError) for a socket that is not an object,
 * `ERR_INVALID_OPTIONS` (TypeError) for malformed options,
 * `ERR_SESSION_OWNED_BY_OTHER_THREAD` when another worker thread owns the id, and
 * `ERR_SESSION_SUPERVISED` when `superviseSession` supervises the id in this thread.
 */
export declare function registerSocket<T extends object>(sessionId: string, socket: T, options?: RegisterOptions): T

/** The socket registered under `sessionId` in this thread (the very same object), or `null`. */
export declare function getSocket<T = any>(sessionId: string): T | null

/** Whether `sessionId` has a socket in this thread. */
export declare function hasSocket(sessionId: string): boolean

/** How many sockets this thread has registered. */
export declare function getSocketCount(): number

/**
 * A new `Map` of sessionId → socket for this thread, in registration order. It is a copy:
 * changing it does not change the registry.
 */
export declare function getAllSockets<T = any>(): Map<string, T>

/**
 * Removes the socket and its state: the socket is let go silently (the registry's listeners
 * removed, its `connection.update` silenced, ended) and every reference the registry held to
 * it is released. Returns whether there was one. An unknown id (or one owned by another
 * thread) does nothing. If the socket's `end()` registers the id again, that registration
 * stays. A supervised id (`superviseSession`) stops being supervised.
 */
export declare function unregisterSocket(sessionId: string): boolean

/**
 * Unregisters every socket this thread had registered when it was called. They all leave the
 * registry first, then each is let go; a socket registered meanwhile (by an `end()` that
 * reconnects) stays registered, so `clearAll` always ends. Every supervision of this thread
 * (`superviseSession`) stops first.
 */
export declare function clearAll(): void

/**
 * Wraps Baileys' `makeWASocket`: the returned function takes the usual socket config plus
 * `sessionId` (or `auth.sessionId`), creates the socket, registers it (tracked), sets
 * `socket._sessionId` and returns it. Without a session id it throws
 * `ERR_MISSING_SESSION_ID`; a `makeWASocket` that is not a function throws
 * `ERR_INVALID_FACTORY`.
 */
export declare function createSocketWrapper<C extends object, S extends object>(makeWASocket: (config: C) => S): (config: C & SocketWrapperConfig) => S

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

/**
 * The reasons a supervision policy names: Baileys' `DisconnectReason` names (`timedOut` and
 * `connectionLost` share 408: "Timed Out" in the message tells them apart), `unknown` (a close
 * without a status code the policy names: a plain Error, a close the health pass found) and
 * `makeSocketFailed` (`makeSocket` threw, rejected or gave no socket).
 */
export type SupervisionPolicyReason =
  | 'restartRequired' | 'connectionClosed' | 'connectionLost' | 'timedOut' | 'unavailableService'
  | 'badSession' | 'loggedOut' | 'forbidden' | 'multideviceMismatch' | 'connectionReplaced'
  | 'unknown' | 'makeSocketFailed'

/**
 * Exponential backoff with full jitter: before the socket that follows `n` failures in a row,
 * a random wait in `[0, min(maxMs, baseMs * factor^(n-1))]` (with `jitter: 'none'`, that
 * ceiling itself).
 */
export interface SupervisionBackoff {
  /** The first ceiling (ms, 1 to 2^31-1; default 1000). */
  baseMs?: number
  /** How much the ceiling grows per failure (1 to 1000; default 2). */
  factor?: number
  /** The largest ceiling (ms, at least `baseMs`; default 60000, or `baseMs` if larger). */
  maxMs?: number
  /** `'full'` (default): a random wait up to the ceiling; `'none'`: the ceiling itself. */
  jitter?: 'full' | 'none'
}

/**
 * What a supervisor does after a close for one reason: `'now'` (a new socket at once),
 * `'backoff'` (after the policy's backoff), `'stop'` (never another socket), or backoff
 * parameters of its own (missing ones from the policy's `backoff`).
 */
export type SupervisionRule = 'now' | 'backoff' | 'stop' | SupervisionBackoff

/** A supervision policy; every key is optional. Unknown keys throw `ERR_INVALID_OPTIONS`. */
export interface SupervisionPolicy {
  /** The backoff of every reason whose rule is `'backoff'`. */
  backoff?: SupervisionBackoff
  /** Give up after this many failures in a row without a stable open (a positive integer or `Infinity`; default 10). */
  maxAttempts?: number
  /** A socket open at least this long when it closes resets the count of failures (ms; default 30000). */
  stableAfterMs?: number
  /**
   * Rules per reason over the defaults: `restartRequired` `'now'`; `loggedOut`, `forbidden`,
   * `multideviceMismatch`, `connectionReplaced` `'stop'`; every other reason `'backoff'`.
   */
  reasons?: Partial<Record<SupervisionPolicyReason, SupervisionRule>>
}

/** What `makeSocket` is called with. */
export interface MakeSocketContext {
  /** The attempt this socket is: 1 for the first since supervision started, `restart()` or the last stable open. */
  attempt: number
  /** The `lastDisconnect` of the previous socket's close (`{ error, date }`, as Baileys gave it), or `undefined`. */
  lastDisconnect: { error?: unknown, date?: Date } | undefined
}

/** The handle `superviseSession` returns. */
export interface SupervisedSession {
  /** The supervised session's id. */
  readonly sessionId: string
  /**
   * Stops reconnecting and removes the session: its socket is let go silently (as
   * `unregisterSocket`), a pending timer is cleared, a `makeSocket` still pending has its
   * socket ended when it settles. Returns whether it was supervised (a second call does
   * nothing and returns `false`).
   */
  stop(): boolean
  /**
   * One fresh socket now: the current one is let go silently at once, and the new one is made
   * as soon as the old one's websocket has closed (a few milliseconds; at most 2 s), so the
   * server never sees both. The count of attempts starts again (also after a terminal close
   * or giving up). Returns `false` after `stop()`.
   */
  restart(): boolean
  /** The supervision now (after `stop()`: as it was when stopped). */
  readonly supervision: Supervision
}

/**
 * Supervises `sessionId`: calls `makeSocket({ attempt, lastDisconnect })` at once (it returns
 * a socket or a promise of one), registers each socket it gets (tracked), and makes the next
 * one when the policy says so: at once after 515, after an exponential backoff with full
 * jitter after 428, 408, 500, 503 and other closes, never after 401, 403, 411 and (by
 * default) 440, and not after `maxAttempts` failures in a row. A `makeSocket` that throws or
 * rejects is a failed attempt (recorded in `supervision.error`). The session's state shows
 * the supervision (`supervision`), and `onStateChange` hears `reconnecting`, `gaveUp` and
 * `stopped`.
 *
 * While supervised, the id belongs to the supervisor: `registerSocket` and socket wrappers
 * throw `ERR_SESSION_SUPERVISED`; `unregisterSocket`, `clearAll` and a takeover by another
 * thread stop the supervision. Throws `ERR_INVALID_SESSION_ID`, `ERR_INVALID_FACTORY` (a
 * `makeSocket` that is not a function), `ERR_INVALID_OPTIONS` (a policy that does not
 * validate) and `ERR_SESSION_SUPERVISED` (already supervised in this thread).
 */
export declare function superviseSession<S extends object = any>(
  sessionId: string,
  makeSocket: (context: MakeSocketContext) => S | PromiseLike<S>,
  policy?: SupervisionPolicy
): SupervisedSession
