//! The rules of `updateSessionState`'s argument, written once for both of its routes:
//! - a flat object of primitives (the common case) arrives as one JSON string, which
//!   [`parse_pairs`] reads and checks here;
//! - anything else is read out of JavaScript by the binding (`convert::parse_patch`), which
//!   applies the same rules and limits through the functions of this module.

use serde_json::{Number, Value};

use crate::errors::RegistryError;
use crate::state::{limits, StatePatch, Status, FORBIDDEN_KEYS, READ_ONLY_KEYS};

/// The times `getStats` can print as `YYYY-MM-DDTHH:mm:ss.sssZ` (years 0000 to 9999).
const MIN_TIME_MS: f64 = -62_167_219_200_000.0;
const MAX_TIME_MS: f64 = 253_402_300_799_999.0;

/// What a key of the update sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopKey {
  /// Ignored: always set to now, as socket-factory.js did.
  LastActivity,
  CreatedAt,
  IsConnected,
  Error,
  Status,
  /// A key the registry does not know, kept as JSON data.
  Custom,
}

/// Classifies a key of the update, refusing forbidden and read-only keys.
pub fn top_key(key: &str) -> Result<TopKey, RegistryError> {
  if FORBIDDEN_KEYS.contains(&key) {
    return Err(forbidden(key, &short(key)));
  }
  if READ_ONLY_KEYS.contains(&key) {
    return Err(RegistryError::ReadOnlyStateKey(format!(
      "state key '{key}' is kept by the registry and cannot be set with updateSessionState"
    )));
  }
  Ok(match key {
    "lastActivity" => TopKey::LastActivity,
    "createdAt" => TopKey::CreatedAt,
    "isConnected" => TopKey::IsConnected,
    "error" => TopKey::Error,
    "status" => TopKey::Status,
    _ => TopKey::Custom,
  })
}

/// A key as it appears in a message: long ones cut to their first 40 characters.
pub fn short(key: &str) -> String {
  match key.char_indices().nth(40) {
    Some((at, _)) => format!("{}... ({} bytes)", &key[..at], key.len()),
    None => key.to_owned(),
  }
}

pub fn forbidden(key: &str, path: &str) -> RegistryError {
  RegistryError::ForbiddenStateKey(format!(
    "state key '{}' at '{path}' is not allowed: it could change an object's prototype",
    short(key)
  ))
}

pub fn not_data(path: &str, what: &str) -> RegistryError {
  RegistryError::InvalidStateValue(format!(
    "state value at '{path}' {what}; state values must be JSON data (strings, numbers, booleans, null, arrays, plain objects)"
  ))
}

/// Over a limit: `what` says which, `path` where (empty: the update itself).
pub fn too_large(path: &str, what: &str) -> RegistryError {
  if path.is_empty() {
    RegistryError::StateTooLarge(format!("updates {what}"))
  } else {
    RegistryError::StateTooLarge(format!("state value at '{path}' {what}"))
  }
}

pub fn too_many_keys(n: usize) -> RegistryError {
  RegistryError::StateTooLarge(format!(
    "updateSessionState(sessionId, updates): updates has {n} keys; one update holds at most {} values",
    limits::MAX_VALUES
  ))
}

pub fn not_an_object() -> RegistryError {
  RegistryError::InvalidStateUpdate(
    "updateSessionState(sessionId, updates): updates must be a plain object".into(),
  )
}

pub fn wrong_type(key: &str, expected: &str) -> RegistryError {
  RegistryError::InvalidStateValue(format!("state key '{key}' must be {expected}"))
}

/// `createdAt`: a number (`None`: not a number) of epoch milliseconds within years 0000 to 9999.
pub fn created_at(n: Option<f64>) -> Result<f64, RegistryError> {
  n.filter(|n| (MIN_TIME_MS..=MAX_TIME_MS).contains(n))
    .ok_or_else(|| {
      wrong_type(
        "createdAt",
        "a number of epoch milliseconds within years 0000 to 9999",
      )
    })
}

pub fn is_connected(b: Option<bool>) -> Result<bool, RegistryError> {
  b.ok_or_else(|| wrong_type("isConnected", "a boolean"))
}

pub fn wrong_error() -> RegistryError {
  wrong_type("error", "a string, null, or an Error with a string message")
}

/// `status` other than null: a status name (`None`: not a string).
pub fn status(text: Option<&str>) -> Result<Status, RegistryError> {
  text.and_then(Status::parse).ok_or_else(|| {
    wrong_type(
      "status",
      "null or one of 'connecting', 'qr', 'open', 'closed', 'loggedOut', 'replaced', 'restartRequired'",
    )
  })
}

