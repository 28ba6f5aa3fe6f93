//! Conversions between JS values and the registry's plain-Rust data.

use std::ffi::CStr;

use napi::sys::ValueType;
use serde_json::{Map, Number, Value as Json};

use crate::errors::RegistryError;
use crate::js::{self, Env, Fail, JsResult, Value};
use crate::state::{SessionState, StatePatch, Status, FORBIDDEN_KEYS, READ_ONLY_KEYS};

/// The times `getStats` can print as `YYYY-MM-DDTHH:mm:ss.sssZ` (years 0000 to 9999).
const MIN_TIME_MS: f64 = -62_167_219_200_000.0;
const MAX_TIME_MS: f64 = 253_402_300_799_999.0;

/// Deepest nesting accepted in a custom state value (also stops cycles).
const MAX_DEPTH: usize = 64;

fn set(env: Env, obj: Value, key: &CStr, v: JsResult<Value>) -> JsResult<()> {
  js::set_named(env, obj, key, v?)
}

/// A session's state as the plain JS object `getSessionState` returns.
pub fn state_to_js(env: Env, s: &SessionState) -> JsResult<Value> {
  let o = js::object(env)?;
  set(env, o, c"createdAt", js::number(env, s.created_at))?;
  set(env, o, c"lastActivity", js::number(env, s.last_activity))?;
  set(env, o, c"isConnected", js::boolean(env, s.is_connected))?;
  set(env, o, c"error", js::opt_string(env, s.error.as_deref()))?;
  set(
    env,
    o,
    c"status",
    js::opt_string(env, s.status.map(Status::as_str)),
  )?;
  set(env, o, c"tracked", js::boolean(env, s.tracked))?;
  let ld = match &s.last_disconnect {
    Some(ld) => {
      let d = js::object(env)?;
      set(env, d, c"code", js::opt_number(env, ld.code.map(f64::from)))?;
      set(env, d, c"reason", js::opt_string(env, ld.reason.as_deref()))?;
      set(
        env,
        d,
        c"message",
        js::opt_string(env, ld.message.as_deref()),
      )?;
      set(env, d, c"at", js::number(env, ld.at))?;
      d
    }
    None => js::null(env),
  };
  js::set_named(env, o, c"lastDisconnect", ld)?;
  let me = match &s.me {
    Some(me) => {
      let m = js::object(env)?;
      set(env, m, c"id", js::opt_string(env, me.id.as_deref()))?;
      set(env, m, c"lid", js::opt_string(env, me.lid.as_deref()))?;
      m
    }
    None => js::null(env),
  };
  js::set_named(env, o, c"me", me)?;
  set(env, o, c"hasQr", js::boolean(env, s.has_qr))?;
  set(env, o, c"connects", js::number(env, f64::from(s.connects)))?;
  set(
    env,
    o,
    c"disconnects",
    js::number(env, f64::from(s.disconnects)),
  )?;
  set(env, o, c"connectedAt", js::opt_number(env, s.connected_at))?;
  set(
    env,
    o,
    c"disconnectedAt",
    js::opt_number(env, s.disconnected_at),
  )?;
  set(
    env,
    o,
    c"lastInboundAt",
    js::opt_number(env, s.last_inbound_at),
  )?;
  set(
    env,
    o,
    c"lastOutboundAt",
    js::opt_number(env, s.last_outbound_at),
  )?;
  set(env, o, c"messagesIn", js::number(env, s.messages_in as f64))?;
  set(
    env,
    o,
    c"messagesOut",
    js::number(env, s.messages_out as f64),
  )?;
  set(env, o, c"threadId", js::number(env, f64::from(s.thread_id)))?;
  for (k, v) in &s.custom {
    js::define_value(env, o, k, json_to_js(env, v)?)?;
  }
  Ok(o)
}

