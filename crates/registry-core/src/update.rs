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
      "null or one of 'connecting', 'qr', 'open', 'closed', 'loggedOut', 'replaced', 'restartRequired', 'leaseLost'",
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

fn not_flat() -> RegistryError {
  RegistryError::InvalidStateUpdate(
    "updateSessionState: malformed flat form of an update (index.js writes it)".into(),
  )
}

/// One value of the flat form.
enum Flat {
  Undefined,
  Null,
  Bool(bool),
  Num(f64),
  Str(String),
}

/// Reads the flat form of an update, which index.js builds by string concatenation (cheaper
/// than `JSON.stringify`) for an object whose values are all primitives. In UTF-16 units, as
/// JavaScript holds it, pair after pair: the key as `<length>:<units>`, then the value: `u`
/// (undefined), `n` (null), `t` / `f`, `d<number as String(n)>;`, or `s<length>:<units>`.
/// Strings are read as Node-API reads them (a lone surrogate becomes U+FFFD). The same rules,
/// limits and error messages as the binding's reading of the object itself; nothing is applied
/// on an error.
pub fn parse_flat(units: &[u16]) -> Result<StatePatch, RegistryError> {
  let mut r = Reader { units, at: 0 };
  let mut patch = StatePatch::default();
  let mut budget = Budget::default();
  while r.at < units.len() {
    // Known keys are matched without a heap copy; only kept keys are copied.
    let key_units = r.counted()?;
    let mut buf = [0u8; 64];
    let owned;
    let key: &str = match ascii_in(key_units, &mut buf) {
      Some(k) => k,
      None => {
        owned = String::from_utf16_lossy(key_units);
        &owned
      }
    };
    budget
      .string(key, limits::MAX_KEY_BYTES, "a key")
      .map_err(|w| too_large("", &w))?;
    let v = r.value()?;
    match top_key(key)? {
      TopKey::LastActivity => {}
      TopKey::CreatedAt => {
        patch.created_at = Some(created_at(match v {
          Flat::Num(n) => Some(n),
          _ => None,
        })?)
      }
      TopKey::IsConnected => {
        patch.is_connected = Some(is_connected(match v {
          Flat::Bool(b) => Some(b),
          _ => None,
        })?)
      }
      TopKey::Error => {
        patch.error = Some(match v {
          Flat::Str(s) => {
            budget
              .string(&s, limits::MAX_STRING_BYTES, "a string")
              .map_err(|w| too_large("error", &w))?;
            Some(s)
          }
          Flat::Null | Flat::Undefined => None,
          _ => return Err(wrong_error()),
        })
      }
      TopKey::Status => {
        patch.status = Some(match v {
          Flat::Null | Flat::Undefined => None,
          Flat::Str(s) => {
            budget
              .string(&s, limits::MAX_STRING_BYTES, "a string")
              .map_err(|w| too_large("status", &w))?;
            Some(status(Some(&s))?)
          }
          _ => Some(status(None)?),
        })
      }
      TopKey::Custom => {
        let path = short(key);
        budget
          .count_values(1, "has too many values")
          .map_err(|w| too_large(&path, &w))?;
        let value = match v {
          Flat::Undefined => None,
          Flat::Null => Some(Value::Null),
          Flat::Bool(b) => Some(Value::Bool(b)),
          // Non-finite numbers become null, as JSON has them.
          Flat::Num(n) => Some(Number::from_f64(n).map_or(Value::Null, Value::Number)),
          Flat::Str(s) => {
            budget
              .string(&s, limits::MAX_STRING_BYTES, "a string")
              .map_err(|w| too_large(&path, &w))?;
            Some(Value::String(s))
          }
        };
        patch.custom.push((key.to_owned(), value));
      }
    }
    if patch.custom.len() > limits::MAX_VALUES {
      return Err(too_many_keys(patch.custom.len()));
    }
  }
  Ok(patch)
}

struct Reader<'a> {
  units: &'a [u16],
  at: usize,
}

impl<'a> Reader<'a> {
  fn next(&mut self) -> Result<u16, RegistryError> {
    let u = *self.units.get(self.at).ok_or_else(not_flat)?;
    self.at += 1;
    Ok(u)
  }

