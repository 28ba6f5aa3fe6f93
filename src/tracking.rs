//! What a tracked socket's events do to its record, and the count of socket faults.
//!
//! The listeners themselves are small JavaScript closures (index.js): they read the few
//! primitives of an event (a `connection.update`'s connection, status code, error message and
//! whether a QR code is waiting; a `messages.upsert`'s inbound and outbound counts; the
//! identity of `creds.update` and `socket.authState.creds.me`) and hand them over here in one
//! call. Each call names the generation its listener was attached for, so an event from a
//! socket that has since been replaced (in any thread) changes nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::events::{self, ChangeKind};
use crate::js;
use registry_core::state::{Connection, ConnectionUpdate, Me, SessionState, Status, Transition};
use registry_core::table::{self, Generation};

static SOCKET_FAULTS: AtomicU64 = AtomicU64::new(0);
static LAST_SOCKET_FAULT: Mutex<Option<String>> = Mutex::new(None);

/// Records that a socket threw (or lacked something) while the registry handled it.
pub fn record_fault(session_id: &str, what: &str, message: &str) -> String {
  let text = format!("socket '{session_id}': {what}: {message}");
  SOCKET_FAULTS.fetch_add(1, Ordering::Relaxed);
  *LAST_SOCKET_FAULT.lock().unwrap_or_else(|p| p.into_inner()) = Some(text.clone());
  text
}

/// How many socket faults were recorded in this process, and the last one.
pub fn faults() -> (u64, Option<String>) {
  (
    SOCKET_FAULTS.load(Ordering::Relaxed),
    LAST_SOCKET_FAULT
      .lock()
      .unwrap_or_else(|p| p.into_inner())
      .clone(),
  )
}

/// Applies `f` to the record of `id` at `generation` and tells subscribers when status or
/// `isConnected` changed.
fn change(
  id: &str,
  generation: Generation,
  f: impl FnOnce(&mut SessionState) -> Option<Transition>,
) {
  let applied = table::update(id, Some(generation), events::wanted, |r| {
    ((), f(&mut r.state))
  });
  if let Some((before, after)) = applied.and_then(|a| a.change) {
    events::emit(id, ChangeKind::Status, Some(before), Some(after));
  }
}

fn me_of(id: Option<String>, lid: Option<String>) -> Option<Me> {
  (id.is_some() || lid.is_some()).then_some(Me { id, lid })
}

/// A `connection.update`: `connection` is 0 (none), 1 `connecting`, 2 `open`, 3 `close`;
/// `disconnect` says whether `lastDisconnect` was an object, with its error's status code and
/// message; `me` is the live identity read when the connection opened.
#[allow(clippy::too_many_arguments)]
pub fn connection_update(
  id: &str,
  generation: Generation,
  connection: u32,
  qr: bool,
  disconnect: bool,
  code: Option<u32>,
  message: Option<String>,
  me: (Option<String>, Option<String>),
) {
  let update = ConnectionUpdate {
    connection: match connection {
      1 => Some(Connection::Connecting),
      2 => Some(Connection::Open),
      3 => Some(Connection::Close),
      _ => None,
    },
    qr,
    last_disconnect: disconnect.then_some((code, message)),
  };
  let me = me_of(me.0, me.1);
  let now = js::now_ms();
  change(id, generation, |state| {
    let t = state.apply_connection_update(&update, now);
    if let Some(me) = me {
      state.apply_me(me, now);
    }
    Some(t)
  });
}

/// A `messages.upsert`, counted by the listener.
pub fn messages(id: &str, generation: Generation, inbound: u32, outbound: u32) {
  quiet_change(id, generation, |state, now| {
    state.apply_messages(inbound, outbound, now)
  });
}

/// The identity from a `creds.update`.
pub fn me(id: &str, generation: Generation, me_id: Option<String>, lid: Option<String>) {
  if let Some(me) = me_of(me_id, lid) {
    quiet_change(id, generation, |state, now| {
      state.apply_me(me, now);
    });
  }
}

/// Applies `f` (given the time now) to the session at `generation`: a change that never
/// touches status or isConnected, so no event is asked for and no copy is made.
fn quiet_change(id: &str, generation: Generation, f: impl FnOnce(&mut SessionState, f64)) {
  let now = js::now_ms();
  table::update(
    id,
    Some(generation),
    || false,
    |r| {
      f(&mut r.state, now);
      ((), None)
    },
  );
}

/// The socket's listeners could not be attached: recorded as a fault, and the session reads
/// untracked.
pub fn untracked(id: &str, generation: Generation, reason: &str) {
  let text = record_fault(id, "tracking disabled", reason);
  change(id, generation, |state| Some(state.mark_untracked(text)));
}

/// What a session closed by the health pass says in `lastDisconnect.message` and `error`.
const UNHEARD_CLOSE: &str =
  "the socket's websocket closed without a connection.update reaching the registry (were its listeners removed?)";

/// Whether the health pass looks at a session in this state: tracked, and `open` or `qr`
/// (both mean the websocket has connected; a fork that connects lazily has a ws that reads
/// closed before it ever connected, so `connecting` is left to the `stuck` event).
fn watched(state: &SessionState) -> bool {
  state.tracked && matches!(state.status, Some(Status::Open | Status::Qr))
}

/// Whether the health pass watches the session `id` at `generation`.
pub fn is_watched(id: &str, generation: Generation) -> bool {
  let mut watch = false;
  table::for_one(id, |r| {
    watch = r.generation == generation && watched(&r.state)
  });
  watch
}

/// Closes a session whose socket closed unheard, if it is still watched.
pub fn close_unheard(id: &str, generation: Generation) {
  let update = ConnectionUpdate {
    connection: Some(Connection::Close),
    qr: false,
    last_disconnect: Some((None, Some(UNHEARD_CLOSE.to_owned()))),
  };
  let now = js::now_ms();
  change(id, generation, |state| {
    watched(state).then(|| state.apply_connection_update(&update, now))
  });
}
