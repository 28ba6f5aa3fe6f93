//! Shapes that exist only to describe the API in `index.d.ts`: the values themselves are
//! built by `convert.rs` and `api.rs`. Doc comments here become the typings' JSDoc.

#![allow(dead_code)]

use napi_derive::napi;

/// Where a session's socket is in its life, following Baileys' `connection.update`:
/// `connecting` (handshake), `qr` (waiting for a scan), `open` (logged in),
/// `closed` (closed; a new socket may reconnect), `loggedOut` (401: credentials gone),
/// `replaced` (440: another client took the connection), `restartRequired` (515: make a new
/// socket, normal right after pairing).
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
}

/// What a state-change event reports.
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
}

/// Why and when a session's socket last closed.
#[napi(object)]
pub struct LastDisconnect {
  /// The Boom status code (`lastDisconnect.error.output.statusCode`), or `null` when the
  /// error had none (a decode failure, `end(undefined)`).
  #[napi(ts_type = "number | null")]
  pub code: Option<f64>,
  /// The `DisconnectReason` name of `code` (`'loggedOut'`, `'connectionReplaced'`,
  /// `'restartRequired'`, `'connectionClosed'`, `'connectionLost'`, `'timedOut'`, ...).
  #[napi(ts_type = "string | null")]
  pub reason: Option<String>,
  /// The error's message.
  #[napi(ts_type = "string | null")]
  pub message: Option<String>,
  /// When it closed (epoch ms).
  pub at: f64,
}

/// The logged-in identity, from `socket.authState.creds.me`.
#[napi(object)]
pub struct SessionIdentity {
  /// The phone JID (`...@s.whatsapp.net`), `null` until paired.
  #[napi(ts_type = "string | null")]
  pub id: Option<String>,
  /// The LID (`...@lid`), `null` until the server sends it.
  #[napi(ts_type = "string | null")]
  pub lid: Option<String>,
}

/// The keys of a session's state that `updateSessionState` may set (any other key is kept as
/// custom JSON data; the registry-kept keys are refused).
#[napi(object)]
pub struct SessionStateUpdate {
  /// Creation time (epoch ms).
  pub created_at: f64,
  /// Whether the socket is connected.
  pub is_connected: bool,
  /// The last error message; an `Error` is stored as its message.
  #[napi(ts_type = "string | Error | null")]
  pub error: Option<String>,
  /// The session's status.
  #[napi(ts_type = "SessionStatus | null")]
  pub status: Option<String>,
}

/// A session's state, as `getSessionState` returns it.
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
  pub error: Option<String>,
  /// The status; `null` for a socket registered with `{ track: false }`.
  #[napi(ts_type = "SessionStatus | null")]
  pub status: Option<String>,
  /// Whether the registry follows this socket's events.
  pub tracked: bool,
  /// The last close, or `null` if it never closed.
  #[napi(ts_type = "LastDisconnect | null")]
  pub last_disconnect: Option<LastDisconnect>,
  /// The logged-in identity, `null` until known.
  #[napi(ts_type = "SessionIdentity | null")]
  pub me: Option<SessionIdentity>,
  /// Whether a QR code is waiting to be scanned (the code itself is never stored).
  pub has_qr: bool,
  /// How many times the socket reached `open`.
  pub connects: u32,
  /// How many times the socket closed.
  pub disconnects: u32,
  /// When it last reached `open` (epoch ms), or `null`.
  #[napi(ts_type = "number | null")]
  pub connected_at: Option<f64>,
  /// When it last closed (epoch ms), or `null`.
  #[napi(ts_type = "number | null")]
  pub disconnected_at: Option<f64>,
  /// When the last live message from someone else arrived (`messages.upsert`, `notify`).
  #[napi(ts_type = "number | null")]
  pub last_inbound_at: Option<f64>,
  /// When the last own message was seen (`messages.upsert` with `key.fromMe`).
  #[napi(ts_type = "number | null")]
  pub last_outbound_at: Option<f64>,
  /// How many inbound messages were seen.
  pub messages_in: f64,
  /// How many outbound messages were seen.
  pub messages_out: f64,
  /// The `worker_threads.threadId` of the thread that owns the socket (0: main thread).
  pub thread_id: u32,
}

/// One row of `getStats().activeSessions` (times as ISO-8601 strings).
#[napi(object)]
pub struct SessionSummary {
  pub session_id: String,
  /// ISO-8601.
  pub created_at: String,
  /// ISO-8601.
  pub last_activity: String,
  pub is_connected: bool,
  #[napi(ts_type = "string | null")]
  pub error: Option<String>,
  #[napi(ts_type = "SessionStatus | null")]
  pub status: Option<String>,
}

