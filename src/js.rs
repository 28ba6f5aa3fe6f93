//! Small safe-ish wrappers over raw Node-API calls, used by the JS-facing modules.
//!
//! All functions here must be called on the JS thread of `env`. A failed Node-API call is
//! reported as [`Fail::Js`]: usually a JS exception is pending (a getter or a socket method
//! threw), which the caller either clears (socket faults) or lets propagate (API calls).

use std::ffi::{c_char, CStr};
use std::ptr;

use napi::sys;

use registry_core::errors::RegistryError;

pub type Env = sys::napi_env;
pub type Value = sys::napi_value;

/// Why a JS-facing operation stopped.
#[derive(Debug)]
pub enum Fail {
  /// A registry error, to be thrown with its code.
  Registry(RegistryError),
  /// A Node-API call failed; a JS exception may be pending.
  Js,
}

impl From<RegistryError> for Fail {
  fn from(e: RegistryError) -> Self {
    Fail::Registry(e)
  }
}

pub type JsResult<T> = Result<T, Fail>;

#[inline]
pub fn ok(status: sys::napi_status) -> JsResult<()> {
  if status == sys::Status::napi_ok {
    Ok(())
  } else {
    Err(Fail::Js)
  }
}

macro_rules! out {
  ($call:ident($($arg:expr),*)) => {{
    let mut result = ptr::null_mut();
    ok(unsafe { sys::$call($($arg,)* &mut result) }).map(|_| result)
  }};
}

pub fn undefined(env: Env) -> Value {
  out!(napi_get_undefined(env)).unwrap_or(ptr::null_mut())
}

pub fn null(env: Env) -> Value {
  out!(napi_get_null(env)).unwrap_or(ptr::null_mut())
}

pub fn boolean(env: Env, v: bool) -> JsResult<Value> {
  out!(napi_get_boolean(env, v))
}

pub fn number(env: Env, v: f64) -> JsResult<Value> {
  out!(napi_create_double(env, v))
}

pub fn string(env: Env, s: &str) -> JsResult<Value> {
  out!(napi_create_string_utf8(
    env,
    s.as_ptr().cast(),
    s.len() as isize
  ))
}

pub fn opt_string(env: Env, s: Option<&str>) -> JsResult<Value> {
  match s {
    Some(s) => string(env, s),
    None => Ok(null(env)),
  }
}

pub fn opt_number(env: Env, v: Option<f64>) -> JsResult<Value> {
  match v {
    Some(v) => number(env, v),
    None => Ok(null(env)),
  }
}

pub fn object(env: Env) -> JsResult<Value> {
  out!(napi_create_object(env))
}

pub fn array(env: Env, len: usize) -> JsResult<Value> {
  out!(napi_create_array_with_length(env, len))
}

/// A new array holding `values`, in order.
pub fn array_of(env: Env, values: impl ExactSizeIterator<Item = Value>) -> JsResult<Value> {
  let arr = array(env, values.len())?;
  for (i, v) in values.enumerate() {
    set_element(env, arr, i as u32, v)?;
  }
  Ok(arr)
}

pub fn global(env: Env) -> JsResult<Value> {
  out!(napi_get_global(env))
}

pub fn type_of(env: Env, v: Value) -> sys::napi_valuetype {
  let mut t = sys::ValueType::napi_undefined;
  if v.is_null() || unsafe { sys::napi_typeof(env, v, &mut t) } != sys::Status::napi_ok {
    return sys::ValueType::napi_undefined;
  }
  t
}

pub fn is_object(env: Env, v: Value) -> bool {
  type_of(env, v) == sys::ValueType::napi_object
}

pub fn is_function(env: Env, v: Value) -> bool {
  type_of(env, v) == sys::ValueType::napi_function
}

pub fn is_nullish(env: Env, v: Value) -> bool {
  matches!(
    type_of(env, v),
    sys::ValueType::napi_undefined | sys::ValueType::napi_null
  )
}

pub fn is_array(env: Env, v: Value) -> bool {
  let mut r = false;
  unsafe { sys::napi_is_array(env, v, &mut r) == sys::Status::napi_ok && r }
}

pub fn get_bool(env: Env, v: Value) -> Option<bool> {
  let mut r = false;
  (type_of(env, v) == sys::ValueType::napi_boolean
    && unsafe { sys::napi_get_value_bool(env, v, &mut r) } == sys::Status::napi_ok)
    .then_some(r)
}

pub fn get_number(env: Env, v: Value) -> Option<f64> {
  let mut r = 0.0;
  (type_of(env, v) == sys::ValueType::napi_number
    && unsafe { sys::napi_get_value_double(env, v, &mut r) } == sys::Status::napi_ok)
    .then_some(r)
}

