//! A session's state and the rules that change it. Plain Rust: no Node-API here.
//!
//! Every change to a session goes through [`SessionState::apply`], so the merge rules of
//! `updateSessionState`, the tracking of Baileys events and the drop-in semantics of
//! `createSocketWrapper` are written down once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::supervise::Supervision;

/// Where a session's socket is in its life, as its `connection.update` events tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Status {
  /// Opening the WebSocket or doing the handshake.
  Connecting,
  /// Waiting for the user to scan a QR code (the code itself is never stored).
  Qr,
  /// Logged in and online.
  Open,
  /// Closed for a reason after which a new socket may connect again.
  Closed,
  /// Closed with 401: the credentials are gone; a new login (QR) is needed.
  LoggedOut,
  /// Closed with 440: another client took over this account's connection.
  Replaced,
  /// Closed with 515: Baileys asks for a new socket (normal right after pairing).
  RestartRequired,
  /// Ended by the registry because this node lost (or was asked to give up) the session's
  /// cluster lease: another node may run it now.
  LeaseLost,
}

impl Status {
  pub const ALL: [Status; 8] = [
    Status::Connecting,
    Status::Qr,
    Status::Open,
    Status::Closed,
    Status::LoggedOut,
    Status::Replaced,
    Status::RestartRequired,
    Status::LeaseLost,
  ];

  pub fn as_str(self) -> &'static str {
    match self {
      Status::Connecting => "connecting",
      Status::Qr => "qr",
      Status::Open => "open",
      Status::Closed => "closed",
      Status::LoggedOut => "loggedOut",
      Status::Replaced => "replaced",
      Status::RestartRequired => "restartRequired",
      Status::LeaseLost => "leaseLost",
    }
  }

  /// The position of `self` in [`Status::ALL`] (the variants are declared in that order).
  pub fn index(self) -> usize {
    self as usize
  }

  pub fn parse(text: &str) -> Option<Status> {
    Status::ALL.iter().copied().find(|s| s.as_str() == text)
  }

  /// The status a close with this Boom status code leads to.
  pub fn after_close(code: Option<u32>) -> Status {
    match code {
      Some(401) => Status::LoggedOut,
      Some(440) => Status::Replaced,
      Some(515) => Status::RestartRequired,
      _ => Status::Closed,
    }
  }

  /// Whether a session in `self` can still reach `wanted` on the same credentials.
  /// Only a logout is final: every other close can be followed by a new socket.
  pub fn can_lead_to(self, wanted: Status) -> bool {
    self == wanted || self != Status::LoggedOut
  }
}

/// The name Baileys' `DisconnectReason` gives a status code (and the message, for the two
/// reasons that share 408).
pub fn disconnect_reason(code: Option<u32>, message: Option<&str>) -> Option<&'static str> {
  Some(match code? {
    428 => "connectionClosed",
    408 if message.is_some_and(|m| m.contains("Timed Out")) => "timedOut",
    408 => "connectionLost",
    440 => "connectionReplaced",
    401 => "loggedOut",
    500 => "badSession",
    515 => "restartRequired",
    411 => "multideviceMismatch",
    403 => "forbidden",
    503 => "unavailableService",
    _ => return None,
  })
}

/// Why and when the socket last closed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastDisconnect {
  /// The Boom status code, `None` when the error had none (or there was no error).
  pub code: Option<u32>,
  /// The `DisconnectReason` name of `code`.
  pub reason: Option<String>,
  /// The error's message.
  pub message: Option<String>,
  /// Epoch milliseconds.
  pub at: f64,
}

/// The logged-in identity, from `socket.authState.creds.me`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Me {
  pub id: Option<String>,
  pub lid: Option<String>,
}

/// What one `connection.update` payload says, already read out of JS.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConnectionUpdate {
  pub connection: Option<Connection>,
  /// A QR code arrived (its text is not kept).
  pub qr: bool,
  /// `lastDisconnect` was present: its error's status code and message.
  pub last_disconnect: Option<(Option<u32>, Option<String>)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connection {
  Connecting,
  Open,
  Close,
}

/// A validated `updateSessionState` argument.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatePatch {
  pub created_at: Option<f64>,
  pub is_connected: Option<bool>,
  /// `Some(None)` clears the error.
  pub error: Option<Option<String>>,
  /// `Some(None)` clears the status.
  pub status: Option<Option<Status>>,
  /// Keys the registry does not know, in the order given. `None` removes the key.
  pub custom: Vec<(String, Option<Value>)>,
}

