//! The layout of a session state as JavaScript receives it, declared once.
//!
//! [`FIELDS`] names every field of `getSessionState`'s object, in order, with its kind and how
//! to read it from a [`SessionState`]. From this one table:
//! - [`pack`] writes a state as positional numbers plus one string (what crosses Node-API);
//! - the binding hands the table to the package entry (index.js), which builds its shaping
//!   functions from it when it loads;
//! - the binding's slow conversion (`convert::state_to_js`, for events) walks it.
//!
//! Adding a state field therefore touches: the field and its rules in `state.rs`, its row
//! here, and its typing in the binding's `types.rs`.

use serde_json::Value;

use crate::state::{SessionState, Status};

/// How a field is written in the numbers (one slot each, except groups) and read back.
#[derive(Clone, Copy)]
pub enum Kind {
  /// A number.
  Num(fn(&SessionState) -> f64),
  /// A number or null (NaN in its slot: none of these numbers is ever NaN).
  OptNum(fn(&SessionState) -> Option<f64>),
  /// A boolean (0 or 1).
  Bool(fn(&SessionState) -> bool),
  /// A string or null: its length in UTF-16 units in the slot (-1: null), its text next in the
  /// string.
  OptStr(for<'a> fn(&'a SessionState) -> Option<&'a str>),
  /// A status name or null: its index in [`Status::ALL`] (-1: null).
  Status(fn(&SessionState) -> Option<Status>),
  /// A nested object or null: 1 or 0 in the slot, then the slots of its fields (written
  /// either way, strings as null when absent).
  Group(fn(&SessionState) -> bool, &'static [Field]),
}

/// One field: its property name and kind.
#[derive(Clone, Copy)]
pub struct Field {
  pub name: &'static str,
  pub kind: Kind,
}

const fn f(name: &'static str, kind: Kind) -> Field {
  Field { name, kind }
}

const LAST_DISCONNECT: &[Field] = &[
  f(
    "code",
    Kind::OptNum(|s| s.last_disconnect().and_then(|d| d.code).map(f64::from)),
  ),
  f(
    "reason",
    Kind::OptStr(|s| s.last_disconnect().and_then(|d| d.reason.as_deref())),
  ),
  f(
    "message",
    Kind::OptStr(|s| s.last_disconnect().and_then(|d| d.message.as_deref())),
  ),
  f(
    "at",
    Kind::Num(|s| s.last_disconnect().map_or(0.0, |d| d.at)),
  ),
];

const ME: &[Field] = &[
  f("id", Kind::OptStr(|s| s.me().and_then(|m| m.id.as_deref()))),
  f(
    "lid",
    Kind::OptStr(|s| s.me().and_then(|m| m.lid.as_deref())),
  ),
];

const SUPERVISION: &[Field] = &[
  f(
    "state",
    Kind::OptStr(|s| s.supervision().map(|v| v.phase.as_str())),
  ),
  f(
    "attempt",
    Kind::Num(|s| s.supervision().map_or(0.0, |v| f64::from(v.attempt))),
  ),
  f(
    "nextAttemptAt",
    Kind::OptNum(|s| s.supervision().and_then(|v| v.next_attempt_at)),
  ),
  f(
    "reason",
    Kind::OptStr(|s| s.supervision().and_then(|v| v.reason.as_deref())),
  ),
  f(
    "error",
    Kind::OptStr(|s| s.supervision().and_then(|v| v.error.as_deref())),
  ),
];

/// The fields of a state object, in property order. The keys the bot set itself follow them
/// (one JSON string, see [`pack`]).
pub const FIELDS: &[Field] = &[
  f("createdAt", Kind::Num(|s| s.created_at)),
  f("lastActivity", Kind::Num(|s| s.last_activity())),
  f("isConnected", Kind::Bool(|s| s.is_connected)),
  f("error", Kind::OptStr(|s| s.error())),
  f("status", Kind::Status(|s| s.status)),
  f("tracked", Kind::Bool(|s| s.tracked)),
  f(
    "lastDisconnect",
    Kind::Group(|s| s.last_disconnect().is_some(), LAST_DISCONNECT),
  ),
  f("me", Kind::Group(|s| s.me().is_some(), ME)),
  f("hasQr", Kind::Bool(|s| s.has_qr)),
  f("connects", Kind::Num(|s| f64::from(s.connects()))),
  f("disconnects", Kind::Num(|s| f64::from(s.disconnects()))),
  f("connectedAt", Kind::OptNum(|s| s.connected_at())),
  f("disconnectedAt", Kind::OptNum(|s| s.disconnected_at())),
  f("lastInboundAt", Kind::OptNum(|s| s.last_inbound_at())),
  f("lastOutboundAt", Kind::OptNum(|s| s.last_outbound_at())),
  f("messagesIn", Kind::Num(|s| s.messages_in() as f64)),
  f("messagesOut", Kind::Num(|s| s.messages_out() as f64)),
  f("threadId", Kind::Num(|s| f64::from(s.thread_id))),
  f(
    "supervision",
    Kind::Group(|s| s.supervision().is_some(), SUPERVISION),
  ),
];

const fn count(fields: &[Field]) -> usize {
  let mut n = 0;
  let mut i = 0;
  while i < fields.len() {
    n += match fields[i].kind {
      Kind::Group(_, inner) => 1 + count(inner),
      _ => 1,
    };
    i += 1;
  }
  n
}

/// Slots of one packed state: the custom keys' JSON length (-1: none), then the fields'.
pub const SLOTS: usize = 1 + count(FIELDS);

/// Every string of a result, back to back, as the one JS string that carries them: one byte per
/// character while every character fits in Latin-1 (as V8 stores such a string, so it is made
/// with a plain copy), UTF-16 from the first character that does not. Lengths are in UTF-16
/// units, what `String.prototype.slice` counts.
#[derive(Default)]
pub struct Text {
  pub latin1: Vec<u8>,
  pub wide: Option<Vec<u16>>,
}

impl Text {
  pub fn with_capacity(units: usize) -> Text {
    Text {
      latin1: Vec::with_capacity(units),
      wide: None,
    }
  }