/// What one update may still hold (see [`limits`]). Errors are the `what` of [`too_large`].
pub struct Budget {
  values_left: usize,
  bytes_left: usize,
}

impl Default for Budget {
  fn default() -> Self {
    Budget {
      values_left: limits::MAX_VALUES,
      bytes_left: limits::MAX_TOTAL_BYTES,
    }
  }
}

impl Budget {
  pub fn values_left(&self) -> usize {
    self.values_left
  }

  pub fn count_values(&mut self, n: usize, what: &str) -> Result<(), String> {
    if n > self.values_left {
      return Err(format!(
        "{what}: one update holds at most {} values",
        limits::MAX_VALUES
      ));
    }
    self.values_left -= n;
    Ok(())
  }

  /// Checked before a string is copied: a UTF-16 unit is at least one UTF-8 byte.
  pub fn check_units(units: usize, max: usize, what: &str) -> Result<(), String> {
    if units > max {
      return Err(format!(
        "has {what} of {units} characters; at most {max} bytes"
      ));
    }
    Ok(())
  }

  /// Takes a string of `bytes` UTF-8 bytes (at most `max`) from the budget.
  pub fn take(&mut self, bytes: usize, max: usize, what: &str) -> Result<(), String> {
    if bytes > max {
      return Err(format!("has {what} of {bytes} bytes; at most {max} bytes"));
    }
    if bytes > self.bytes_left {
      return Err(format!(
        "takes the update over {} bytes of keys and strings",
        limits::MAX_TOTAL_BYTES
      ));
    }
    self.bytes_left -= bytes;
    Ok(())
  }

  /// Both checks for a string already in Rust.
  pub fn string(&mut self, s: &str, max: usize, what: &str) -> Result<(), String> {
    if s.len() > max {
      Self::check_units(s.encode_utf16().count(), max, what)?;
    }
    self.take(s.len(), max, what)
  }
}

/// In [`parse_pairs`]' input, the value that stands for `undefined` (which JSON lacks).
fn is_undefined(v: &Value) -> bool {
  matches!(v, Value::Array(a) if a.is_empty())
}

fn not_flat() -> RegistryError {
  RegistryError::InvalidStateUpdate(
    "updateSessionState: the JSON form of an update holds [key, primitive, ...] only".into(),
  )
}

/// Reads the JSON form of a flat update: `[key, value, key, value, ...]` as `JSON.stringify`
/// writes it, each value a primitive or `[]` for `undefined`. The same rules, limits and error
/// messages as the binding's reading of the object itself; nothing is applied on an error.
pub fn parse_pairs(json: &str) -> Result<StatePatch, RegistryError> {
  let items: Vec<Value> = match serde_json::from_str(json) {
    Ok(v) => v,
    // JSON.stringify writes a lone surrogate as an escape that is no Unicode; read it as U+FFFD,
    // as Node-API reads such a string.
    Err(_) => serde_json::from_str(&well_formed(json)).map_err(|_| not_flat())?,
  };
  if !items.len().is_multiple_of(2) {
    return Err(not_flat());
  }
  let n = items.len() / 2;
  if n > limits::MAX_VALUES {
    return Err(too_many_keys(n));
  }
  let mut patch = StatePatch::default();
  let mut budget = Budget::default();
  let mut items = items.into_iter();
  while let (Some(k), Some(v)) = (items.next(), items.next()) {
    let Value::String(key) = k else {
      return Err(not_flat());
    };
    budget
      .string(&key, limits::MAX_KEY_BYTES, "a key")
      .map_err(|w| too_large("", &w))?;
    let undefined = is_undefined(&v);
    if !undefined && (v.is_array() || v.is_object()) {
      return Err(not_flat());
    }
    match top_key(&key)? {
      TopKey::LastActivity => {}
      TopKey::CreatedAt => patch.created_at = Some(created_at(v.as_f64())?),
      TopKey::IsConnected => patch.is_connected = Some(is_connected(v.as_bool())?),
      TopKey::Error => {
        patch.error = Some(match v {
          Value::String(s) => {
            budget
              .string(&s, limits::MAX_STRING_BYTES, "a string")
              .map_err(|w| too_large("error", &w))?;
            Some(s)
          }
          Value::Null => None,
          _ if undefined => None,
          _ => return Err(wrong_error()),
        })
      }
      TopKey::Status => {
        patch.status = Some(match v {
          Value::Null => None,
          _ if undefined => None,
          Value::String(s) => {
            budget
              .string(&s, limits::MAX_STRING_BYTES, "a string")
              .map_err(|w| too_large("status", &w))?;
            Some(status(Some(&s))?)
          }
          _ => Some(status(None)?),
        })
      }
      TopKey::Custom => {
        let path = short(&key);
        budget
          .count_values(1, "has too many values")
          .map_err(|w| too_large(&path, &w))?;
        let value = match v {
          _ if undefined => None,
          // As a number read from JavaScript: an f64.
          Value::Number(n) => Some(
            n.as_f64()
              .and_then(Number::from_f64)
              .map_or(Value::Null, Value::Number),
          ),
          Value::String(s) => {
            budget
              .string(&s, limits::MAX_STRING_BYTES, "a string")
              .map_err(|w| too_large(&path, &w))?;
            Some(Value::String(s))
          }
          other => Some(other),
        };
        patch.custom.push((key, value));
      }
    }
  }
  Ok(patch)
}

