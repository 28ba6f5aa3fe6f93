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
 * `ERR_SESSION_SUPERVISED` when `superviseSession` supervises the id in this thread, and
 * `ERR_CLUSTER_NOT_HELD` while a cluster is connected ({@link connectCluster}) and this node
 * does not hold the id's lease (claim it first).
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
 * stays. A supervised id (`superviseSession`) stops being supervised. With a cluster connected,
 * the session's lease is given up (a new socket for it needs a new claim) and released in Redis
 * in the background.
 */
export declare function unregisterSocket(sessionId: string): boolean

/**
 * Unregisters every socket this thread had registered when it was called. They all leave the
 * registry first, then each is let go; a socket registered meanwhile (by an `end()` that
 * reconnects) stays registered, so `clearAll` always ends. Every supervision of this thread
 * (`superviseSession`) stops first. With a cluster connected, their leases are released as by
 * {@link unregisterSocket}.
 */
export declare function clearAll(): void

/**
 * Wraps Baileys' `makeWASocket`: the returned function takes the usual socket config plus
 * `sessionId` (or `auth.sessionId`), creates the socket, registers it (tracked), sets
 * `socket._sessionId` and returns it. Without a session id it throws
 * `ERR_MISSING_SESSION_ID`; a `makeWASocket` that is not a function throws
 * `ERR_INVALID_FACTORY`. While a cluster is connected, a session this node does not hold
 * throws `ERR_CLUSTER_NOT_HELD` before `makeWASocket` is called.
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

// ---------------------------------------------------------------------------------------------
// Cluster

/** Options of {@link connectCluster}. Times are whole milliseconds. */
export interface ClusterOptions {
  /** `redis://[user:password@]host:port[/db]`. */
  url: string
  /** This node's name in the cluster, unique per process: 1 to 128 characters without `{` or `}`. Default: `${hostname}-${pid}`. */
  nodeId?: string
  /** How long a lease lives in Redis without renewal (300 to 3,600,000). Default 15000. */
  leaseMs?: number
  /** A lease counts as lost this long before it could expire in Redis (the safety margin for clock rates and scheduling delays). Default `leaseMs / 5`. */
  marginMs?: number
  /** Prefix of every key and of the events channel (no `{` or `}`). Default `'bsr'`. */
  prefix?: string
  /** A cluster call that cannot reach Redis within this rejects with `ERR_CLUSTER_UNAVAILABLE` (1 to 60000). Default 2000. */
  opTimeoutMs?: number
  /** How often held leases are renewed. Default `leaseMs / 3`; `renewEveryMs + marginMs` must stay below `leaseMs`. */
  renewEveryMs?: number
  /**
   * After Redis lost its data (a restart without persistence), sessions it no longer knows can
   * be claimed only after this long, so that their owners can re-assert their leases first
   * (claims meanwhile reject with `ERR_CLUSTER_RECOVERING`). Default `leaseMs`; 0 turns it off.
   */
  dataLossGraceMs?: number
  /** How often changed session states are gathered and mirrored to Redis in one batch (a session changed many times in between is written once): lower is fresher, higher costs Redis and this process less. Default 250. */
  mirrorFlushMs?: number
}

/** Options of {@link Cluster.claim}. */
export interface ClaimOptions {
  /** Wait up to this long for the owner to release (or its lease to expire), then claim. */
  waitMs?: number
  /** Ask the owner to let go (it ends its socket and releases), and wait for it: up to `waitMs`, or `leaseMs`. */
  takeover?: boolean
}

/** A lease this node holds. */
export interface ClusterLease {
  sessionId: string
  nodeId: string
  /** The fencing token, as a decimal string: larger than every token issued to an earlier owner of the session. */
  token: string
}

/** Where a session runs, as Redis sees it. */
export interface ClusterPlacement {
  sessionId: string
  /** The node holding the lease. */
  nodeId: string
  /** The lease's fencing token, as a decimal string. */
  token: string
  /** How long the lease lives without another renewal (ms). */
  leaseTtlMs: number
  /** The last state its owner mirrored (what `getSessionState` returns there), or `null`. */
  state: SessionState | null
  /** When that state was written (Redis time, epoch ms), or `null`. */
  updatedAt: number | null
}

/** One live node of the fleet. */
export interface ClusterNode {
  nodeId: string
  /** Sessions it holds (claimed, registered or not). */
  sessions: number
  /** Of those, sessions whose mirrored state says `isConnected`. */
  connected: number
  /** Its last heartbeat (its own clock, epoch ms). */
  lastSeen: number
}

/**
 * `getStats()` for the whole fleet: every session some node mirrored a state for, each row
 * with its `nodeId`; `socketFaults` are this process's. Plus every such state in `sessions`
 * and the live nodes in `nodes`.
 */
export interface ClusterStats extends Omit<RegistryStats, 'activeSessions'> {
  activeSessions: Array<RegistryStats['activeSessions'][number] & { nodeId: string }>
  sessions: Array<SessionState & { sessionId: string, nodeId: string }>
  nodes: ClusterNode[]
}