/// Reads a JS string with one Node-API call when it fits in a stack buffer.
pub fn get_string(env: Env, v: Value) -> Option<String> {
  if type_of(env, v) != sys::ValueType::napi_string {
    return None;
  }
  with_str(env, v, |s| s.to_owned())
}

/// Runs `f` on the UTF-8 text of the JS string `v` (which must be a string), without a heap
/// allocation for strings under 256 bytes.
pub fn with_str<T>(env: Env, v: Value, f: impl FnOnce(&str) -> T) -> Option<T> {
  let mut buf = [0u8; 256];
  let mut len = 0usize;
  let status = unsafe {
    sys::napi_get_value_string_utf8(env, v, buf.as_mut_ptr().cast(), buf.len(), &mut len)
  };
  if status != sys::Status::napi_ok {
    return None;
  }
  // Node copies whole characters only, so a string is complete when at least one more
  // character (up to 4 bytes) would still have fitted.
  if len + 4 < buf.len() {
    return std::str::from_utf8(&buf[..len]).ok().map(f);
  }
  // Possibly truncated: ask for the length, then read it whole.
  let mut full = 0usize;
  if unsafe { sys::napi_get_value_string_utf8(env, v, ptr::null_mut(), 0, &mut full) }
    != sys::Status::napi_ok
  {
    return None;
  }
  let mut heap = vec![0u8; full + 1];
  if unsafe {
    sys::napi_get_value_string_utf8(env, v, heap.as_mut_ptr().cast(), heap.len(), &mut len)
  } != sys::Status::napi_ok
  {
    return None;
  }
  heap.truncate(len);
  String::from_utf8(heap).ok().map(|s| f(&s))
}

/// Why a value cannot be read as a session id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadId {
  NotString,
  /// The string holds a lone surrogate: UTF-8 cannot carry it, and reading it as U+FFFD would
  /// make `'a\uD800'` and `'a\uDC00'` the same session.
  LoneSurrogate,
}

/// Runs `f` on the text of the session id `v`: a string whose every UTF-16 unit UTF-8 can
/// carry. Only a text with U+FFFD in it (which Node-API also writes for a lone surrogate) is
/// read a second time, as UTF-16, to tell the two apart.
#[inline]
pub fn with_id<T>(env: Env, v: Value, f: impl FnOnce(&str) -> T) -> Result<T, BadId> {
  if type_of(env, v) != sys::ValueType::napi_string {
    return Err(BadId::NotString);
  }
  with_str(env, v, |s| {
    if s.contains(char::REPLACEMENT_CHARACTER) && has_lone_surrogate(env, v) {
      Err(BadId::LoneSurrogate)
    } else {
      Ok(f(s))
    }
  })
  .unwrap_or(Err(BadId::NotString))
}

/// Whether the JS string `v` holds a UTF-16 surrogate without its other half.
#[cold]
pub fn has_lone_surrogate(env: Env, v: Value) -> bool {
  let mut len = 0usize;
  if unsafe { sys::napi_get_value_string_utf16(env, v, ptr::null_mut(), 0, &mut len) }
    != sys::Status::napi_ok
  {
    return false;
  }
  let mut units = vec![0u16; len + 1];
  if unsafe { sys::napi_get_value_string_utf16(env, v, units.as_mut_ptr(), units.len(), &mut len) }
    != sys::Status::napi_ok
  {
    return false;
  }
  units.truncate(len);
  char::decode_utf16(units).any(|c| c.is_err())
}

/// The length of the JS string `v` in UTF-16 units, without copying it (`None`: not a string).
pub fn string_units(env: Env, v: Value) -> Option<usize> {
  let mut len = 0usize;
  (unsafe { sys::napi_get_value_string_utf16(env, v, ptr::null_mut(), 0, &mut len) }
    == sys::Status::napi_ok)
    .then_some(len)
}

/// The signature of a native function's callback.
pub type Callback = unsafe extern "C" fn(Env, sys::napi_callback_info) -> Value;

/// A native function named `name`, calling `cb` with `data`.
pub fn function(
  env: Env,
  name: &CStr,
  cb: Callback,
  data: *mut std::ffi::c_void,
) -> JsResult<Value> {
  out!(napi_create_function(env, name.as_ptr(), -1, Some(cb), data))
}

/// Sets each `(name, callback)` on `exports` as a raw native function: for the calls where
/// napi-rs's generic wrapper of a `#[napi]` function would be a large part of the cost.
pub fn install_raw(env: Env, exports: Value, raw: &[(&CStr, Callback)]) -> JsResult<()> {
  for &(name, cb) in raw {
    set_named(
      env,
      exports,
      name,
      function(env, name, cb, ptr::null_mut())?,
    )?;
  }
  Ok(())
}

