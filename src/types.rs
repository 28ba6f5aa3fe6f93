//! Shapes that exist only to describe the API in `index.d.ts`: the values themselves are
//! built by `convert.rs` and `api.rs`. Doc comments here become the typings' JSDoc.
//!
//! Conventions, so the generated typings say exactly what the values hold:
//! - a key that is always present but may be `null` is a non-`Option` field with
//!   `#[napi(ts_type = "... | null")]`: napi-rs writes `key: T | null`, never `key?:`;
//! - an `Option` field (`key?: T`) is only for what the caller may leave out (options);
//! - `#[napi(string_enum)]` becomes a string-literal union because the build passes
//!   `--no-const-enum` (also set as `napi.constEnum: false` in package.json).
//!
//! None of these types is used at run time: the Rust field types only have to compile.

#![allow(dead_code)]

use napi_derive::napi;

/// Where a session's socket is in its life, following Baileys' `connection.update`:
/// `connecting` (handshake), `qr` (waiting for a scan), `open` (logged in),
/// `closed` (closed; a new socket may reconnect), `loggedOut` (401: credentials gone),
/// `replaced` (440: another client took the connection), `restartRequired` (515: make a new
/// socket, normal right after pairing), `leaseLost` (ended by the registry: this node lost, or
/// was asked to give up, the session's cluster lease).
#[napi(string_enum)]
pub enum SessionStatus {
  #[napi(value = "connecting")]
  Connecting,
  #[napi(value = "qr")]
  Qr,
  #[napi(value = "open")]
  Open,
  #[napi(value = "closed")]
  Closed,
  #[napi(value = "loggedOut")]
  LoggedOut,
  #[napi(value = "replaced")]
  Replaced,
  #[napi(value = "restartRequired")]
  RestartRequired,
  #[napi(value = "leaseLost")]
  LeaseLost,
}

/// What a state-change event reports: `registered`, `status` (status or `isConnected`
/// changed), `removed`, `stuck` (in `connecting` longer than `stuckAfterMs`), `leaseLost`
/// (this node lost, or was asked to give up, the session's cluster lease: its socket was
/// ended), and for a supervised session (`superviseSession`) `reconnecting` (a new socket
/// follows after `delayMs`), `gaveUp` (`maxAttempts` failures in a row) and `stopped`.
#[napi(string_enum)]
pub enum StateChangeType {
  #[napi(value = "registered")]
  Registered,
  #[napi(value = "status")]
  Status,
  #[napi(value = "removed")]
  Removed,
  #[napi(value = "stuck")]
  Stuck,
  #[napi(value = "leaseLost")]
  LeaseLost,
  #[napi(value = "reconnecting")]
  Reconnecting,
  #[napi(value = "gaveUp")]
  GaveUp,
  #[napi(value = "stopped")]
  Stopped,
}