/** An event of {@link Cluster.onStateChange}. */
export type ClusterEvent =
  /** A node took (`claimed`), gave up (`released`) or put back after a Redis restart (`reasserted`) a lease. */
  | { type: 'claimed' | 'released' | 'reasserted', sessionId: string, nodeId: string, token?: string }
  /** `by` asked `nodeId` (the owner) to let the session go. */
  | { type: 'takeoverRequested', sessionId: string, nodeId: string, token?: string, by: string }
  /** The owner mirrored a new state of the session. */
  | { type: 'state', sessionId: string, nodeId: string, token?: string, state: SessionState | null }
  /** This node lost the lease (its socket was ended): `unreachable` (no renewal in time), `superseded` (another node holds it now), `takeover` (`by` asked for it; released). */
  | { type: 'leaseLost', sessionId: string, nodeId: string, token: string, reason: 'unreachable' | 'superseded' | 'takeover', by?: string }
  /** Releasing a lease in Redis failed (after unregisterSocket / clearAll / a takeover): it expires after `leaseMs` anyway. */
  | { type: 'releaseFailed', sessionId: string, nodeId: string, token: string, code: string, message: string }

/** The process's connection to the cluster (see {@link connectCluster}). */
export interface Cluster {
  /** This node's id. */
  readonly nodeId: string
  /**
   * Takes the session's lease for this node (resolves at once if it holds it already); it is
   * renewed until released. Rejects with `ERR_CLUSTER_HELD` (`err.owner` names the node) when
   * another live node holds it, or with `waitMs` / `takeover` waits for it, then
   * `ERR_CLUSTER_CLAIM_TIMEOUT`; `ERR_CLUSTER_RECOVERING` (`err.retryMs`) shortly after Redis
   * lost its data; `ERR_CLUSTER_UNAVAILABLE`, `ERR_CLUSTER_CLOSED`, `ERR_INVALID_SESSION_ID`,
   * `ERR_INVALID_OPTIONS`.
   */
  claim(sessionId: string, options?: ClaimOptions): Promise<ClusterLease>
  /**
   * Gives the lease up: the session's socket, wherever it is registered in this process, is
   * unregistered and let go silently first (at once in this thread), then the lease is deleted
   * in Redis. Resolves with whether Redis still had it under this node's token. Rejects with
   * `ERR_CLUSTER_NOT_HELD` when this node does not hold it, `ERR_CLUSTER_UNAVAILABLE` when
   * Redis cannot be reached (the lease is given up here anyway and expires there).
   */
  release(sessionId: string): Promise<boolean>
  /** Whether this node holds the session's lease now (local knowledge, no Redis call). */
  holds(sessionId: string): boolean
  /** Where the session runs, with its mirrored state, or `null` when no node holds it. */
  whereIs(sessionId: string): Promise<ClusterPlacement | null>
  /** {@link getStats} for the whole fleet, plus the live nodes. */
  getStats(): Promise<ClusterStats>
  /**
   * Calls `listener` (in this thread) for every cluster event from now on: leases claimed,
   * released, reasserted, takeovers asked, states mirrored by any node, and this node's lost
   * leases. Returns the function that ends the subscription. It does not keep the process
   * alive. A listener that throws is reported as a process warning.
   */
  onStateChange(listener: (event: ClusterEvent) => void): () => void
  /**
   * Releases every lease (their sockets, wherever registered in this process, are
   * unregistered and let go silently first), removes the node from the fleet view and stops
   * its tasks; `registerSocket` no longer checks leases. Calling it again returns the same
   * promise. Rejects with `ERR_CLUSTER_UNAVAILABLE` if Redis could not be reached (everything
   * is stopped anyway; the leases then expire after `leaseMs`).
   */
  close(): Promise<void>
}

/**
 * Connects this process to a cluster on Redis: one connection per process, shared by its
 * worker threads. While connected, `registerSocket` (in any thread) throws
 * `ERR_CLUSTER_NOT_HELD` for an id this node has not claimed; `unregisterSocket` and
 * `clearAll` release the leases of the ids they remove (in the background; a failure is a
 * `releaseFailed` event). When this node loses a lease (Redis unreachable until a safety
 * margin before the lease could expire, another node holds it, or a takeover was asked), the
 * session's socket is ended silently, its status becomes `leaseLost` (it stays registered
 * until unregistered or replaced), and `onStateChange` listeners receive a `leaseLost` event.
 * The state of each held session is mirrored to Redis in batches.
 *
 * Rejects with `ERR_CLUSTER_OPTIONS` (TypeError) for malformed options,
 * `ERR_CLUSTER_CONNECT` when Redis cannot be reached or refuses (wrong password, not a Redis
 * server), `ERR_CLUSTER_ALREADY_CONNECTED` when this process already has a cluster.
 */
export declare function connectCluster(options: ClusterOptions): Promise<Cluster>

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