/// Runs the body of a native callback. A Rust panic inside becomes a thrown `ERR_INTERNAL`
/// instead of unwinding into Node: a panic cannot cross an `extern "C"` frame, so it would
/// abort the process.
pub fn guard(env: Env, body: impl FnOnce() -> Value) -> Value {
  match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
    Ok(v) => v,
    Err(panic) => {
      let what = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into());
      throw_fail(
        env,
        Fail::Registry(RegistryError::Internal(format!(
          "the registry failed inside (please report it): {what}"
        ))),
      );
      ptr::null_mut()
    }
  }
}

/// Ends a native callback: the value, or `NULL` with the failure thrown.
pub fn callback_result(env: Env, r: JsResult<Value>) -> Value {
  r.unwrap_or_else(|f| {
    throw_fail(env, f);
    ptr::null_mut()
  })
}

/// The first `N` arguments (missing ones are `undefined`, as Node-API fills them) and the
/// function's data pointer.
#[inline(always)]
pub unsafe fn cb_args<const N: usize>(
  env: Env,
  info: sys::napi_callback_info,
) -> Option<([Value; N], *mut std::ffi::c_void)> {
  let mut argc = N;
  let mut argv = [ptr::null_mut(); N];
  let mut data = ptr::null_mut();
  let status = unsafe {
    sys::napi_get_cb_info(
      env,
      info,
      &mut argc,
      argv.as_mut_ptr(),
      ptr::null_mut(),
      &mut data,
    )
  };
  (status == sys::Status::napi_ok).then_some((argv, data))
}

pub fn get_named(env: Env, obj: Value, key: &CStr) -> JsResult<Value> {
  out!(napi_get_named_property(env, obj, key.as_ptr()))
}

pub fn set_named(env: Env, obj: Value, key: &CStr, v: Value) -> JsResult<()> {
  ok(unsafe { sys::napi_set_named_property(env, obj, key.as_ptr(), v) })
}

pub fn get_property(env: Env, obj: Value, key: Value) -> JsResult<Value> {
  out!(napi_get_property(env, obj, key))
}

/// Defines an own enumerable data property: unlike assignment it never runs a setter, so a
/// key such as `__proto__` cannot reach the prototype.
pub fn define_value(env: Env, obj: Value, key: &str, v: Value) -> JsResult<()> {
  define(env, obj, ptr::null(), string(env, key)?, v)
}

/// Defines the own writable, enumerable, configurable data property named `utf8name` (a
/// NUL-terminated string) or else `name`.
fn define(env: Env, obj: Value, utf8name: *const c_char, name: Value, v: Value) -> JsResult<()> {
  let desc = sys::napi_property_descriptor {
    utf8name,
    name,
    method: None,
    getter: None,
    setter: None,
    value: v,
    attributes: sys::PropertyAttributes::writable
      | sys::PropertyAttributes::enumerable
      | sys::PropertyAttributes::configurable,
    data: ptr::null_mut(),
  };
  ok(unsafe { sys::napi_define_properties(env, obj, 1, &desc) })
}

/// Whether `a` and `b` are the same value (`===`).
pub fn strict_equals(env: Env, a: Value, b: Value) -> bool {
  let mut same = false;
  unsafe { sys::napi_strict_equals(env, a, b, &mut same) == sys::Status::napi_ok && same }
}

/// Defines element `i` of a fresh array as an own data property: assignment would run a
/// setter that a caller put on `Array.prototype` for that index, JavaScript running in the
/// middle of building an answer.
pub fn set_element(env: Env, arr: Value, i: u32, v: Value) -> JsResult<()> {
  // The index in decimal, NUL-terminated: at most 10 digits.
  let mut name = [0u8; 11];
  let mut at = name.len() - 1;
  let mut rest = i;
  loop {
    at -= 1;
    name[at] = b'0' + (rest % 10) as u8;
    rest /= 10;
    if rest == 0 {
      break;
    }
  }
  define(env, arr, name[at..].as_ptr().cast(), ptr::null_mut(), v)
}

pub fn get_element(env: Env, arr: Value, i: u32) -> JsResult<Value> {
  out!(napi_get_element(env, arr, i))
}

/// The length of the array `arr` (an error for anything else, never a silent 0).
pub fn array_len(env: Env, arr: Value) -> JsResult<u32> {
  let mut n = 0;
  ok(unsafe { sys::napi_get_array_length(env, arr, &mut n) })?;
  Ok(n)
}