/// The stable `code` of every error the registry throws (or rejects a promise with); match
/// on it, never on the message. Errors for a value of the wrong type are `TypeError`s
/// (`ERR_INVALID_*`, `ERR_FORBIDDEN_STATE_KEY`, `ERR_READ_ONLY_STATE_KEY`,
/// `ERR_MISSING_SESSION_ID`), a state update over a size limit a `RangeError`
/// (`ERR_STATE_TOO_LARGE`), the others plain `Error`s. An exception thrown by the caller's own
/// code (a getter, a Proxy trap, `toJSON`, the `makeWASocket` factory) passes through as it
/// is, without a `code`.
#[napi(string_enum)]
pub enum RegistryErrorCode {
  /// The session id is not a non-empty string.
  #[napi(value = "ERR_INVALID_SESSION_ID")]
  InvalidSessionId,
  /// The socket is not an object.
  #[napi(value = "ERR_INVALID_SOCKET")]
  InvalidSocket,
  /// An options object (`registerSocket`, `configure`, `waitForState`) or a snapshot path
  /// is malformed.
  #[napi(value = "ERR_INVALID_OPTIONS")]
  InvalidOptions,
  /// `updateSessionState` got something other than a plain object.
  #[napi(value = "ERR_INVALID_STATE_UPDATE")]
  InvalidStateUpdate,
  /// A state value has the wrong type for its key, or is not JSON data.
  #[napi(value = "ERR_INVALID_STATE_VALUE")]
  InvalidStateValue,
  /// `__proto__`, `constructor` or `prototype` in a state update (at any depth).
  #[napi(value = "ERR_FORBIDDEN_STATE_KEY")]
  ForbiddenStateKey,
  /// A state key that only the registry sets.
  #[napi(value = "ERR_READ_ONLY_STATE_KEY")]
  ReadOnlyStateKey,
  /// A state update over a limit on size or depth (nesting depth 64, 100,000 values, keys of
  /// 4 KiB, strings of 16 MiB, 32 MiB of keys and strings in all).
  #[napi(value = "ERR_STATE_TOO_LARGE")]
  StateTooLarge,
  /// Another worker thread owns the session and `takeover` was not asked for.
  #[napi(value = "ERR_SESSION_OWNED_BY_OTHER_THREAD")]
  SessionOwnedByOtherThread,
  /// The function from `createSocketWrapper` was called without a session id.
  #[napi(value = "ERR_MISSING_SESSION_ID")]
  MissingSessionId,
  /// `createSocketWrapper` got a `makeWASocket` that is not a function.
  #[napi(value = "ERR_INVALID_FACTORY")]
  InvalidFactory,
  /// `onStateChange` got a listener that is not a function.
  #[napi(value = "ERR_INVALID_LISTENER")]
  InvalidListener,
  /// `waitForState` on an unknown session.
  #[napi(value = "ERR_SESSION_NOT_FOUND")]
  SessionNotFound,
  /// `waitForState` ran out of time.
  #[napi(value = "ERR_WAIT_TIMEOUT")]
  WaitTimeout,
  /// The session was removed while `waitForState` waited on it.
  #[napi(value = "ERR_SESSION_REMOVED")]
  SessionRemoved,
  /// The session reached a status from which the awaited one cannot follow.
  #[napi(value = "ERR_STATE_UNREACHABLE")]
  StateUnreachable,
  /// The snapshot file does not exist.
  #[napi(value = "ERR_SNAPSHOT_NOT_FOUND")]
  SnapshotNotFound,
  /// A snapshot file could not be read or written, or its path names something other than a
  /// regular file (a directory, FIFO, socket, device, or a symbolic-link loop).
  #[napi(value = "ERR_SNAPSHOT_IO")]
  SnapshotIo,
  /// A snapshot file is not valid JSON of the expected shape.
  #[napi(value = "ERR_SNAPSHOT_CORRUPT")]
  SnapshotCorrupt,
  /// A snapshot file has a `version` this build does not read.
  #[napi(value = "ERR_SNAPSHOT_VERSION")]
  SnapshotVersion,
  /// A snapshot is larger than 256 MiB (`saveSnapshot` writes nothing, `loadSnapshot` reads
  /// no further).
  #[napi(value = "ERR_SNAPSHOT_TOO_LARGE")]
  SnapshotTooLarge,
  /// `registerSocket` (or a socket wrapper) for a session that `superviseSession` supervises
  /// in this thread, or `superviseSession` for one it already supervises: stop the
  /// supervision first (`handle.stop()` or `unregisterSocket`).
  #[napi(value = "ERR_SESSION_SUPERVISED")]
  SessionSupervised,
  /// `connectCluster` options are malformed (URL, node id, prefix, timings).
  #[napi(value = "ERR_CLUSTER_OPTIONS")]
  ClusterOptions,
  /// `connectCluster` could not reach Redis: refused, unreachable, wrong password, or the
  /// server does not speak the Redis protocol.
  #[napi(value = "ERR_CLUSTER_CONNECT")]
  ClusterConnect,
  /// This process already has a cluster connection (one per process, shared by its threads).
  #[napi(value = "ERR_CLUSTER_ALREADY_CONNECTED")]
  ClusterAlreadyConnected,
  /// A cluster call could not reach Redis within `opTimeoutMs` (the call was not waited out).
  #[napi(value = "ERR_CLUSTER_UNAVAILABLE")]
  ClusterUnavailable,
  /// Another live node holds the session's lease; `err.owner` names it.
  #[napi(value = "ERR_CLUSTER_HELD")]
  ClusterHeld,
  /// `claim` with `waitMs` or `takeover` ran out of time; `err.owner` names the holder.
  #[napi(value = "ERR_CLUSTER_CLAIM_TIMEOUT")]
  ClusterClaimTimeout,
  /// This node does not hold the session's lease: `registerSocket` while a cluster is
  /// connected, or `release` of a session not held.
  #[napi(value = "ERR_CLUSTER_NOT_HELD")]
  ClusterNotHeld,
  /// The cluster connection was closed.
  #[napi(value = "ERR_CLUSTER_CLOSED")]
  ClusterClosed,
  /// Redis lost its data less than a lease ago: the session may still run on its old owner;
  /// `err.retryMs` says when it can be claimed.
  #[napi(value = "ERR_CLUSTER_RECOVERING")]
  ClusterRecovering,
  /// A Node-API call failed where it should not (a bug, or the thread is shutting down).
  #[napi(value = "ERR_INTERNAL")]
  Internal,
  /// Thrown by the package's entry point (`index.js`) at import time when no native binary
  /// for this platform could be loaded; the message says what to install or build.
  #[napi(value = "ERR_NATIVE_BINDING_NOT_FOUND")]
  NativeBindingNotFound,
}

