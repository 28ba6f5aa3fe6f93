//! Conversions between JS values and the registry's plain-Rust data.

use napi::sys::ValueType;
use serde_json::{Map, Number, Value as Json};

use crate::js::{self, Env, Fail, JsResult, Value};
use registry_core::layout::{self, Field, Kind};
use registry_core::state::{limits, SessionState, StatePatch, Status, FORBIDDEN_KEYS};
use registry_core::update::{self, short, Budget, TopKey};

/// A session's state as the plain JS object `getSessionState` returns, field by field from
/// [`layout::FIELDS`] (the entry module shapes the same objects from the same table, faster;
/// this one serves events and promises). Every property is defined, never assigned, so no
/// setter on `Object.prototype` runs while it is built.
pub fn state_to_js(env: Env, s: &SessionState) -> JsResult<Value> {
  let o = fields_to_js(env, s, layout::FIELDS)?;
  for (k, v) in s.custom() {
    js::define_value(env, o, k, json_to_js(env, v)?)?;
  }
  Ok(o)
}

fn fields_to_js(env: Env, s: &SessionState, fields: &[Field]) -> JsResult<Value> {
  let o = js::object(env)?;
  for field in fields {
    let v = match field.kind {
      Kind::Num(get) => js::number(env, get(s))?,
      Kind::OptNum(get) => js::opt_number(env, get(s))?,
      Kind::Bool(get) => js::boolean(env, get(s))?,
      Kind::OptStr(get) => js::opt_string(env, get(s))?,
      Kind::Status(get) => js::opt_string(env, get(s).map(Status::as_str))?,
      Kind::Group(present, inner) if present(s) => fields_to_js(env, s, inner)?,
      Kind::Group(..) => js::null(env),
    };
    js::define_value(env, o, field.name, v)?;
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

/// One step of the path to a value. Paths are spelled out only when a value is refused, from
/// the steps collected while the error unwinds: building them on the way down made a deep
/// value with long keys cost quadratic time and memory.
enum Step {
  Key(String),
  Index(u32),
}

/// Why reading a state value stopped.
enum StopKind {
  /// A Node-API call failed or the caller's own code threw (a getter, a Proxy trap, toJSON).
  Fail(Fail),
  NotData(String),
  Forbidden(String),
  TooLarge(String),
}

/// A refusal, with the path below the update's key (innermost step first).
struct Stop {
  kind: StopKind,
  path: Vec<Step>,
}

impl Stop {
  fn new(kind: StopKind) -> Stop {
    Stop {
      kind,
      path: Vec::new(),
    }
  }

  fn at(mut self, step: Step) -> Stop {
    if !matches!(self.kind, StopKind::Fail(_)) {
      self.path.push(step);
    }
    self
  }

  /// The error for the update key `top`.
  fn into_fail(self, top: &str) -> Fail {
    let mut path = short(top);
    for step in self.path.iter().rev() {
      match step {
        Step::Key(k) => {
          path.push('.');
          path.push_str(&short(k));
        }
        Step::Index(i) => path.push_str(&format!("[{i}]")),
      }
    }
    Fail::Registry(match self.kind {
      StopKind::Fail(f) => return f,
      StopKind::NotData(what) => update::not_data(&path, &what),
      StopKind::Forbidden(key) => update::forbidden(&key, &path),
      StopKind::TooLarge(what) => update::too_large(&path, &what),
    })
  }
}

impl From<Fail> for Stop {
  fn from(f: Fail) -> Stop {
    Stop::new(StopKind::Fail(f))
  }
}

fn not_data(what: &str) -> Stop {
  Stop::new(StopKind::NotData(what.into()))
}

fn too_large(what: String) -> Stop {
  Stop::new(StopKind::TooLarge(what))
}

/// The key `toJSON` is called with: the property name, or the array index as a string.
#[derive(Clone, Copy)]
enum KeyArg {
  Js(Value),
  Index(u32),
}

/// Reads one `updateSessionState` argument, within the limits of [`limits`], in time and memory
/// linear in what it reads.
struct Walk {
  env: Env,
  budget: Budget,
  /// The objects being read, outermost first: only looked at when the depth limit is hit, to
  /// tell a circular value from a deep one.
  ancestors: Vec<Value>,
}

impl Walk {
  fn new(env: Env) -> Walk {
    Walk {
      env,
      budget: Budget::default(),
      ancestors: Vec::new(),
    }
  }

  fn count_values(&mut self, n: usize, what: &str) -> Result<(), Stop> {
    self.budget.count_values(n, what).map_err(too_large)
  }

  /// A string of at most `max` UTF-8 bytes, its length checked before it is copied.
  fn string(&mut self, v: Value, max: usize, what: &str) -> Result<String, Stop> {
    let env = self.env;
    let units = js::string_units(env, v).ok_or(Fail::Js)?;
    Budget::check_units(units, max, what).map_err(too_large)?;
    let s = js::get_string(env, v).ok_or(Fail::Js)?;
    self.budget.take(s.len(), max, what).map_err(too_large)?;
    Ok(s)
  }

  fn key(&mut self, k: Value) -> Result<String, Stop> {
    self.string(k, limits::MAX_KEY_BYTES, "a key")
  }

  /// A JS value to JSON data with `JSON.stringify`'s rules (`toJSON` is honoured, `undefined`
  /// in an object drops the key and in an array becomes null, non-finite numbers become null),
  /// except that what JSON would silently lose (functions, symbols, bigints) is an error.
  /// `Ok(None)` is `undefined`. `depth` is 1 for the value of an update's key.
  fn value(&mut self, v: Value, key: KeyArg, depth: usize) -> Result<Option<Json>, Stop> {
    let env = self.env;
    self.count_values(1, "has too many values")?;
    let t = js::type_of(env, v);
    // Only objects nest: a number in an object at the deepest level is within it.
    if depth > limits::MAX_DEPTH && t == ValueType::napi_object {
      let circular = self.ancestors.iter().any(|a| js::strict_equals(env, *a, v));
      return Err(if circular {
        not_data("is circular")
      } else {
        too_large(format!(
          "is nested deeper than {} levels",
          limits::MAX_DEPTH
        ))
      });
    }
    match t {
      ValueType::napi_undefined => Ok(None),
      ValueType::napi_null => Ok(Some(Json::Null)),
      ValueType::napi_boolean => Ok(js::get_bool(env, v).map(Json::Bool)),
      ValueType::napi_number => {
        let n = js::get_number(env, v).unwrap_or(f64::NAN);
        Ok(Some(
          Number::from_f64(n).map(Json::Number).unwrap_or(Json::Null),
        ))
      }
      ValueType::napi_string => Ok(Some(Json::String(self.string(
        v,
        limits::MAX_STRING_BYTES,
        "a string",
      )?))),
      ValueType::napi_object => {
        let to_json = js::get_named(env, v, c"toJSON")?;
        if js::is_function(env, to_json) {
          let k = match key {
            KeyArg::Js(k) => k,
            KeyArg::Index(i) => js::string(env, &i.to_string())?,
          };
          let replaced = js::call(env, v, to_json, &[k])?;
          if js::is_object(env, replaced)
            && js::get_named(env, replaced, c"toJSON").is_ok_and(|f| js::is_function(env, f))
          {
            return Err(not_data(
              "has a toJSON() that returns another object with toJSON()",
            ));
          }
          return self.value(replaced, key, depth + 1);
        }
        self.ancestors.push(v);
        let read = if js::is_array(env, v) {
          self.array(v, depth)
        } else {
          self.object(v, depth)
        };
        self.ancestors.pop();
        read.map(Some)
      }
      ValueType::napi_function => Err(not_data("is a function")),
      ValueType::napi_symbol => Err(not_data("is a symbol")),
      ValueType::napi_bigint => Err(not_data("is a bigint")),
      _ => Err(not_data("is not data")),
    }
  }

  fn array(&mut self, v: Value, depth: usize) -> Result<Json, Stop> {
    let env = self.env;
    let n = js::array_len(env, v)?;
    // Checked before anything is allocated: the length is the caller's claim, not its content.
    if n as usize > self.budget.values_left() {
      return Err(too_large(format!(
        "has {n} elements; one update holds at most {} values",
        limits::MAX_VALUES
      )));
    }
    let mut out = Vec::with_capacity(n as usize);
    for i in 0..n {
      let item = js::get_element(env, v, i)?;
      let j = self
        .value(item, KeyArg::Index(i), depth + 1)
        .map_err(|s| s.at(Step::Index(i)))?;
      out.push(j.unwrap_or(Json::Null));
    }
    Ok(Json::Array(out))
  }

  fn object(&mut self, v: Value, depth: usize) -> Result<Json, Stop> {
    let env = self.env;
    let keys = js::own_keys(env, v)?;
    let n = js::array_len(env, keys)?;
    if n as usize > self.budget.values_left() {
      return Err(too_large(format!(
        "has {n} keys; one update holds at most {} values",
        limits::MAX_VALUES
      )));
    }
    let mut map = Map::new();
    for i in 0..n {
      let k = js::get_element(env, keys, i)?;
      if js::type_of(env, k) != ValueType::napi_string {
        continue;
      }
      let key = self.key(k)?;
      if FORBIDDEN_KEYS.contains(&key.as_str()) {
        return Err(Stop::new(StopKind::Forbidden(key.clone())).at(Step::Key(key)));
      }
      let item = js::get_property(env, v, k)?;
      match self.value(item, KeyArg::Js(k), depth + 1) {
        Ok(Some(j)) => {
          map.insert(key, j);
        }
        Ok(None) => {}
        Err(s) => return Err(s.at(Step::Key(key))),
      }
    }
    Ok(Json::Object(map))
  }
}

/// Reads and checks an `updateSessionState` argument with the rules of `registry_core::update`.
/// Nothing is applied unless all of it is valid and within [`limits`].
pub fn parse_patch(env: Env, updates: Value) -> JsResult<StatePatch> {
  let mut patch = StatePatch::default();
  match js::type_of(env, updates) {
    ValueType::napi_undefined | ValueType::napi_null => return Ok(patch),
    ValueType::napi_object if !js::is_array(env, updates) => {}
    _ => return Err(update::not_an_object().into()),
  }
  let mut walk = Walk::new(env);
  let keys = js::own_keys(env, updates)?;
  let n = js::array_len(env, keys)?;
  if n as usize > limits::MAX_VALUES {
    return Err(update::too_many_keys(n as usize).into());
  }
  for i in 0..n {
    let k = js::get_element(env, keys, i)?;
    if js::type_of(env, k) != ValueType::napi_string {
      continue;
    }
    let key = walk.key(k).map_err(|s| s.into_fail(""))?;
    let which = update::top_key(&key)?;
    let v = js::get_property(env, updates, k)?;
    match which {
      TopKey::LastActivity => {}
      TopKey::CreatedAt => patch.created_at = Some(update::created_at(js::get_number(env, v))?),
      TopKey::IsConnected => patch.is_connected = Some(update::is_connected(js::get_bool(env, v))?),
      TopKey::Error => {
        patch.error = Some(read_error(&mut walk, v).map_err(|s| s.into_fail("error"))?)
      }
      TopKey::Status => {
        patch.status = Some(if js::is_nullish(env, v) {
          None
        } else {
          let text = if js::type_of(env, v) == ValueType::napi_string {
            Some(
              walk
                .string(v, limits::MAX_STRING_BYTES, "a string")
                .map_err(|s| s.into_fail("status"))?,
            )
          } else {
            None
          };
          Some(update::status(text.as_deref())?)
        })
      }
      TopKey::Custom => {
        let value = walk
          .value(v, KeyArg::Js(k), 1)
          .map_err(|s| s.into_fail(&key))?;
        patch.custom.push((key, value));
      }
    }
  }
  Ok(patch)
}

/// `error` may be a message, null/undefined (no error) or an Error (its message is kept).
fn read_error(walk: &mut Walk, v: Value) -> Result<Option<String>, Stop> {
  let env = walk.env;
  let wrong = || Stop::from(Fail::Registry(update::wrong_error()));
  match js::type_of(env, v) {
    ValueType::napi_undefined | ValueType::napi_null => Ok(None),
    ValueType::napi_string => walk
      .string(v, limits::MAX_STRING_BYTES, "a string")
      .map(Some),
    ValueType::napi_object => {
      let m = js::get_named(env, v, c"message")?;
      if js::type_of(env, m) != ValueType::napi_string {
        return Err(wrong());
      }
      walk
        .string(m, limits::MAX_STRING_BYTES, "a message")
        .map(Some)
    }
    _ => Err(wrong()),
  }
}