/// The own enumerable string keys of `obj`, in `Object.keys` order.
pub fn own_keys(env: Env, obj: Value) -> JsResult<Value> {
  out!(napi_get_all_property_names(
    env,
    obj,
    sys::KeyCollectionMode::own_only,
    sys::KeyFilter::enumerable | sys::KeyFilter::skip_symbols,
    sys::KeyConversion::numbers_to_strings
  ))
}

pub fn call(env: Env, recv: Value, f: Value, args: &[Value]) -> JsResult<Value> {
  out!(napi_call_function(env, recv, f, args.len(), args.as_ptr()))
}

/// Calls `obj[key](...args)`.
pub fn call_method(env: Env, obj: Value, key: &CStr, args: &[Value]) -> JsResult<Value> {
  let f = get_named(env, obj, key)?;
  if !is_function(env, f) {
    return Err(Fail::Registry(RegistryError::Internal(format!(
      "{} is not a function",
      key.to_string_lossy()
    ))));
  }
  call(env, obj, f, args)
}

pub fn exception_pending(env: Env) -> bool {
  let mut pending = false;
  // Not checked: it fails only for a null `env` or result pointer, and neither is ever null
  // here; `pending` then stays false.
  unsafe { sys::napi_is_exception_pending(env, &mut pending) };
  pending
}

/// Clears a pending exception and returns its message (for recording a socket's fault).
pub fn take_exception(env: Env) -> Option<String> {
  if !exception_pending(env) {
    return None;
  }
  let mut err = ptr::null_mut();
  if unsafe { sys::napi_get_and_clear_last_exception(env, &mut err) } != sys::Status::napi_ok {
    return Some("unknown error".into());
  }
  Some(describe(env, err))
}

/// A short text for a thrown value: its `message` if it has one, else its string form.
pub fn describe(env: Env, v: Value) -> String {
  if is_object(env, v) {
    if let Ok(m) = get_named(env, v, c"message") {
      if let Some(s) = get_string(env, m) {
        return s;
      }
    }
  }
  let mut s = ptr::null_mut();
  if unsafe { sys::napi_coerce_to_string(env, v, &mut s) } == sys::Status::napi_ok {
    if let Some(text) = get_string(env, s) {
      return text;
    }
  }
  take_exception(env);
  "unknown error".into()
}

/// Throws `e` as a JS `Error` (or `TypeError`) with `e.code()` as its `code`, unless an
/// exception is already pending (that one is what the caller sees).
pub fn throw_registry_error(env: Env, e: &RegistryError) {
  if exception_pending(env) {
    return;
  }
  if let Ok(err) = error_value(env, e) {
    // Not checked: it fails only when an exception is already pending (excluded above) or for
    // null arguments; either way there is no other way to report this one.
    unsafe { sys::napi_throw(env, err) };
  }
}

/// Creates (without throwing) the JS error object for `e`, for rejecting a promise.
pub fn error_value(env: Env, e: &RegistryError) -> JsResult<Value> {
  let code = string(env, e.code())?;
  let msg = string(env, &e.to_string())?;
  let mut err = ptr::null_mut();
  ok(unsafe {
    if e.is_type_error() {
      sys::napi_create_type_error(env, code, msg, &mut err)
    } else if e.is_range_error() {
      sys::napi_create_range_error(env, code, msg, &mut err)
    } else {
      sys::napi_create_error(env, code, msg, &mut err)
    }
  })?;
  // What a caller may act on besides the code, as properties of the error.
  match e {
    RegistryError::ClusterHeld { node_id, .. }
    | RegistryError::ClusterClaimTimeout { node_id, .. } => {
      define_value(env, err, "owner", string(env, node_id)?)?
    }
    RegistryError::ClusterRecovering { retry_ms, .. } => {
      define_value(env, err, "retryMs", number(env, *retry_ms as f64)?)?
    }
    _ => {}
  }
  Ok(err)
}

/// Ends a JS-facing call: throws what went wrong, so the caller returns to JS.
pub fn throw_fail(env: Env, f: Fail) {
  match f {
    Fail::Registry(e) => throw_registry_error(env, &e),
    // Usually a JS exception is pending and is kept; otherwise this says what happened.
    Fail::Js => throw_registry_error(
      env,
      &RegistryError::Internal("a Node-API call failed unexpectedly".into()),
    ),
  }
}

/// Milliseconds since the epoch, as `Date.now()` gives.
pub fn now_ms() -> f64 {
  // Whole seconds and milliseconds as u64, not `as_millis()`: its u128 made the conversion to
  // f64 a library call that perf showed on every update and registration.
  std::time::SystemTime::now()
    .duration_since(std::time::UNIX_EPOCH)
    .map(|d| (d.as_secs() * 1000 + u64::from(d.subsec_millis())) as f64)
    .unwrap_or(0.0)
}