/// Why and when a session's socket last closed. Every key is always present.
#[napi(object)]
pub struct LastDisconnect {
  /// The Boom status code (`lastDisconnect.error.output.statusCode`: 401, 408, 428, 440,
  /// 515, ...), or `null` when the error had none (a decode failure, `end(undefined)`).
  #[napi(ts_type = "number | null")]
  pub code: f64,
  /// The name Baileys' `DisconnectReason` gives `code` (`408` is `timedOut` when the message
  /// says "Timed Out", else `connectionLost`), or `null` for a code it does not name.
  #[napi(
    ts_type = "'connectionClosed' | 'connectionLost' | 'timedOut' | 'connectionReplaced' | 'loggedOut' | 'badSession' | 'restartRequired' | 'multideviceMismatch' | 'forbidden' | 'unavailableService' | null"
  )]
  pub reason: String,
  /// The error's message, or `null` when the socket closed without an error.
  #[napi(ts_type = "string | null")]
  pub message: String,
  /// When it closed (epoch ms).
  pub at: f64,
}

/// The logged-in identity, from `socket.authState.creds.me`. Both keys are always present.
#[napi(object)]
pub struct SessionIdentity {
  /// The phone JID (`...@s.whatsapp.net`), `null` until paired.
  #[napi(ts_type = "string | null")]
  pub id: String,
  /// The LID (`...@lid`), `null` until the server sends it.
  #[napi(ts_type = "string | null")]
  pub lid: String,
}

/// What `updateSessionState` accepts besides the bot's own keys (which it keeps as JSON data:
/// strings, numbers, booleans, `null`, arrays and plain objects). The keys typed `never` are
/// kept by the registry: setting one throws `ERR_READ_ONLY_STATE_KEY`. `lastActivity` is not
/// settable either: every update sets it to now.
#[napi(object)]
pub struct SessionStateUpdate {
  /// Creation time (epoch ms, a finite number).
  pub created_at: Option<f64>,
  /// Whether the socket is connected.
  pub is_connected: Option<bool>,
  /// The last error: a message, `null` to clear it, or an `Error` (its message is stored).
  #[napi(ts_type = "string | Error | null")]
  pub error: Option<String>,
  /// The session's status, or `null` to clear it.
  #[napi(ts_type = "SessionStatus | null")]
  pub status: Option<String>,
  /// Kept by the registry.
  #[napi(ts_type = "never")]
  pub thread_id: Option<bool>,
  /// Kept by the registry.
  #[napi(ts_type = "never")]
  pub tracked: Option<bool>,
  /// Kept by the registry.
  #[napi(ts_type = "never")]
  pub last_disconnect: Option<bool>,
  /// Kept by the registry.
  #[napi(ts_type = "never")]
  pub me: Option<bool>,
  /// Kept by the registry.
  #[napi(ts_type = "never")]
  pub has_qr: Option<bool>,
  /// Kept by the registry.
  #[napi(ts_type = "never")]
  pub connects: Option<bool>,
  /// Kept by the registry.
  #[napi(ts_type = "never")]
  pub disconnects: Option<bool>,
  /// Kept by the registry.
  #[napi(ts_type = "never")]
  pub connected_at: Option<bool>,
  /// Kept by the registry.
  #[napi(ts_type = "never")]
  pub disconnected_at: Option<bool>,
  /// Kept by the registry.
  #[napi(ts_type = "never")]
  pub last_inbound_at: Option<bool>,
  /// Kept by the registry.
  #[napi(ts_type = "never")]
  pub last_outbound_at: Option<bool>,
  /// Kept by the registry.
  #[napi(ts_type = "never")]
  pub messages_in: Option<bool>,
  /// Kept by the registry.
  #[napi(ts_type = "never")]
  pub messages_out: Option<bool>,
  /// Kept by the registry (`superviseSession`).
  #[napi(ts_type = "never")]
  pub supervision: Option<bool>,
}