  pub fn clear(&mut self) {
    self.latin1.clear();
    self.wide = None;
  }

  pub fn len(&self) -> usize {
    self.wide.as_ref().map_or(self.latin1.len(), Vec::len)
  }

  pub fn is_empty(&self) -> bool {
    self.len() == 0
  }

  /// Bytes of memory held (capacity, not length).
  pub fn held(&self) -> usize {
    self.latin1.capacity() + self.wide.as_ref().map_or(0, |w| 2 * w.capacity())
  }

  /// Appends ASCII bytes.
  pub fn push_ascii(&mut self, bytes: &[u8]) {
    match &mut self.wide {
      None => self.latin1.extend_from_slice(bytes),
      Some(w) => w.extend(bytes.iter().map(|&b| u16::from(b))),
    }
  }

  /// Appends `s`; returns its length in UTF-16 units.
  pub fn push_str(&mut self, s: &str) -> i32 {
    let start = self.len();
    if s.is_ascii() {
      self.push_ascii(s.as_bytes());
    } else if self.wide.is_none() && s.chars().all(|c| u32::from(c) <= 0xFF) {
      self.latin1.extend(s.chars().map(|c| u32::from(c) as u8));
    } else {
      let wide = self.wide.get_or_insert_with(|| {
        let mut w = Vec::with_capacity(self.latin1.capacity().max(64));
        w.extend(self.latin1.iter().map(|&b| u16::from(b)));
        w
      });
      wide.extend(s.encode_utf16());
      self.latin1 = Vec::new();
    }
    (self.len() - start) as i32
  }

  pub fn push_opt(&mut self, s: Option<&str>) -> i32 {
    s.map_or(-1, |s| self.push_str(s))
  }
}

fn pack_fields(
  fields: &[Field],
  s: &SessionState,
  on: bool,
  text: &mut Text,
  nums: &mut [f64],
) -> usize {
  let mut at = 0;
  for field in fields {
    let slot = at;
    at += 1;
    let value = match field.kind {
      Kind::Num(get) => get(s),
      Kind::OptNum(get) => get(s).unwrap_or(f64::NAN),
      Kind::Bool(get) => f64::from(u8::from(get(s))),
      Kind::OptStr(get) => f64::from(if on { text.push_opt(get(s)) } else { -1 }),
      Kind::Status(get) => get(s).map_or(-1.0, |st| st.index() as f64),
      Kind::Group(present, inner) => {
        let here = on && present(s);
        at += pack_fields(inner, s, here, text, &mut nums[at..]);
        f64::from(u8::from(here))
      }
    };
    nums[slot] = value;
  }
  at
}

/// Writes `s` into `nums` (at least [`SLOTS`] long) and its strings into `text`: first the
/// custom keys as one JSON object (JSON.parse defines every key, so no setter runs when
/// JavaScript reads it back), then the fields in the order of [`FIELDS`] (depth first).
pub fn pack(s: &SessionState, text: &mut Text, nums: &mut [f64]) {
  nums[0] = if s.custom().is_empty() {
    -1.0
  } else {
    let json = Value::Object(s.custom().clone());
    f64::from(text.push_str(&json.to_string()))
  };
  pack_fields(FIELDS, s, true, text, &mut nums[1..]);
}

fn fields_to_json(fields: &[Field], s: &SessionState) -> serde_json::Map<String, Value> {
  let num = |v: f64| serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number);
  let mut out = serde_json::Map::with_capacity(fields.len());
  for field in fields {
    let v = match field.kind {
      Kind::Num(get) => num(get(s)),
      Kind::OptNum(get) => get(s).map_or(Value::Null, num),
      Kind::Bool(get) => Value::Bool(get(s)),
      Kind::OptStr(get) => get(s).map_or(Value::Null, |t| Value::String(t.to_owned())),
      Kind::Status(get) => get(s).map_or(Value::Null, |st| Value::String(st.as_str().into())),
      Kind::Group(present, inner) if present(s) => Value::Object(fields_to_json(inner, s)),
      Kind::Group(..) => Value::Null,
    };
    out.insert(field.name.to_owned(), v);
  }
  out
}