/// JSON data to a fresh JS value. Object keys are defined, never assigned, so no key can
/// reach a prototype.
pub fn json_to_js(env: Env, v: &Json) -> JsResult<Value> {
  match v {
    Json::Null => Ok(js::null(env)),
    Json::Bool(b) => js::boolean(env, *b),
    Json::Number(n) => js::number(env, n.as_f64().unwrap_or(f64::NAN)),
    Json::String(s) => js::string(env, s),
    Json::Array(items) => {
      let arr = js::array(env, items.len())?;
      for (i, item) in items.iter().enumerate() {
        js::set_element(env, arr, i as u32, json_to_js(env, item)?)?;
      }
      Ok(arr)
    }
    Json::Object(map) => {
      let o = js::object(env)?;
      for (k, item) in map {
        js::define_value(env, o, k, json_to_js(env, item)?)?;
      }
      Ok(o)
    }
  }
}

fn invalid_value(path: &str, what: &str) -> Fail {
  Fail::Registry(RegistryError::InvalidStateValue(format!(
    "state value at '{path}' {what}; state values must be JSON data (strings, numbers, booleans, null, arrays, plain objects)"
  )))
}

fn check_key(path: &str, key: &str) -> JsResult<()> {
  if FORBIDDEN_KEYS.contains(&key) {
    return Err(Fail::Registry(RegistryError::ForbiddenStateKey(format!(
      "state key '{key}' at '{path}' is not allowed: it could change an object's prototype"
    ))));
  }
  Ok(())
}

/// A JS value to JSON data with `JSON.stringify`'s rules (`toJSON` is honoured, `undefined`
/// in an object drops the key and in an array becomes null, non-finite numbers become null),
/// except that what JSON would silently lose (functions, symbols, bigints) is an error.
/// `Ok(None)` is `undefined`.
pub fn js_to_json(env: Env, v: Value, path: &str, depth: usize) -> JsResult<Option<Json>> {
  if depth > MAX_DEPTH {
    return Err(invalid_value(path, "is nested too deeply (or is circular)"));
  }
  match js::type_of(env, v) {
    ValueType::napi_undefined => Ok(None),
    ValueType::napi_null => Ok(Some(Json::Null)),
    ValueType::napi_boolean => Ok(js::get_bool(env, v).map(Json::Bool)),
    ValueType::napi_number => {
      let n = js::get_number(env, v).unwrap_or(f64::NAN);
      Ok(Some(
        Number::from_f64(n).map(Json::Number).unwrap_or(Json::Null),
      ))
    }
    ValueType::napi_string => Ok(js::get_string(env, v).map(Json::String)),
    ValueType::napi_object => {
      let to_json = js::get_named(env, v, c"toJSON")?;
      if js::is_function(env, to_json) {
        let key = js::string(env, path.rsplit('.').next().unwrap_or(""))?;
        let replaced = js::call(env, v, to_json, &[key])?;
        if js::is_object(env, replaced)
          && js::get_named(env, replaced, c"toJSON").is_ok_and(|f| js::is_function(env, f))
        {
          return Err(invalid_value(
            path,
            "has a toJSON() that returns another object with toJSON()",
          ));
        }
        return js_to_json(env, replaced, path, depth + 1);
      }
      if js::is_array(env, v) {
        let n = js::array_len(env, v);
        let mut out = Vec::with_capacity(n as usize);
        for i in 0..n {
          let item = js::get_element(env, v, i)?;
          let item_path = format!("{path}[{i}]");
          out.push(js_to_json(env, item, &item_path, depth + 1)?.unwrap_or(Json::Null));
        }
        return Ok(Some(Json::Array(out)));
      }
      let keys = js::own_keys(env, v)?;
      let n = js::array_len(env, keys);
      let mut map = Map::new();
      for i in 0..n {
        let k = js::get_element(env, keys, i)?;
        let Some(key) = js::get_string(env, k) else {
          continue;
        };
        let key_path = format!("{path}.{key}");
        check_key(&key_path, &key)?;
        let item = js::get_property(env, v, k)?;
        if let Some(j) = js_to_json(env, item, &key_path, depth + 1)? {
          map.insert(key, j);
        }
      }
      Ok(Some(Json::Object(map)))
    }
    ValueType::napi_function => Err(invalid_value(path, "is a function")),
    ValueType::napi_symbol => Err(invalid_value(path, "is a symbol")),
    ValueType::napi_bigint => Err(invalid_value(path, "is a bigint")),
    _ => Err(invalid_value(path, "is not data")),
  }
}