/// `json` with every `\uXXXX` escape of a lone surrogate replaced by `\ufffd`.
fn well_formed(json: &str) -> String {
  let b = json.as_bytes();
  let hex = |at: usize| -> Option<u16> {
    let s = json.get(at..at + 4)?;
    u16::from_str_radix(s, 16).ok()
  };
  let escape = |at: usize| -> Option<u16> {
    (b.get(at) == Some(&b'\\') && b.get(at + 1) == Some(&b'u'))
      .then(|| hex(at + 2))
      .flatten()
  };
  let mut out = String::with_capacity(json.len());
  let mut i = 0;
  let mut copied = 0;
  while i < b.len() {
    if b[i] != b'\\' {
      i += 1;
      continue;
    }
    match escape(i) {
      // A pair: kept.
      Some(0xD800..=0xDBFF) if escape(i + 6).is_some_and(|lo| (0xDC00..=0xDFFF).contains(&lo)) => {
        i += 12;
      }
      Some(0xD800..=0xDFFF) => {
        out.push_str(&json[copied..i]);
        out.push_str("\\ufffd");
        i += 6;
        copied = i;
      }
      Some(_) => i += 6,
      // Any other escape is two characters (`\\`, `\"`, `\n`, ...).
      None => i += 2,
    }
  }
  out.push_str(&json[copied.min(json.len())..]);
  out
}

#[cfg(test)]
mod tests {
  use super::*;

  fn code(json: &str) -> &'static str {
    parse_pairs(json).unwrap_err().code()
  }

  #[test]
  fn pairs_follow_the_rules() {
    let p = parse_pairs(
      r#"["isConnected",true,"error",null,"status","open","n",2,"gone",[],"lastActivity",5]"#,
    )
    .unwrap();
    assert_eq!(p.is_connected, Some(true));
    assert_eq!(p.error, Some(None));
    assert_eq!(p.status, Some(Some(Status::Open)));
    assert_eq!(p.custom[0], ("n".into(), Some(Value::from(2.0))));
    assert_eq!(p.custom[1], ("gone".into(), None));
    assert_eq!(code(r#"["__proto__",1]"#), "ERR_FORBIDDEN_STATE_KEY");
    assert_eq!(code(r#"["connects",1]"#), "ERR_READ_ONLY_STATE_KEY");
    assert_eq!(code(r#"["isConnected","yes"]"#), "ERR_INVALID_STATE_VALUE");
    assert_eq!(code(r#"["status","nope"]"#), "ERR_INVALID_STATE_VALUE");
    assert_eq!(code(r#"["createdAt",null]"#), "ERR_INVALID_STATE_VALUE");
    assert_eq!(code(r#"["error",1]"#), "ERR_INVALID_STATE_VALUE");
    assert_eq!(code(r#"["a",{"b":1}]"#), "ERR_INVALID_STATE_UPDATE");
    let long = format!(r#"["{}",1]"#, "k".repeat(limits::MAX_KEY_BYTES + 1));
    assert_eq!(code(&long), "ERR_STATE_TOO_LARGE");
  }

  #[test]
  fn lone_surrogates_read_as_replacement_characters() {
    let p = parse_pairs(r#"["a","x\ud800y","b","\ud83d\ude00","c","\\ud800"]"#).unwrap();
    assert_eq!(p.custom[0].1, Some(Value::from("x\u{FFFD}y")));
    assert_eq!(p.custom[1].1, Some(Value::from("😀")));
    assert_eq!(p.custom[2].1, Some(Value::from("\\ud800")));
  }
}