/// A session with an error, in `getStats().errorSessions`.
#[napi(object)]
pub struct SessionError {
  pub session_id: String,
  pub error: String,
}

/// Sessions per status; `untracked` counts sessions without one.
#[napi(object)]
pub struct StatusCounts {
  pub connecting: u32,
  pub qr: u32,
  pub open: u32,
  pub closed: u32,
  pub logged_out: u32,
  pub replaced: u32,
  pub restart_required: u32,
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
  pub last: Option<String>,
}

/// What `getStats()` returns, for every session of the process.
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
  /// The idle threshold used for `inactiveSessions`.
  pub idle_after_ms: f64,
  /// Socket faults recorded so far.
  pub socket_faults: SocketFaults,
}

/// What `onStateChange` listeners receive.
#[napi(object)]
pub struct StateChangeEvent {
  pub session_id: String,
  /// `registered` (previous: the replaced session's state, if any), `status` (status or
  /// isConnected changed), `removed` (current is `null`), `stuck` (in `connecting` longer
  /// than `stuckAfterMs`).
  #[napi(ts_type = "StateChangeType")]
  pub r#type: String,
  #[napi(ts_type = "SessionState | null")]
  pub previous: Option<SessionState>,
  #[napi(ts_type = "SessionState | null")]
  pub current: Option<SessionState>,
  /// The thread that owns the session's socket.
  pub thread_id: u32,
}

/// One session in a snapshot (what `loadSnapshot` resolves with).
#[napi(object)]
pub struct SavedSession {
  pub session_id: String,
  pub created_at: f64,
  pub last_activity: f64,
  pub is_connected: bool,
  #[napi(ts_type = "string | null")]
  pub error: Option<String>,
  #[napi(ts_type = "SessionStatus | null")]
  pub status: Option<String>,
  #[napi(ts_type = "LastDisconnect | null")]
  pub last_disconnect: Option<LastDisconnect>,
  #[napi(ts_type = "SessionIdentity | null")]
  pub me: Option<SessionIdentity>,
  pub connects: u32,
  pub disconnects: u32,
  #[napi(ts_type = "number | null")]
  pub connected_at: Option<f64>,
  #[napi(ts_type = "number | null")]
  pub disconnected_at: Option<f64>,
  #[napi(ts_type = "number | null")]
  pub last_inbound_at: Option<f64>,
  #[napi(ts_type = "number | null")]
  pub last_outbound_at: Option<f64>,
  pub messages_in: f64,
  pub messages_out: f64,
  /// Keys the bot set with `updateSessionState`.
  #[napi(ts_type = "Record<string, unknown>")]
  pub custom: serde_json::Map<String, serde_json::Value>,
}

/// Options for [`registerSocket`].
#[napi(object)]
pub struct RegisterOptions {
  /// Follow the socket's Baileys events to keep the session's state (default `true`).
  pub track: Option<bool>,
  /// Take the session over from the thread that owns it; that thread ends its socket
  /// (default `false`: registering an id another thread owns throws
  /// `ERR_SESSION_OWNED_BY_OTHER_THREAD`).
  pub takeover: Option<bool>,
}

/// Session id fields read by the function `createSocketWrapper` returns.
#[napi(object)]
pub struct SocketWrapperConfig {
  /// The session id to register the socket under.
  pub session_id: Option<String>,
}

/// Settings for [`configure`]; every field is optional.
#[napi(object)]
pub struct RegistryConfig {
  /// A session with no activity for longer than this is listed in `inactiveSessions`
  /// (default 600000: 10 minutes).
  pub idle_after_ms: Option<f64>,
  /// A session in `connecting` for longer than this emits a `stuck` event (default 60000).
  pub stuck_after_ms: Option<f64>,
}

/// Options for [`waitForState`].
#[napi(object)]
pub struct WaitOptions {
  /// Give up after this many milliseconds (`ERR_WAIT_TIMEOUT`). Without it, waits until the
  /// status is reached, the session is removed, or the status becomes unreachable.
  pub timeout_ms: Option<f64>,
}

/// What [`saveSnapshot`] wrote.
#[napi(object)]
pub struct SnapshotInfo {
  /// The file written.
  pub path: String,
  /// How many sessions it holds.
  pub sessions: u32,
  /// When it was taken (epoch ms).
  pub saved_at: f64,
}