/// Keys of the state that only the registry sets; `updateSessionState` refuses them.
pub const READ_ONLY_KEYS: [&str; 14] = [
  "threadId",
  "tracked",
  "lastDisconnect",
  "me",
  "hasQr",
  "connects",
  "disconnects",
  "connectedAt",
  "disconnectedAt",
  "lastInboundAt",
  "lastOutboundAt",
  "messagesIn",
  "messagesOut",
  "supervision",
];

/// Keys that could reach an object's prototype if they were ever set with plain assignment.
pub const FORBIDDEN_KEYS: [&str; 3] = ["__proto__", "constructor", "prototype"];

/// Limits on one `updateSessionState` call, so that what the registry allocates is bounded by
/// these and not by whatever the caller passes (an array that only claims a length of 2^32 - 1,
/// a key of megabytes). Over any of them the call throws `ERR_STATE_TOO_LARGE` (a
/// `RangeError`) and changes nothing.
pub mod limits {
  /// Nesting levels below the update's own keys (`{ a: { b: 1 } }`: `a` is level 1).
  pub const MAX_DEPTH: usize = 64;
  /// Values in one update: every key's value, array element and nested value counts one.
  pub const MAX_VALUES: usize = 100_000;
  /// Bytes (UTF-8) of one key.
  pub const MAX_KEY_BYTES: usize = 4 * 1024;
  /// Bytes (UTF-8) of one string value (including `error`).
  pub const MAX_STRING_BYTES: usize = 16 * 1024 * 1024;
  /// Bytes (UTF-8) of all keys and strings of one update together.
  pub const MAX_TOTAL_BYTES: usize = 32 * 1024 * 1024;
}

/// A time in epoch milliseconds that may be absent, in 8 bytes: NaN means none (an
/// `Option<f64>` takes 16). The registry's times come from the clock and are never NaN.
#[derive(Clone, Copy, Debug)]
pub struct Time(f64);

impl Time {
  pub const NONE: Time = Time(f64::NAN);

  pub fn get(self) -> Option<f64> {
    (!self.0.is_nan()).then_some(self.0)
  }
}

impl From<Option<f64>> for Time {
  fn from(t: Option<f64>) -> Self {
    Time(t.unwrap_or(f64::NAN))
  }
}

impl From<f64> for Time {
  fn from(t: f64) -> Self {
    Time(t)
  }
}

impl Default for Time {
  fn default() -> Self {
    Time::NONE
  }
}

impl PartialEq for Time {
  fn eq(&self, other: &Self) -> bool {
    self.get() == other.get()
  }
}

/// `lastActivity`, in epoch milliseconds. Atomic so that the table can move it forward while
/// it only reads the record (under the shared lock): it folds in the time of an update that
/// index.js applied without a native call (`versions::touched`). 8 bytes, as an f64.
#[derive(Debug)]
struct Activity(AtomicU64);

impl Activity {
  fn new(t: f64) -> Self {
    Activity(AtomicU64::new(t.to_bits()))
  }

  fn get(&self) -> f64 {
    f64::from_bits(self.0.load(Ordering::Relaxed))
  }
}

impl Clone for Activity {
  fn clone(&self) -> Self {
    Activity::new(self.get())
  }
}

impl PartialEq for Activity {
  fn eq(&self, other: &Self) -> bool {
    self.get() == other.get()
  }
}

/// One session's state: the drop-in fields of socket-factory.js, what tracking adds, and the
/// keys the bot set itself.
///
/// A state is kept for every session in the process-wide table, so only the fields every
/// session uses are inline (32 bytes, pinned by a test); everything rare or set only by
/// tracking lives in one [`More`], allocated on its first write and read through accessors
/// that answer the defaults without it (an untracked session never allocates one).
#[derive(Clone, Debug, PartialEq)]
pub struct SessionState {
  pub created_at: f64,
  last_activity: Activity,
  more: Option<Box<More>>,
  pub thread_id: u32,
  /// `None` for a socket the registry does not track (and nobody set a status).
  pub status: Option<Status>,
  pub is_connected: bool,
  pub tracked: bool,
  pub has_qr: bool,
}