/// A session's state, as `getSessionState` returns it (a new plain object each call; the
/// bot's own keys from `updateSessionState` are on it too). Every key below is always
/// present.
#[napi(object)]
pub struct SessionState {
  /// When the socket was registered (epoch ms, as `Date.now()` gives).
  pub created_at: f64,
  /// The last activity: registration, any state update, event or message (epoch ms).
  pub last_activity: f64,
  /// Whether the socket is connected (`open`).
  pub is_connected: bool,
  /// The last error message (a close's error message, or what the bot set), else `null`.
  #[napi(ts_type = "string | null")]
  pub error: String,
  /// The status; `null` for a socket registered with `{ track: false }`.
  #[napi(ts_type = "SessionStatus | null")]
  pub status: String,
  /// Whether the registry follows this socket's events.
  pub tracked: bool,
  /// The last close, or `null` if it never closed.
  #[napi(ts_type = "LastDisconnect | null")]
  pub last_disconnect: String,
  /// The logged-in identity, `null` until known.
  #[napi(ts_type = "SessionIdentity | null")]
  pub me: String,
  /// Whether a QR code is waiting to be scanned (the code itself is never stored).
  pub has_qr: bool,
  /// How many times the socket reached `open`.
  pub connects: u32,
  /// How many times the socket closed.
  pub disconnects: u32,
  /// When it last reached `open` (epoch ms), or `null`.
  #[napi(ts_type = "number | null")]
  pub connected_at: f64,
  /// When it last closed (epoch ms), or `null`.
  #[napi(ts_type = "number | null")]
  pub disconnected_at: f64,
  /// When the last live message from someone else arrived (`messages.upsert`, `notify`;
  /// epoch ms), or `null`.
  #[napi(ts_type = "number | null")]
  pub last_inbound_at: f64,
  /// When the last own message was seen (`messages.upsert` with `key.fromMe`; epoch ms), or
  /// `null`.
  #[napi(ts_type = "number | null")]
  pub last_outbound_at: f64,
  /// How many inbound messages were seen.
  pub messages_in: f64,
  /// How many outbound messages were seen.
  pub messages_out: f64,
  /// The `worker_threads.threadId` of the thread that owns the socket (0: main thread).
  pub thread_id: u32,
  /// The supervision of a session made by `superviseSession`, else `null`.
  #[napi(ts_type = "Supervision | null")]
  pub supervision: String,
}

/// Where a supervised session's supervision is (`getSessionState(id).supervision`,
/// `handle.supervision`). Every key is always present.
#[napi(object)]
pub struct Supervision {
  /// `running` (a socket is being made, or is registered and not closed), `waiting` (for the
  /// next attempt), `stopped` (a terminal close, `stop()`, `unregisterSocket`, `clearAll` or
  /// a takeover by another thread), `gaveUp` (`maxAttempts` failures in a row; it stays
  /// `gaveUp` through a later `stop()`, `unregisterSocket` or `clearAll`, which find nothing
  /// left to stop).
  #[napi(ts_type = "'running' | 'waiting' | 'stopped' | 'gaveUp'")]
  pub state: String,
  /// The attempt of the current socket (or of the next one, while waiting): 1 for the first
  /// socket since supervision started, `restart()` or the last stable open.
  pub attempt: u32,
  /// When the next attempt is due (epoch ms) while `waiting`, else `null`.
  #[napi(ts_type = "number | null")]
  pub next_attempt_at: f64,
  /// Why the last socket failed (a `DisconnectReason` name, `unknown` for a close without
  /// one, `makeSocketFailed`), or why supervision stopped (`stop`, `unregistered`,
  /// `clearAll`, `takeover`, `ownedByOtherThread`); `null` before any failure.
  #[napi(
    ts_type = "'restartRequired' | 'connectionClosed' | 'connectionLost' | 'timedOut' | 'unavailableService' | 'badSession' | 'loggedOut' | 'forbidden' | 'multideviceMismatch' | 'connectionReplaced' | 'unknown' | 'makeSocketFailed' | 'stop' | 'unregistered' | 'clearAll' | 'takeover' | 'ownedByOtherThread' | 'notHeld' | 'leaseLost' | null"
  )]
  pub reason: String,
  /// The last failure's error message (a close's, or what `makeSocket` threw), or `null`.
  #[napi(ts_type = "string | null")]
  pub error: String,
}