  /// The units up to (not including) `end`.
  fn until(&mut self, end: u8) -> Result<&'a [u16], RegistryError> {
    let start = self.at;
    let len = self.units[start..]
      .iter()
      .position(|&u| u == u16::from(end))
      .ok_or_else(not_flat)?;
    self.at = start + len + 1;
    Ok(&self.units[start..start + len])
  }

  /// `<length>:<units>`: the units.
  fn counted(&mut self) -> Result<&'a [u16], RegistryError> {
    let mut len = 0usize;
    for &d in self.until(b':')? {
      if !(u16::from(b'0')..=u16::from(b'9')).contains(&d) {
        return Err(not_flat());
      }
      len = len
        .checked_mul(10)
        .and_then(|l| l.checked_add(usize::from(d - u16::from(b'0'))))
        .ok_or_else(not_flat)?;
    }
    let end = self.at.checked_add(len).filter(|&e| e <= self.units.len());
    let end = end.ok_or_else(not_flat)?;
    let s = &self.units[self.at..end];
    self.at = end;
    Ok(s)
  }

  fn value(&mut self) -> Result<Flat, RegistryError> {
    Ok(match self.next()? {
      u if u == u16::from(b'u') => Flat::Undefined,
      u if u == u16::from(b'n') => Flat::Null,
      u if u == u16::from(b't') => Flat::Bool(true),
      u if u == u16::from(b'f') => Flat::Bool(false),
      u if u == u16::from(b'd') => {
        let mut buf = [0u8; 64];
        let text = ascii_in(self.until(b';')?, &mut buf).ok_or_else(not_flat)?;
        // String(n) is the shortest text that reads back as n; Rust reads it exactly, and
        // reads "Infinity" and "NaN" too.
        Flat::Num(text.parse::<f64>().map_err(|_| not_flat())?)
      }
      u if u == u16::from(b's') => Flat::Str(String::from_utf16_lossy(self.counted()?)),
      _ => return Err(not_flat()),
    })
  }
}

/// `units` as text in `buf`, if they are all ASCII and fit.
fn ascii_in<'b>(units: &[u16], buf: &'b mut [u8; 64]) -> Option<&'b str> {
  if units.len() > buf.len() || units.iter().any(|&u| u >= 0x80) {
    return None;
  }
  for (b, &u) in buf.iter_mut().zip(units) {
    *b = u as u8;
  }
  std::str::from_utf8(&buf[..units.len()]).ok()
}

#[cfg(test)]
mod tests {
  use super::*;

  fn flat(s: &str) -> Result<StatePatch, RegistryError> {
    parse_flat(&s.encode_utf16().collect::<Vec<_>>())
  }

  fn code(s: &str) -> &'static str {
    flat(s).unwrap_err().code()
  }

  #[test]
  fn the_flat_form_follows_the_rules() {
    let p = flat("11:isConnectedt5:errorn6:statuss4:open1:nd2;4:goneu12:lastActivityd5;1:sd1e+21;")
      .unwrap();
    assert_eq!(p.is_connected, Some(true));
    assert_eq!(p.error, Some(None));
    assert_eq!(p.status, Some(Some(Status::Open)));
    assert_eq!(p.custom[0], ("n".into(), Some(Value::from(2.0))));
    assert_eq!(p.custom[1], ("gone".into(), None));
    assert_eq!(p.custom[2], ("s".into(), Some(Value::from(1e21))));
    let p = flat("1:adNaN;1:bdInfinity;1:cd5e-324;").unwrap();
    assert_eq!(p.custom[0].1, Some(Value::Null));
    assert_eq!(p.custom[1].1, Some(Value::Null));
    assert_eq!(p.custom[2].1, Some(Value::from(5e-324)));
    assert_eq!(code("9:__proto__d1;"), "ERR_FORBIDDEN_STATE_KEY");
    assert_eq!(code("8:connectsd1;"), "ERR_READ_ONLY_STATE_KEY");
    assert_eq!(code("11:isConnecteds3:yes"), "ERR_INVALID_STATE_VALUE");
    assert_eq!(code("6:statuss4:nope"), "ERR_INVALID_STATE_VALUE");
    assert_eq!(code("9:createdAtn"), "ERR_INVALID_STATE_VALUE");
    assert_eq!(code("9:createdAtdNaN;"), "ERR_INVALID_STATE_VALUE");
    assert_eq!(code("5:errord1;"), "ERR_INVALID_STATE_VALUE");
    assert_eq!(code("1:ax"), "ERR_INVALID_STATE_UPDATE");
    assert_eq!(code("5:a"), "ERR_INVALID_STATE_UPDATE");
    let long = format!(
      "{}:{}d1;",
      limits::MAX_KEY_BYTES + 1,
      "k".repeat(limits::MAX_KEY_BYTES + 1)
    );
    assert_eq!(code(&long), "ERR_STATE_TOO_LARGE");
  }

  #[test]
  fn lone_surrogates_read_as_replacement_characters() {
    let mut units: Vec<u16> = "1:as3:x".encode_utf16().collect();
    units.push(0xD800);
    units.push(u16::from(b'y'));
    let p = parse_flat(&units).unwrap();
    assert_eq!(p.custom[0].1, Some(Value::from("x\u{FFFD}y")));
  }
}