/// The part of a [`SessionState`] that most sessions never set (see [`SessionState::more_mut`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct More {
  /// A `Box<str>`, not a `String`: 8 bytes less keeps `More` in a 128-byte block of glibc's
  /// allocator.
  pub error: Option<Box<str>>,
  // Boxed: absent until the first close / login, and inline they would more than double a
  // tracked session's `More`.
  pub last_disconnect: Option<Box<LastDisconnect>>,
  pub me: Option<Box<Me>>,
  pub connects: u32,
  pub disconnects: u32,
  pub connected_at: Time,
  pub disconnected_at: Time,
  pub last_inbound_at: Time,
  pub last_outbound_at: Time,
  pub messages_in: u64,
  pub messages_out: u64,
  /// The supervision of a session made by `superviseSession`, `None` otherwise.
  pub supervision: Option<Box<Supervision>>,
  /// The bot's own keys; boxed, as a map is 72 bytes and most tracked sessions have none.
  pub custom: Option<Box<Map<String, Value>>>,
  /// Table bookkeeping, not part of the state JavaScript sees: when the session last entered
  /// `connecting` (for the stuck check), and whether that stay was reported stuck.
  pub connecting_since: Time,
  pub stuck_reported: bool,
}

/// What [`SessionState::custom`] answers for a state without custom keys.
static NO_CUSTOM: LazyLock<Map<String, Value>> = LazyLock::new(Map::new);

impl SessionState {
  /// The rare fields, if any was ever set.
  pub fn more(&self) -> Option<&More> {
    self.more.as_deref()
  }

  /// The rare fields for writing, allocated on first use.
  pub fn more_mut(&mut self) -> &mut More {
    self.more.get_or_insert_with(Box::default)
  }

  pub fn error(&self) -> Option<&str> {
    self.more().and_then(|m| m.error.as_deref())
  }

  /// Sets (or clears) the error; clearing an error that was never set allocates nothing.
  pub fn set_error(&mut self, error: Option<String>) {
    if error.is_some() || self.more.is_some() {
      self.more_mut().error = error.map(String::into_boxed_str);
    }
  }

  pub fn last_disconnect(&self) -> Option<&LastDisconnect> {
    self.more().and_then(|m| m.last_disconnect.as_deref())
  }

  pub fn me(&self) -> Option<&Me> {
    self.more().and_then(|m| m.me.as_deref())
  }

  pub fn connects(&self) -> u32 {
    self.more().map_or(0, |m| m.connects)
  }

  pub fn disconnects(&self) -> u32 {
    self.more().map_or(0, |m| m.disconnects)
  }

  pub fn connected_at(&self) -> Option<f64> {
    self.more().and_then(|m| m.connected_at.get())
  }

  pub fn disconnected_at(&self) -> Option<f64> {
    self.more().and_then(|m| m.disconnected_at.get())
  }

  pub fn last_inbound_at(&self) -> Option<f64> {
    self.more().and_then(|m| m.last_inbound_at.get())
  }

  pub fn last_outbound_at(&self) -> Option<f64> {
    self.more().and_then(|m| m.last_outbound_at.get())
  }

  pub fn messages_in(&self) -> u64 {
    self.more().map_or(0, |m| m.messages_in)
  }

  pub fn messages_out(&self) -> u64 {
    self.more().map_or(0, |m| m.messages_out)
  }

  pub fn supervision(&self) -> Option<&Supervision> {
    self.more().and_then(|m| m.supervision.as_deref())
  }

  /// The bot's own keys (an empty map when it set none).
  pub fn custom(&self) -> &Map<String, Value> {
    self
      .more()
      .and_then(|m| m.custom.as_deref())
      .unwrap_or(&NO_CUSTOM)
  }

  /// The bot's own keys for writing, allocated on first use.
  pub fn custom_mut(&mut self) -> &mut Map<String, Value> {
    self.more_mut().custom.get_or_insert_with(Box::default)
  }

  /// When the session last entered `connecting` (table bookkeeping for the stuck check).
  pub fn connecting_since(&self) -> Option<f64> {
    self.more().and_then(|m| m.connecting_since.get())
  }

  /// Sets when the session entered `connecting`; clearing allocates nothing.
  pub fn set_connecting_since(&mut self, since: Option<f64>) {
    if since.is_some() || self.more.is_some() {
      self.more_mut().connecting_since = since.into();
    }
  }

  /// Whether the current stay in `connecting` was reported stuck.
  pub fn stuck_reported(&self) -> bool {
    self.more().is_some_and(|m| m.stuck_reported)
  }