/// One row of `getStats().activeSessions` (times as ISO-8601 strings). Every key is always
/// present.
#[napi(object)]
pub struct SessionSummary {
  /// The session id.
  pub session_id: String,
  /// When the socket was registered (ISO-8601, e.g. `2025-01-31T12:00:00.000Z`).
  pub created_at: String,
  /// The last activity (ISO-8601).
  pub last_activity: String,
  /// Whether the socket is connected (`open`).
  pub is_connected: bool,
  /// The last error message, or `null`.
  #[napi(ts_type = "string | null")]
  pub error: String,
  /// The status; `null` for a socket registered with `{ track: false }`.
  #[napi(ts_type = "SessionStatus | null")]
  pub status: String,
}

/// A session with an error, in `getStats().errorSessions`.
#[napi(object)]
pub struct SessionError {
  /// The session id.
  pub session_id: String,
  /// Its error message (never empty).
  pub error: String,
}

/// How many sessions have each status; `untracked` counts sessions without one (registered
/// with `{ track: false }`). The counts add up to `totalSessions`.
#[napi(object)]
pub struct StatusCounts {
  /// Sessions in `connecting`.
  pub connecting: u32,
  /// Sessions waiting for a QR scan.
  pub qr: u32,
  /// Sessions logged in.
  pub open: u32,
  /// Sessions closed (may reconnect).
  pub closed: u32,
  /// Sessions logged out (401).
  pub logged_out: u32,
  /// Sessions replaced by another client (440).
  pub replaced: u32,
  /// Sessions that need a new socket (515).
  pub restart_required: u32,
  /// Sessions ended because this node lost their cluster lease.
  pub lease_lost: u32,
  /// Sessions the registry does not track.
  pub untracked: u32,
}

/// Faults of sockets seen by the registry (a socket that threw from `ev.on`, `ev.off` or
/// `end()`, or had no `ev`): recorded, never thrown.
#[napi(object)]
pub struct SocketFaults {
  /// How many since the process started.
  pub count: f64,
  /// The last one, or `null`.
  #[napi(ts_type = "string | null")]
  pub last: String,
}

/// What `getStats()` returns, for every session of the process: the shape of
/// socket-factory.js's `getStats()` plus `byStatus`, `idleAfterMs` and `socketFaults`.
#[napi(object)]
pub struct RegistryStats {
  /// How many sessions are registered.
  pub total_sessions: u32,
  /// One entry per session, in registration order.
  pub active_sessions: Vec<SessionSummary>,
  /// Ids of sessions with no activity for longer than `idleAfterMs`.
  pub inactive_sessions: Vec<String>,
  /// Sessions whose `error` is set.
  pub error_sessions: Vec<SessionError>,
  /// Ids of sessions whose `isConnected` is true.
  pub connected_sessions: Vec<String>,
  /// Ids of sessions whose `isConnected` is false.
  pub disconnected_sessions: Vec<String>,
  /// Sessions per status.
  pub by_status: StatusCounts,
  /// The idle threshold used for `inactiveSessions` (ms).
  pub idle_after_ms: f64,
  /// Socket faults recorded so far.
  pub socket_faults: SocketFaults,
}

/// What `onStateChange` listeners receive.
#[napi(object)]
pub struct StateChangeEvent {
  /// The session that changed.
  pub session_id: String,
  /// `registered` (`previous`: the replaced session's state, or `null`), `status` (status or
  /// isConnected changed), `removed` (`current` is `null`), `stuck` (in `connecting` longer
  /// than `stuckAfterMs`).
  #[napi(ts_type = "StateChangeType")]
  pub r#type: String,
  /// The state before the change, or `null` (a new session).
  #[napi(ts_type = "SessionState | null")]
  pub previous: String,
  /// The state after the change, or `null` (removed).
  #[napi(ts_type = "SessionState | null")]
  pub current: String,
  /// The thread that owns the session's socket (for a supervision event: the supervising
  /// thread).
  pub thread_id: u32,
  /// Supervision events only: the attempt the next socket will be (`reconnecting`), or the
  /// last one's (`gaveUp`, `stopped`).
  pub attempt: Option<u32>,
  /// `reconnecting` only: the wait before the next socket (ms; 0: at once). `null` for
  /// `gaveUp` and `stopped`.
  #[napi(ts_type = "number | null")]
  pub delay_ms: Option<f64>,
  /// Why. `leaseLost`: `unreachable` (Redis did not answer in time), `superseded` (another
  /// node holds it now) or `takeover` (another node asked for it, and the lease is released).
  /// Supervision events: see `Supervision.reason`.
  #[napi(
    ts_type = "'unreachable' | 'superseded' | 'takeover' | 'restartRequired' | 'connectionClosed' | 'connectionLost' | 'timedOut' | 'unavailableService' | 'badSession' | 'loggedOut' | 'forbidden' | 'multideviceMismatch' | 'connectionReplaced' | 'unknown' | 'makeSocketFailed' | 'stop' | 'unregistered' | 'clearAll' | 'ownedByOtherThread' | 'notHeld' | 'leaseLost' | null"
  )]
  pub reason: Option<String>,
  /// `leaseLost` only: the fencing token of the lost lease, as a decimal string.
  pub token: Option<String>,
  /// Supervision events only: the last failure's error message, or `null`.
  #[napi(ts_type = "string | null")]
  pub error: Option<String>,
}