/// The state as the JSON of the object `getSessionState` returns (the fields of [`FIELDS`],
/// then the bot's own keys): what the cluster mirrors for other nodes to read.
pub fn to_json(s: &SessionState) -> Value {
  let mut out = fields_to_json(FIELDS, s);
  for (k, v) in s.custom() {
    out.insert(k.clone(), v.clone());
  }
  Value::Object(out)
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::state::{LastDisconnect, Me};

  fn text_of(t: &Text) -> String {
    match &t.wide {
      None => t.latin1.iter().map(|&b| char::from(b)).collect(),
      Some(w) => String::from_utf16(w).unwrap(),
    }
  }

  #[test]
  fn json_has_the_fields_in_order_then_the_custom_keys() {
    let mut s = SessionState::new(5.0, true, 3);
    s.status = Some(Status::LeaseLost);
    s.custom_mut().insert("plan".into(), Value::from("pro"));
    let json = to_json(&s);
    let keys: Vec<&str> = json
      .as_object()
      .unwrap()
      .keys()
      .map(String::as_str)
      .collect();
    assert_eq!(keys.len(), FIELDS.len() + 1);
    assert_eq!(&keys[..3], &["createdAt", "lastActivity", "isConnected"]);
    assert_eq!(keys.last(), Some(&"plan"));
    assert_eq!(json["status"], "leaseLost");
    assert_eq!(json["createdAt"], 5.0);
    assert_eq!(json["lastDisconnect"], Value::Null);
    assert_eq!(json["connectedAt"], Value::Null);
    assert_eq!(json["threadId"], 3.0);
  }

  #[test]
  fn pack_follows_the_table() {
    let mut s = SessionState::new(5.0, true, 3);
    s.set_error(Some("é".into()));
    s.more_mut().me = Some(Box::new(Me {
      id: Some("1@s".into()),
      lid: None,
    }));
    s.custom_mut().insert("k".into(), Value::from(vec![1, 2]));
    let mut nums = vec![0.0; SLOTS];
    let mut text = Text::default();
    pack(&s, &mut text, &mut nums);
    assert_eq!(nums[0], 11.0, "custom JSON length");
    let nums = &nums[1..];
    // createdAt, lastActivity, isConnected, error, status, tracked
    assert_eq!(&nums[..6], &[5.0, 5.0, 0.0, 1.0, 0.0, 1.0]);
    // lastDisconnect absent: 0, then code NaN, reason/message null, at 0.
    assert_eq!(nums[6], 0.0);
    assert!(nums[7].is_nan());
    assert_eq!(&nums[8..11], &[-1.0, -1.0, 0.0]);
    // me present: 1, id of 3 units, lid null.
    assert_eq!(&nums[11..14], &[1.0, 3.0, -1.0]);
    assert!(nums[17].is_nan(), "connectedAt null");
    assert_eq!(nums[SLOTS - 8], 3.0, "threadId");
    // supervision absent: 0, then its 5 slots.
    assert_eq!(nums[SLOTS - 7], 0.0);
    assert_eq!(text_of(&text), "{\"k\":[1,2]}é1@s");
  }

  #[test]
  fn supervision_packs_as_a_group() {
    use crate::supervise::{Phase, Supervision};
    let mut s = SessionState::new(0.0, true, 0);
    s.more_mut().supervision = Some(Box::new(Supervision {
      phase: Phase::Waiting,
      attempt: 3,
      next_attempt_at: Some(77.0),
      reason: Some("connectionClosed".into()),
      error: None,
    }));
    let mut nums = vec![0.0; SLOTS];
    let mut text = Text::default();
    pack(&s, &mut text, &mut nums);
    assert_eq!(&nums[SLOTS - 6..], &[1.0, 7.0, 3.0, 77.0, 16.0, -1.0]);
    assert_eq!(text_of(&text), "waitingconnectionClosed");
  }

  #[test]
  fn absent_groups_write_no_strings() {
    let mut s = SessionState::new(0.0, false, 0);
    s.more_mut().last_disconnect = None;
    let mut nums = vec![0.0; SLOTS];
    let mut text = Text::default();
    pack(&s, &mut text, &mut nums);
    assert!(text.is_empty());
    s.more_mut().last_disconnect = Some(Box::new(LastDisconnect {
      code: Some(428),
      reason: Some("connectionClosed".into()),
      message: None,
      at: 9.0,
    }));
    pack(&s, &mut text, &mut nums);
    assert_eq!(&nums[7..12], &[1.0, 428.0, 16.0, -1.0, 9.0]);
  }

  #[test]
  fn wide_text_keeps_earlier_latin1() {
    let mut t = Text::with_capacity(4);
    assert_eq!(t.push_str("aÿ"), 2);
    assert_eq!(t.push_str("€"), 1);
    t.push_ascii(b"z");
    assert_eq!(text_of(&t), "aÿ€z");
  }
}