  /// Sets [`Self::stuck_reported`]; clearing allocates nothing.
  pub fn set_stuck_reported(&mut self, reported: bool) {
    if reported || self.more.is_some() {
      self.more_mut().stuck_reported = reported;
    }
  }
}

/// What a change did to the two fields that listeners are told about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
  pub status: (Option<Status>, Option<Status>),
  pub connected: (bool, bool),
}

impl Transition {
  pub fn changed(&self) -> bool {
    self.status.0 != self.status.1 || self.connected.0 != self.connected.1
  }
}

impl SessionState {
  pub fn new(now: f64, tracked: bool, thread_id: u32) -> Self {
    SessionState {
      created_at: now,
      last_activity: Activity::new(now),
      more: None,
      thread_id,
      status: if tracked {
        Some(Status::Connecting)
      } else {
        None
      },
      is_connected: false,
      tracked,
      has_qr: false,
    }
  }

  fn transition_from(&self, before: (Option<Status>, bool)) -> Transition {
    Transition {
      status: (before.0, self.status),
      connected: (before.1, self.is_connected),
    }
  }

  /// `updateSessionState`: merge the patch, then `lastActivity = now`.
  pub fn apply_patch(&mut self, patch: StatePatch, now: f64) -> Transition {
    let before = (self.status, self.is_connected);
    if let Some(v) = patch.created_at {
      self.created_at = v;
    }
    if let Some(v) = patch.is_connected {
      self.is_connected = v;
    }
    if let Some(v) = patch.error {
      self.set_error(v);
    }
    if let Some(v) = patch.status {
      self.status = v;
    }
    for (key, value) in patch.custom {
      match value {
        Some(v) => {
          self.custom_mut().insert(key, v);
        }
        None => {
          // Removing a key that was never set allocates nothing.
          if let Some(custom) = self.more.as_mut().and_then(|m| m.custom.as_mut()) {
            custom.remove(&key);
          }
        }
      }
    }
    self.set_last_activity(now);
    self.transition_from(before)
  }

  /// A `connection.update` from the tracked socket.
  pub fn apply_connection_update(&mut self, update: &ConnectionUpdate, now: f64) -> Transition {
    let before = (self.status, self.is_connected);
    if update.qr {
      self.has_qr = true;
      self.status = Some(Status::Qr);
    }
    match update.connection {
      Some(Connection::Connecting) => {
        self.status = Some(Status::Connecting);
      }
      Some(Connection::Open) => {
        self.status = Some(Status::Open);
        self.is_connected = true;
        self.has_qr = false;
        let more = self.more_mut();
        more.error = None;
        more.connects += 1;
        more.connected_at = now.into();
      }
      Some(Connection::Close) => {
        let code = update.last_disconnect.as_ref().and_then(|(c, _)| *c);
        self.status = Some(Status::after_close(code));
        self.is_connected = false;
        self.has_qr = false;
        let more = self.more_mut();
        more.disconnects += 1;
        more.disconnected_at = now.into();
      }
      None => {}
    }
    if let Some((code, message)) = &update.last_disconnect {
      // Drop-in rule of createSocketWrapper: a lastDisconnect sets `error` to its message.
      let more = self.more_mut();
      more.error = message.as_deref().map(Box::from);
      more.last_disconnect = Some(Box::new(LastDisconnect {
        code: *code,
        reason: disconnect_reason(*code, message.as_deref()).map(str::to_owned),
        message: message.clone(),
        at: now,
      }));
    }
    self.set_last_activity(now);
    self.transition_from(before)
  }

  /// `messages.upsert`: `inbound` live messages from others, `outbound` own messages.
  pub fn apply_messages(&mut self, inbound: u32, outbound: u32, now: f64) {
    if inbound > 0 {
      let more = self.more_mut();
      more.messages_in += u64::from(inbound);
      more.last_inbound_at = now.into();
    }
    if outbound > 0 {
      let more = self.more_mut();
      more.messages_out += u64::from(outbound);
      more.last_outbound_at = now.into();
    }
    if inbound > 0 || outbound > 0 {
      self.set_last_activity(now);
    }
  }

  /// The identity from `creds.me`. Returns whether it changed.
  pub fn apply_me(&mut self, me: Me, now: f64) -> bool {
    if me.id.is_none() && me.lid.is_none() {
      return false;
    }
    if self.me() == Some(&me) {
      return false;
    }
    self.more_mut().me = Some(Box::new(me));
    self.set_last_activity(now);
    true
  }