/// One session in a snapshot (what `loadSnapshot` resolves with). Every key is always
/// present.
#[napi(object)]
pub struct SavedSession {
  /// The session id.
  pub session_id: String,
  /// When the socket was registered (epoch ms).
  pub created_at: f64,
  /// The last activity (epoch ms).
  pub last_activity: f64,
  /// Whether the socket was connected when the snapshot was taken.
  pub is_connected: bool,
  /// The last error message, or `null`.
  #[napi(ts_type = "string | null")]
  pub error: String,
  /// The status, or `null` for an untracked session.
  #[napi(ts_type = "SessionStatus | null")]
  pub status: String,
  /// The last close, or `null`.
  #[napi(ts_type = "LastDisconnect | null")]
  pub last_disconnect: String,
  /// The logged-in identity, or `null`.
  #[napi(ts_type = "SessionIdentity | null")]
  pub me: String,
  /// How many times the socket reached `open`.
  pub connects: u32,
  /// How many times the socket closed.
  pub disconnects: u32,
  /// When it last reached `open` (epoch ms), or `null`.
  #[napi(ts_type = "number | null")]
  pub connected_at: f64,
  /// When it last closed (epoch ms), or `null`.
  #[napi(ts_type = "number | null")]
  pub disconnected_at: f64,
  /// When the last inbound message arrived (epoch ms), or `null`.
  #[napi(ts_type = "number | null")]
  pub last_inbound_at: f64,
  /// When the last own message was seen (epoch ms), or `null`.
  #[napi(ts_type = "number | null")]
  pub last_outbound_at: f64,
  /// How many inbound messages were seen.
  pub messages_in: f64,
  /// How many outbound messages were seen.
  pub messages_out: f64,
  /// Keys the bot set with `updateSessionState`.
  #[napi(ts_type = "Record<string, unknown>")]
  pub custom: serde_json::Map<String, serde_json::Value>,
}

/// Options for `registerSocket`.
#[napi(object)]
pub struct RegisterOptions {
  /// Follow the socket's Baileys events to keep the session's state (default `true`).
  pub track: Option<bool>,
  /// Take the session over from the thread that owns it; that thread ends its socket
  /// (default `false`: registering an id another thread owns throws
  /// `ERR_SESSION_OWNED_BY_OTHER_THREAD`).
  pub takeover: Option<bool>,
}

/// The session id fields read by the function `createSocketWrapper` returns: `sessionId`,
/// or else `auth.sessionId` (a non-empty string; without either it throws
/// `ERR_MISSING_SESSION_ID`).
#[napi(object)]
pub struct SocketWrapperConfig {
  /// The session id to register the socket under.
  pub session_id: Option<String>,
}

/// Settings for `configure`; every field is optional.
#[napi(object)]
pub struct RegistryConfig {
  /// A session with no activity for longer than this is listed in `inactiveSessions`
  /// (ms >= 1; default 600000: 10 minutes).
  pub idle_after_ms: Option<f64>,
  /// A session in `connecting` for longer than this emits a `stuck` event (ms >= 1; default
  /// 60000).
  pub stuck_after_ms: Option<f64>,
}

/// Options for `waitForState`.
#[napi(object)]
pub struct WaitOptions {
  /// Give up after this many milliseconds (`ERR_WAIT_TIMEOUT`). Without it, waits until the
  /// status is reached, the session is removed, or the status becomes unreachable.
  pub timeout_ms: Option<f64>,
}

/// What `saveSnapshot` wrote.
#[napi(object)]
pub struct SnapshotInfo {
  /// The file written.
  pub path: String,
  /// How many sessions it holds.
  pub sessions: u32,
  /// When it was taken (epoch ms).
  pub saved_at: f64,
}