fn wrong_type(key: &str, expected: &str) -> Fail {
  Fail::Registry(RegistryError::InvalidStateValue(format!(
    "state key '{key}' must be {expected}"
  )))
}

/// Reads and checks an `updateSessionState` argument. Nothing is applied unless all of it is
/// valid.
pub fn parse_patch(env: Env, updates: Value) -> JsResult<StatePatch> {
  let mut patch = StatePatch::default();
  match js::type_of(env, updates) {
    ValueType::napi_undefined | ValueType::napi_null => return Ok(patch),
    ValueType::napi_object if !js::is_array(env, updates) => {}
    _ => {
      return Err(Fail::Registry(RegistryError::InvalidStateUpdate(
        "updateSessionState(sessionId, updates): updates must be a plain object".into(),
      )))
    }
  }
  let keys = js::own_keys(env, updates)?;
  let n = js::array_len(env, keys);
  for i in 0..n {
    let k = js::get_element(env, keys, i)?;
    let Some(key) = js::get_string(env, k) else {
      continue;
    };
    check_key(&key, &key)?;
    if READ_ONLY_KEYS.contains(&key.as_str()) {
      return Err(Fail::Registry(RegistryError::ReadOnlyStateKey(format!(
        "state key '{key}' is kept by the registry and cannot be set with updateSessionState"
      ))));
    }
    let v = js::get_property(env, updates, k)?;
    match key.as_str() {
      // Always set to now, as socket-factory.js did.
      "lastActivity" => {}
      "createdAt" => {
        patch.created_at = Some(
          js::get_number(env, v)
            .filter(|n| (MIN_TIME_MS..=MAX_TIME_MS).contains(n))
            .ok_or_else(|| {
              wrong_type(
                "createdAt",
                "a number of epoch milliseconds within years 0000 to 9999",
              )
            })?,
        )
      }
      "isConnected" => {
        patch.is_connected =
          Some(js::get_bool(env, v).ok_or_else(|| wrong_type("isConnected", "a boolean"))?)
      }
      "error" => patch.error = Some(read_error(env, v)?),
      "status" => {
        patch.status = Some(if js::is_nullish(env, v) {
          None
        } else {
          Some(
            js::get_string(env, v)
              .and_then(|s| Status::parse(&s))
              .ok_or_else(|| {
                wrong_type(
                  "status",
                  "null or one of 'connecting', 'qr', 'open', 'closed', 'loggedOut', 'replaced', 'restartRequired'",
                )
              })?,
          )
        })
      }
      _ => {
        let value = js_to_json(env, v, &key, 1)?;
        patch.custom.push((key, value));
      }
    }
  }
  Ok(patch)
}

/// `error` may be a message, null/undefined (no error) or an Error (its message is kept).
fn read_error(env: Env, v: Value) -> JsResult<Option<String>> {
  match js::type_of(env, v) {
    ValueType::napi_undefined | ValueType::napi_null => Ok(None),
    ValueType::napi_string => Ok(js::get_string(env, v)),
    ValueType::napi_object => {
      let m = js::get_named(env, v, c"message")?;
      js::get_string(env, m)
        .map(Some)
        .ok_or_else(|| wrong_type("error", "a string, null, or an Error with a string message"))
    }
    _ => Err(wrong_type(
      "error",
      "a string, null, or an Error with a string message",
    )),
  }
}