  /// Record that tracking could not be set up (a socket that throws from `ev.on`, or has no
  /// `ev`): the session stays registered, untracked, with the reason in `error`.
  pub fn mark_untracked(&mut self, reason: String) -> Transition {
    let before = (self.status, self.is_connected);
    self.tracked = false;
    self.status = None;
    self.set_error(Some(reason));
    self.transition_from(before)
  }

  /// The registry ended the socket because this node no longer holds the session's cluster
  /// lease: `leaseLost`, not connected, `error` says why.
  pub fn mark_lease_lost(&mut self, message: String, now: f64) -> Transition {
    let before = (self.status, self.is_connected);
    if self.is_connected {
      let more = self.more_mut();
      more.disconnects += 1;
      more.disconnected_at = now.into();
    }
    self.status = Some(Status::LeaseLost);
    self.is_connected = false;
    self.has_qr = false;
    self.set_error(Some(message));
    self.set_last_activity(now);
    self.transition_from(before)
  }

  pub fn is_idle(&self, now: f64, idle_after_ms: f64) -> bool {
    now - self.last_activity() > idle_after_ms
  }

  /// `lastActivity`: the last change's time.
  pub fn last_activity(&self) -> f64 {
    self.last_activity.get()
  }

  fn set_last_activity(&mut self, now: f64) {
    *self.last_activity.0.get_mut() = now.to_bits();
  }

  /// Moves `lastActivity` to `t` if that is later: the time of an update index.js applied
  /// without a native call (`versions::touched`). Callable under the table's shared lock; of
  /// two such calls at once, the later time stays.
  pub fn note_activity(&self, t: f64) {
    let cell = &self.last_activity.0;
    let mut seen = cell.load(Ordering::Relaxed);
    while t > f64::from_bits(seen) {
      match cell.compare_exchange_weak(seen, t.to_bits(), Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => return,
        Err(now) => seen = now,
      }
    }
  }
}

/// Formats epoch milliseconds as `Date.prototype.toISOString()` does
/// (`YYYY-MM-DDTHH:mm:ss.sssZ`, years 0..=9999).
pub fn iso_string(epoch_ms: f64) -> String {
  let mut buf = [0u8; 24];
  let len = write_iso(epoch_ms, &mut buf);
  String::from_utf8_lossy(&buf[..len]).into_owned()
}

/// Writes the ISO form into `out`; returns the number of bytes (24, or 0 for an invalid time).
pub fn write_iso(epoch_ms: f64, out: &mut [u8; 24]) -> usize {
  if !epoch_ms.is_finite() {
    return 0;
  }
  let ms_total = epoch_ms.floor() as i64;
  let days = ms_total.div_euclid(86_400_000);
  let ms_of_day = ms_total.rem_euclid(86_400_000);
  // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
  let z = days + 719_468;
  let era = z.div_euclid(146_097);
  let doe = z.rem_euclid(146_097);
  let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
  let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  let mp = (5 * doy + 2) / 153;
  let day = doy - (153 * mp + 2) / 5 + 1;
  let month = if mp < 10 { mp + 3 } else { mp - 9 };
  let year = yoe + era * 400 + i64::from(month <= 2);
  if !(0..=9999).contains(&year) {
    return 0;
  }
  let (h, m, s, ms) = (
    ms_of_day / 3_600_000,
    ms_of_day / 60_000 % 60,
    ms_of_day / 1000 % 60,
    ms_of_day % 1000,
  );
  let digits = |out: &mut [u8; 24], at: usize, value: i64, width: usize| {
    let mut v = value;
    for i in (0..width).rev() {
      out[at + i] = b'0' + (v % 10) as u8;
      v /= 10;
    }
  };
  digits(out, 0, year, 4);
  out[4] = b'-';
  digits(out, 5, month, 2);
  out[7] = b'-';
  digits(out, 8, day, 2);
  out[10] = b'T';
  digits(out, 11, h, 2);
  out[13] = b':';
  digits(out, 14, m, 2);
  out[16] = b':';
  digits(out, 17, s, 2);
  out[19] = b'.';
  digits(out, 20, ms, 3);
  out[23] = b'Z';
  24
}

#[cfg(test)]
mod tests {
  use super::*;

  fn update(
    connection: Option<Connection>,
    ld: Option<(Option<u32>, Option<&str>)>,
  ) -> ConnectionUpdate {
    ConnectionUpdate {
      connection,
      qr: false,
      last_disconnect: ld.map(|(c, m)| (c, m.map(str::to_owned))),
    }
  }

  /// A state is kept for every session of the process: growing it is a decision, not an
  /// accident (see `table::tests::record_size_is_pinned` for the whole record).
  #[test]
  fn state_size_is_pinned() {
    assert_eq!(std::mem::size_of::<SessionState>(), 32);
    // 120 + glibc's 8-byte header: a 128-byte block (128 bytes would take 144).
    assert_eq!(std::mem::size_of::<More>(), 120);
    assert_eq!(std::mem::size_of::<Time>(), 8);
  }

  #[test]
  fn untracked_states_allocate_no_more() {
    let mut s = SessionState::new(1.0, false, 0);
    s.apply_patch(
      StatePatch {
        is_connected: Some(true),
        error: Some(None),
        status: Some(Some(Status::Open)),
        custom: vec![("never-set".into(), None)],
        ..Default::default()
      },
      2.0,
    );
    s.set_connecting_since(None);
    s.set_stuck_reported(false);
    assert!(s.more().is_none());
    assert!(s.custom().is_empty());
    s.set_error(Some("x".into()));
    assert_eq!(s.error(), Some("x"));
    assert!(s.more().is_some());
  }

  #[test]
  fn times_without_a_value_are_none() {
    assert_eq!(Time::NONE.get(), None);
    assert_eq!(Time::from(Some(5.0)).get(), Some(5.0));
    assert_eq!(Time::from(None), Time::NONE);
    assert_ne!(Time::from(1.0), Time::NONE);
  }

  #[test]
  fn new_state_matches_the_drop_in_shape() {
    let s = SessionState::new(1000.0, false, 0);
    assert_eq!((s.created_at, s.last_activity()), (1000.0, 1000.0));
    assert!(!s.is_connected);
    assert_eq!(s.error(), None);
    assert_eq!(s.status, None);
    assert_eq!(
      SessionState::new(1.0, true, 0).status,
      Some(Status::Connecting)
    );
  }

  #[test]
  fn patch_merges_and_moves_last_activity() {
    let mut s = SessionState::new(1000.0, false, 0);
    let t = s.apply_patch(
      StatePatch {
        is_connected: Some(true),
        custom: vec![
          ("phone".into(), Some(Value::from("123"))),
          ("n".into(), Some(Value::from(2))),
        ],
        ..Default::default()
      },
      2000.0,
    );
    assert!(t.changed());
    assert!(s.is_connected);
    assert_eq!(s.last_activity(), 2000.0);
    assert_eq!(s.custom()["phone"], "123");
    let t = s.apply_patch(
      StatePatch {
        custom: vec![("phone".into(), None)],
        ..Default::default()
      },
      3000.0,
    );
    assert!(!t.changed());
    assert!(!s.custom().contains_key("phone"));
    assert_eq!(s.custom().keys().collect::<Vec<_>>(), ["n"]);
  }

  #[test]
  fn connection_updates_follow_baileys() {
    let mut s = SessionState::new(0.0, true, 0);
    s.apply_connection_update(
      &ConnectionUpdate {
        qr: true,
        ..Default::default()
      },
      1.0,
    );
    assert_eq!((s.status, s.has_qr), (Some(Status::Qr), true));
    let t = s.apply_connection_update(&update(Some(Connection::Open), None), 2.0);
    assert_eq!(t.status, (Some(Status::Qr), Some(Status::Open)));
    assert!(s.is_connected && !s.has_qr);
    assert_eq!((s.connects(), s.connected_at()), (1, Some(2.0)));
    s.apply_connection_update(
      &update(
        Some(Connection::Close),
        Some((Some(440), Some("Stream Errored (conflict)"))),
      ),
      3.0,
    );
    assert_eq!(s.status, Some(Status::Replaced));
    assert!(!s.is_connected);
    assert_eq!(s.error(), Some("Stream Errored (conflict)"));
    let ld = s.last_disconnect().cloned().unwrap();
    assert_eq!(
      (ld.code, ld.reason.as_deref(), ld.at),
      (Some(440), Some("connectionReplaced"), 3.0)
    );
    assert_eq!((s.disconnects(), s.disconnected_at()), (1, Some(3.0)));
    // A plain Error without a status code: closed, code null.
    s.apply_connection_update(
      &update(
        Some(Connection::Close),
        Some((None, Some("invalid wire type"))),
      ),
      4.0,
    );
    assert_eq!(s.status, Some(Status::Closed));
    assert_eq!(s.last_disconnect().unwrap().code, None);
    assert_eq!(s.last_disconnect().unwrap().reason, None);
    // Open clears the error, as createSocketWrapper did.
    s.apply_connection_update(&update(Some(Connection::Open), None), 5.0);
    assert_eq!(s.error(), None);
  }

  #[test]
  fn close_codes_map_to_statuses_and_reasons() {
    assert_eq!(Status::after_close(Some(401)), Status::LoggedOut);
    assert_eq!(Status::after_close(Some(515)), Status::RestartRequired);
    assert_eq!(Status::after_close(Some(428)), Status::Closed);
    assert_eq!(Status::after_close(None), Status::Closed);
    assert_eq!(
      disconnect_reason(Some(408), Some("Timed Out")),
      Some("timedOut")
    );
    assert_eq!(
      disconnect_reason(Some(408), Some("WebSocket Error")),
      Some("connectionLost")
    );
    assert_eq!(disconnect_reason(Some(515), None), Some("restartRequired"));
    assert_eq!(disconnect_reason(Some(999), None), None);
    assert_eq!(disconnect_reason(None, None), None);
    for s in Status::ALL {
      assert_eq!(Status::parse(s.as_str()), Some(s));
      assert_eq!(Status::ALL[s.index()], s);
    }
    assert!(!Status::LoggedOut.can_lead_to(Status::Open));
    assert!(Status::Replaced.can_lead_to(Status::Open));
    assert!(Status::LeaseLost.can_lead_to(Status::Open));
  }

  #[test]
  fn a_lost_lease_disconnects_once() {
    let mut s = SessionState::new(0.0, true, 0);
    s.is_connected = true;
    s.status = Some(Status::Open);
    let t = s.mark_lease_lost("lease lost".into(), 7.0);
    assert!(t.changed());
    assert_eq!(s.status, Some(Status::LeaseLost));
    assert!(!s.is_connected);
    assert_eq!((s.disconnects(), s.disconnected_at()), (1, Some(7.0)));
    assert_eq!(s.error(), Some("lease lost"));
    let again = s.mark_lease_lost("lease lost".into(), 8.0);
    assert!(!again.changed());
    assert_eq!(s.disconnects(), 1);
  }

  #[test]
  fn messages_move_counters_and_times() {
    let mut s = SessionState::new(0.0, true, 0);
    s.apply_messages(2, 0, 5.0);
    assert_eq!(
      (s.messages_in(), s.last_inbound_at(), s.last_outbound_at()),
      (2, Some(5.0), None)
    );
    s.apply_messages(0, 1, 6.0);
    assert_eq!(
      (s.messages_out(), s.last_outbound_at(), s.last_activity()),
      (1, Some(6.0), 6.0)
    );
    s.apply_messages(0, 0, 7.0);
    assert_eq!(s.last_activity(), 6.0);
  }

  #[test]
  fn me_changes_only_when_different() {
    let mut s = SessionState::new(0.0, true, 0);
    assert!(!s.apply_me(Me::default(), 1.0));
    let me = Me {
      id: Some("1@s.whatsapp.net".into()),
      lid: None,
    };
    assert!(s.apply_me(me.clone(), 2.0));
    assert!(!s.apply_me(me, 3.0));
  }

  #[test]
  fn iso_strings_match_javascript() {
    assert_eq!(iso_string(0.0), "1970-01-01T00:00:00.000Z");
    assert_eq!(iso_string(1_700_000_000_123.0), "2023-11-14T22:13:20.123Z");
    assert_eq!(iso_string(951_782_400_000.0), "2000-02-29T00:00:00.000Z");
    assert_eq!(iso_string(-1.0), "1969-12-31T23:59:59.999Z");
    assert_eq!(iso_string(f64::NAN), "");
    // The bounds `updateSessionState` accepts for createdAt.
    assert_eq!(
      iso_string(-62_167_219_200_000.0),
      "0000-01-01T00:00:00.000Z"
    );
    assert_eq!(
      iso_string(253_402_300_799_999.0),
      "9999-12-31T23:59:59.999Z"
    );
  }
}
