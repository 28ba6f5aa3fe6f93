//! Hot paths registered as raw Node-API callbacks, and result objects shaped in one crossing
//! (see bench/ for the measurements behind both).
//!
//! 1. Reading a session id. A `#[napi]` function pays for napi-rs's generic wrapper on every
//!    call; the raw callbacks here call `napi_get_cb_info` themselves and read the session id
//!    once, into the stack ([`with_id`]). (The socket lookups no longer cross at all: they are
//!    a JavaScript `Map` in index.js.)
//! 2. Results with many objects (`getStats`, `getAllSessions`, `getSessionState`). Setting a
//!    property through Node-API takes V8's generic runtime path (a lookup, a map transition, a
//!    migration) for every property of every object: about 16,000 instructions per session of
//!    `getStats` (callgrind). Here Rust packs the data into one string and one `ArrayBuffer`,
//!    and a small JavaScript function, compiled once per environment ([`SHAPERS_JS`]), turns
//!    them into the very same objects with object literals, which V8's compiler builds in a few
//!    instructions each. All data and logic stay in Rust; the JavaScript only shapes.
//!
//! [`install`] puts these functions on the exports object in place of the generated ones, so
//! the package loader (`index.js`, which copies `nativeBinding.getSocket` and friends after this
//! ran) hands them out under the usual names. Each must behave exactly as its `#[napi]` twin in
//! `api.rs`: same result for every argument (non-string ids included), same errors. The generated
//! functions stay reachable through `__bench.napi`, and `npm run bench -- --quick` (run in CI)
//! compares each pair on the same registry.

use std::ffi::{c_void, CStr};
use std::mem::MaybeUninit;
use std::ptr;

use napi::sys;

use crate::js::{self, Callback, Env, Fail, JsResult, Value};
use crate::tracking;
use registry_core::config;
use registry_core::state::{self, SessionState, Status};
use registry_core::stats;
use registry_core::table;

/// Replaced when the shapers compiled (they always should; if not, the generated functions
/// stay, which are correct, only slower).
const SHAPED: [(&CStr, Callback); 3] = [
  (c"getStats", get_stats),
  (c"getAllSessions", get_all_sessions),
  (c"getSessionState", get_session_state),
];

/// Replaces selected exports with raw callbacks. Runs once per environment, after napi-rs
/// has set the generated exports.
pub fn install(env: Env, exports: Value) -> JsResult<()> {
  let generated = js::object(env)?;
  let shapers = match Shapers::compile(env, exports) {
    Ok(s) => Some(s),
    Err(_) => {
      js::take_exception(env);
      None
    }
  };
  let data = shapers.map_or(ptr::null_mut(), |s| Box::into_raw(Box::new(s)));
  if !data.is_null() {
    let hook = unsafe { sys::napi_add_env_cleanup_hook(env, Some(free_shapers), data.cast()) };
    if hook != sys::Status::napi_ok {
      unsafe { free_shapers(data.cast()) };
      return Err(Fail::Js);
    }
  }
  let shaped: &[(&CStr, Callback)] = if data.is_null() { &[] } else { &SHAPED };
  for &(name, cb) in shaped {
    // Keep the generated function for the benchmark's before/after rows and parity checks.
    if let Ok(f) = js::get_named(env, exports, name) {
      if js::is_function(env, f) {
        js::set_named(env, generated, name, f)?;
      }
    }
    js::set_named(
      env,
      exports,
      name,
      js::function(env, name, cb, data.cast())?,
    )?;
  }
  install_bench_hooks(env, exports, generated)
}

/// The benchmark's helpers live on one non-enumerable `__bench` property of the exports.
///
/// Why this way: `bench/run.mjs` must measure the very binding the loader picked (a
/// `require` of a `.node` path could pick another copy), and the helpers must stay out of the
/// public API. napi-rs writes `index.d.ts` and the loader's export list from `#[napi]` items
/// only, so a property defined here is in neither; being non-enumerable it is not in
/// `Object.keys(require('baileys-socket-registry'))` nor a named ESM export either. The
/// bench reads `require('../index.js').__bench`.
fn install_bench_hooks(env: Env, exports: Value, generated: Value) -> JsResult<()> {
  let bench = js::object(env)?;
  let hooks: [(&CStr, &CStr, Callback); 4] = [
    (c"noop", c"__benchNoop", bench_noop),
    (c"noopNoArgs", c"__benchNoopNoArgs", bench_noop_no_args),
    (c"noopNumber", c"__benchNoopNumber", bench_noop_number),
    (c"readId", c"__benchReadId", bench_read_id),
  ];
  for (key, name, cb) in hooks {
    js::set_named(
      env,
      bench,
      key,
      js::function(env, name, cb, ptr::null_mut())?,
    )?;
  }
  js::set_named(env, bench, c"napi", generated)?;
  let desc = sys::napi_property_descriptor {
    utf8name: c"__bench".as_ptr(),
    name: ptr::null_mut(),
    method: None,
    getter: None,
    setter: None,
    value: bench,
    // Not enumerable, not writable, not configurable.
    attributes: sys::PropertyAttributes::default,
    data: ptr::null_mut(),
  };
  js::ok(unsafe { sys::napi_define_properties(env, exports, 1, &desc) })
}

/// Ids up to this many UTF-16 code units (minus one) are read into the stack.
const STACK_UNITS: usize = 128;

/// Runs `f` on the UTF-8 text of `v` if it is a session id (`None` otherwise): the same answer
/// as `js::with_id`, for less. A string with a lone surrogate is no session id (`None`): read
/// as U+FFFD it would find another session.
///
/// Why UTF-16: reading an id is most of a lookup's cost, and V8 copies a string out as UTF-16
/// (a widening copy) in less time than it encodes UTF-8 (profiled with callgrind:
/// `v8::String::WriteUtf8` was a fifth of a `getSocket`). An ASCII id is then narrowed here and
/// needs no UTF-8 validation; anything else is encoded here. One Node-API call for a string:
/// `napi_get_value_string_utf16` answers `napi_string_expected` for a non-string itself, so no
/// `napi_typeof` comes first.
#[inline(always)]
pub(crate) fn with_id<T>(env: Env, v: Value, f: impl FnOnce(&str) -> T) -> Option<T> {
  // Not zeroed: only what Node-API wrote (`len` units) is read, and zeroing these buffers on
  // every call was a measurable part of a lookup.
  let mut wide = MaybeUninit::<[u16; STACK_UNITS]>::uninit();
  let mut len = 0usize;
  let status = unsafe {
    sys::napi_get_value_string_utf16(env, v, wide.as_mut_ptr().cast(), STACK_UNITS, &mut len)
  };
  if status != sys::Status::napi_ok {
    return None;
  }
  if len + 1 >= STACK_UNITS {
    // Possibly truncated: the general reader asks for the length and reads it whole.
    return js::with_id(env, v, f).ok();
  }
  // Node-API wrote `len` units (and a terminator) from the start of the buffer.
  let wide = unsafe { std::slice::from_raw_parts(wide.as_ptr().cast::<u16>(), len) };
  let mut narrow = [MaybeUninit::<u8>::uninit(); STACK_UNITS];
  let mut seen = 0u16;
  for (byte, &unit) in narrow.iter_mut().zip(wide) {
    byte.write(unit as u8);
    seen |= unit;
  }
  if seen < 0x80 {
    // All `len` bytes were written just above, and all are ASCII, hence UTF-8.
    let bytes = unsafe { std::slice::from_raw_parts(narrow.as_ptr().cast::<u8>(), len) };
    return Some(f(unsafe { std::str::from_utf8_unchecked(bytes) }));
  }
  with_wide(wide, f)
}

/// The rare case of [`with_id`]: an id with non-ASCII characters, encoded as UTF-8 here.
#[cold]
fn with_wide<T>(wide: &[u16], f: impl FnOnce(&str) -> T) -> Option<T> {
  // At most 3 bytes of UTF-8 per UTF-16 unit (a surrogate pair: 4 bytes for 2 units).
  let mut utf8 = [0u8; 3 * STACK_UNITS];
  let mut at = 0;
  for c in char::decode_utf16(wide.iter().copied()) {
    // A lone surrogate: no session has such an id.
    at += c.ok()?.encode_utf8(&mut utf8[at..]).len();
  }
  std::str::from_utf8(&utf8[..at]).ok().map(f)
}

// ---------------------------------------------------------------------------------------------
// Shaped results

/// Compiled once per environment with `napi_run_script`; called with the status names (in
/// `Status::ALL` order) and a scratch `ArrayBuffer`, it returns the three shapers.
///
/// The data comes as one string (`text`: every string of the result, back to back) and typed
/// arrays of numbers, lengths (UTF-16 units, -1 for `null`) and flags; the layouts are the
/// `STATE_*`/`STAT_*` constants below, spelled out again here. Object literals define their
/// keys (no setter runs), and ids and custom keys are defined, never assigned, so neither
/// `__proto__` nor a setter on `Object.prototype` can change anything: as `js::define_value`.
/// It calls built-ins only (`Object.*` and `JSON.parse` taken when the environment starts), on
/// data of its own: no getter or callback of the caller's runs. It holds no registry lock; the
/// Rust side has copied what it needs before calling it.
const SHAPERS_JS: &str = r#"(function (statusNames, scratch) {
  'use strict'
  const N = 14
  const L = 9
  const create = Object.create
  const keys = Object.keys
  const defineProperty = Object.defineProperty
  const setPrototypeOf = Object.setPrototypeOf
  const objectPrototype = Object.prototype
  const parse = JSON.parse
  const oneNums = new Float64Array(scratch, 0, N)
  const oneLens = new Int32Array(scratch, N * 8, L)
  let text = ''
  let at = 0
  function take (len) {
    if (len < 0) return null
    const s = text.slice(at, at + len)
    at += len
    return s
  }
  function state (nums, lens, b, l) {
    const f = nums[b + 13]
    const st = lens[l + 7]
    const o = {
      createdAt: nums[b],
      lastActivity: nums[b + 1],
      isConnected: (f & 1) !== 0,
      error: take(lens[l]),
      status: st < 0 ? null : statusNames[st],
      tracked: (f & 2) !== 0,
      lastDisconnect: (f & 8) === 0 ? null : {
        code: (f & 512) === 0 ? null : nums[b + 11],
        reason: take(lens[l + 1]),
        message: take(lens[l + 2]),
        at: nums[b + 12]
      },
      me: (f & 16) === 0 ? null : { id: take(lens[l + 3]), lid: take(lens[l + 4]) },
      hasQr: (f & 4) !== 0,
      connects: nums[b + 2],
      disconnects: nums[b + 3],
      connectedAt: (f & 32) === 0 ? null : nums[b + 4],
      disconnectedAt: (f & 64) === 0 ? null : nums[b + 5],
      lastInboundAt: (f & 128) === 0 ? null : nums[b + 6],
      lastOutboundAt: (f & 256) === 0 ? null : nums[b + 7],
      messagesIn: nums[b + 8],
      messagesOut: nums[b + 9],
      threadId: nums[b + 10]
    }
    const custom = take(lens[l + 5])
    if (custom !== null) {
      const extra = parse(custom)
      const names = keys(extra)
      for (let i = 0; i < names.length; i++) {
        defineProperty(o, names[i], { value: extra[names[i]], writable: true, enumerable: true, configurable: true })
      }
    }
    return o
  }
  function one (t) {
    text = t
    at = 0
    const o = state(oneNums, oneLens, 0, 0)
    text = ''
    return o
  }
  function sessions (t, buf, n) {
    text = t
    const nums = new Float64Array(buf, 0, n * N)
    const lens = new Int32Array(buf, n * N * 8, n * L + n)
    const order = n * L
    // No prototype while filling: an id such as '__proto__' is then an ordinary own key.
    const out = create(null)
    for (let j = 0; j < n; j++) {
      const i = lens[order + j]
      // Set again for each session: a built-in the caller replaced before the addon loaded
      // could call in again from state() and leave another call's text behind.
      text = t
      at = lens[i * L + 8]
      const id = take(lens[i * L + 6])
      out[id] = state(nums, lens, i * N, i * L)
    }
    text = ''
    return setPrototypeOf(out, objectPrototype)
  }
  function stats (t, buf, n, idleAfterMs, faultCount, faultLast) {
    const S = statusNames.length + 1
    const m = new Int32Array(buf, 0, n * 7 + S + 4)
    const c = n * 7
    const active = new Array(n)
    const inactive = new Array(m[c + S])
    const errors = new Array(m[c + S + 1])
    const connected = new Array(m[c + S + 2])
    const disconnected = new Array(m[c + S + 3])
    let ni = 0
    let ne = 0
    let nc = 0
    let nd = 0
    for (let i = 0, k = 0; i < n; i++, k += 7) {
      let at = m[k]
      const sessionId = t.slice(at, at += m[k + 1])
      const createdAt = t.slice(at, at += m[k + 2])
      const lastLen = m[k + 3]
      const lastActivity = lastLen === -2 ? createdAt : t.slice(at, at += lastLen)
      const errLen = m[k + 4]
      const error = errLen < 0 ? null : t.slice(at, at + errLen)
      const f = m[k + 5]
      const st = m[k + 6]
      const isConnected = (f & 1) !== 0
      active[i] = { sessionId, createdAt, lastActivity, isConnected, error, status: st < 0 ? null : statusNames[st] }
      if ((f & 2) !== 0) inactive[ni++] = sessionId
      if ((f & 4) !== 0) errors[ne++] = { sessionId, error }
      if (isConnected) connected[nc++] = sessionId
      else disconnected[nd++] = sessionId
    }
    // The sizes came with the data; these only guard against a hole if they ever disagreed.
    inactive.length = ni
    errors.length = ne
    connected.length = nc
    disconnected.length = nd
    const byStatus = create(null)
    for (let i = 0; i < statusNames.length; i++) byStatus[statusNames[i]] = m[c + i]
    byStatus.untracked = m[c + statusNames.length]
    return {
      totalSessions: n,
      activeSessions: active,
      inactiveSessions: inactive,
      errorSessions: errors,
      connectedSessions: connected,
      disconnectedSessions: disconnected,
      byStatus: setPrototypeOf(byStatus, objectPrototype),
      idleAfterMs,
      socketFaults: { count: faultCount, last: faultLast }
    }
  }
  return { one, sessions, stats }
})"#;

// Layout of one state in the shapers' arrays (see `state` in SHAPERS_JS): `STATE_NUMS`
// doubles (the numbers, then a word of `F_*` flags) and `STATE_LENS` ints: the lengths in
// `text` (-1: null) of error, lastDisconnect reason and message, me id and lid, the custom keys
// as JSON, and (getAllSessions) the id; then the status index (-1: null) and (getAllSessions)
// where the row's text starts. The strings follow one another in `text` in that order, id first.
const STATE_NUMS: usize = 14;
const STATE_LENS: usize = 9;
const L_ID: usize = 6;
const L_START: usize = 8;
const F_CONNECTED: u32 = 1;
const F_TRACKED: u32 = 2;
const F_HAS_QR: u32 = 4;
const F_LAST_DISCONNECT: u32 = 8;
const F_ME: u32 = 16;
const F_CONNECTED_AT: u32 = 32;
const F_DISCONNECTED_AT: u32 = 64;
const F_LAST_INBOUND_AT: u32 = 128;
const F_LAST_OUTBOUND_AT: u32 = 256;
const F_DISCONNECT_CODE: u32 = 512;
// Layout of one `getStats` row (see `stats` in SHAPERS_JS): where its text starts, the
// lengths of id, createdAt, lastActivity (or SAME_AS_CREATED) and error (-1: null), flags,
// status index. After the rows: the counts by status, then the sizes of the four id lists.
const STAT_INTS: usize = 7;
const S_CONNECTED: i32 = 1;
const S_IDLE: i32 = 2;
const S_ERROR: i32 = 4;
/// In place of lastActivity's length: the same string as createdAt.
const SAME_AS_CREATED: i32 = -2;

/// The compiled shapers of one environment, and its scratch buffer for single states.
struct Shapers {
  env: Env,
  one: js::Ref,
  sessions: js::Ref,
  stats: js::Ref,
  /// The generated `getStats` and `getAllSessions`, for a registry too big for one string.
  generated_stats: js::Ref,
  generated_sessions: js::Ref,
  /// The scratch `ArrayBuffer`'s memory: `STATE_NUMS` f64 then `STATE_LENS` i32. It lives as
  /// long as `one` (whose closure holds the buffer) and is only ever written right before `one`
  /// is called.
  scratch: *mut u8,
}

const SCRATCH_BYTES: usize = STATE_NUMS * 8 + STATE_LENS * 4;

impl Shapers {
  fn compile(env: Env, exports: Value) -> JsResult<Shapers> {
    let source = js::string(env, SHAPERS_JS)?;
    let mut factory = ptr::null_mut();
    js::ok(unsafe { sys::napi_run_script(env, source, &mut factory) })?;
    let names = js::array(env, Status::ALL.len())?;
    for (i, s) in Status::ALL.iter().enumerate() {
      js::set_element(env, names, i as u32, js::string(env, s.as_str())?)?;
    }
    let mut scratch = ptr::null_mut();
    let mut buffer = ptr::null_mut();
    js::ok(unsafe { sys::napi_create_arraybuffer(env, SCRATCH_BYTES, &mut scratch, &mut buffer) })?;
    if scratch.is_null() || !scratch.cast::<f64>().is_aligned() {
      return Err(Fail::Js);
    }
    let made = js::call(env, js::undefined(env), factory, &[names, buffer])?;
    let one = function_ref(env, made, c"one")?;
    let sessions = function_ref(env, made, c"sessions")?;
    let stats = function_ref(env, made, c"stats")?;
    let generated_stats = function_ref(env, exports, c"getStats")?;
    let generated_sessions = function_ref(env, exports, c"getAllSessions")?;
    Ok(Shapers {
      env,
      one,
      sessions,
      stats,
      generated_stats,
      generated_sessions,
      scratch: scratch.cast(),
    })
  }
}

/// A reference to the function `obj[name]`.
fn function_ref(env: Env, obj: Value, name: &CStr) -> JsResult<js::Ref> {
  let f = js::get_named(env, obj, name)?;
  if !js::is_function(env, f) {
    return Err(Fail::Js);
  }
  js::Ref::new(env, f)
}

unsafe extern "C" fn free_shapers(data: *mut c_void) {
  let s = unsafe { Box::from_raw(data.cast::<Shapers>()) };
  for r in [
    s.one,
    s.sessions,
    s.stats,
    s.generated_stats,
    s.generated_sessions,
  ] {
    r.delete(s.env);
  }
}

/// The environment's shapers, from a shaped callback's data pointer.
fn shapers<'a>(data: *mut c_void) -> JsResult<&'a Shapers> {
  // The box lives until the environment's cleanup hook, after which no callback runs.
  unsafe { data.cast::<Shapers>().as_ref() }.ok_or(Fail::Js)
}

/// Every string of one result, back to back, as the one JS string that carries them: one byte
/// per character while every character fits in Latin-1 (as V8 stores such a string, so it is
/// made with a plain copy), UTF-16 from the first character that does not. Lengths and offsets
/// are in UTF-16 units, what `String.prototype.slice` counts.
#[derive(Default)]
struct Text {
  latin1: Vec<u8>,
  wide: Option<Vec<u16>>,
}

impl Text {
  fn with_capacity(units: usize) -> Text {
    Text {
      latin1: Vec::with_capacity(units),
      wide: None,
    }
  }

  fn len(&self) -> usize {
    self.wide.as_ref().map_or(self.latin1.len(), Vec::len)
  }

  /// Appends ASCII bytes.
  fn push_ascii(&mut self, bytes: &[u8]) {
    match &mut self.wide {
      None => self.latin1.extend_from_slice(bytes),
      Some(w) => {
        let start = w.len();
        w.resize(start + bytes.len(), 0);
        for (unit, &byte) in w[start..].iter_mut().zip(bytes) {
          *unit = u16::from(byte);
        }
      }
    }
  }

  /// Appends `s`; returns its length in UTF-16 units.
  fn push_str(&mut self, s: &str) -> i32 {
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

  fn push_opt(&mut self, s: Option<&str>) -> i32 {
    s.map_or(-1, |s| self.push_str(s))
  }

  fn value(&self, env: Env) -> JsResult<Value> {
    let mut v = ptr::null_mut();
    js::ok(unsafe {
      match &self.wide {
        None => sys::napi_create_string_latin1(
          env,
          self.latin1.as_ptr().cast(),
          self.latin1.len() as isize,
          &mut v,
        ),
        Some(w) => sys::napi_create_string_utf16(env, w.as_ptr(), w.len() as isize, &mut v),
      }
    })?;
    Ok(v)
  }
}

/// A new `ArrayBuffer` of `f64s` doubles followed by `i32s` ints, both zeroed, and Rust views of
/// them.
fn buffer<'a>(
  env: Env,
  f64s: usize,
  i32s: usize,
) -> JsResult<(Value, &'a mut [f64], &'a mut [i32])> {
  let bytes = (f64s * 8 + i32s * 4).max(8);
  let mut data = ptr::null_mut();
  let mut buf = ptr::null_mut();
  js::ok(unsafe { sys::napi_create_arraybuffer(env, bytes, &mut data, &mut buf) })?;
  if data.is_null() || !data.cast::<f64>().is_aligned() {
    return Err(Fail::Js);
  }
  // Fresh, zeroed, aligned memory that nothing else sees until the shaper runs.
  let nums = unsafe { std::slice::from_raw_parts_mut(data.cast::<f64>(), f64s) };
  let ints =
    unsafe { std::slice::from_raw_parts_mut(data.cast::<u8>().add(f64s * 8).cast::<i32>(), i32s) };
  Ok((buf, nums, ints))
}

/// The status's index in the shaper's `statusNames`, -1 for none.
fn status_index(s: Option<Status>) -> i32 {
  s.map_or(-1, |s| s.index() as i32)
}

/// Writes `s` into one state's slots (`nums`: `STATE_NUMS`, `lens`: `STATE_LENS`) and its
/// strings into `text`, in the order the shaper takes them.
fn pack_state(s: &SessionState, text: &mut Text, nums: &mut [f64], lens: &mut [i32]) {
  let mut flags = 0u32;
  let mut set = |bit: u32, on: bool| {
    if on {
      flags |= bit;
    }
  };
  set(F_CONNECTED, s.is_connected);
  set(F_TRACKED, s.tracked);
  set(F_HAS_QR, s.has_qr);
  set(F_LAST_DISCONNECT, s.last_disconnect.is_some());
  set(F_ME, s.me.is_some());
  set(F_CONNECTED_AT, s.connected_at.is_some());
  set(F_DISCONNECTED_AT, s.disconnected_at.is_some());
  set(F_LAST_INBOUND_AT, s.last_inbound_at.is_some());
  set(F_LAST_OUTBOUND_AT, s.last_outbound_at.is_some());
  let ld = s.last_disconnect.as_ref();
  set(F_DISCONNECT_CODE, ld.is_some_and(|d| d.code.is_some()));
  nums[0] = s.created_at;
  nums[1] = s.last_activity;
  nums[2] = f64::from(s.connects);
  nums[3] = f64::from(s.disconnects);
  nums[4] = s.connected_at.unwrap_or(0.0);
  nums[5] = s.disconnected_at.unwrap_or(0.0);
  nums[6] = s.last_inbound_at.unwrap_or(0.0);
  nums[7] = s.last_outbound_at.unwrap_or(0.0);
  nums[8] = s.messages_in as f64;
  nums[9] = s.messages_out as f64;
  nums[10] = f64::from(s.thread_id);
  nums[11] = ld.and_then(|d| d.code).map_or(0.0, f64::from);
  nums[12] = ld.map_or(0.0, |d| d.at);
  nums[13] = f64::from(flags);
  lens[0] = text.push_opt(s.error.as_deref());
  lens[1] = ld.map_or(-1, |d| text.push_opt(d.reason.as_deref()));
  lens[2] = ld.map_or(-1, |d| text.push_opt(d.message.as_deref()));
  lens[3] = s.me.as_ref().map_or(-1, |m| text.push_opt(m.id.as_deref()));
  lens[4] = s
    .me
    .as_ref()
    .map_or(-1, |m| text.push_opt(m.lid.as_deref()));
  lens[5] = if s.custom.is_empty() {
    -1
  } else {
    // JSON.parse defines every key, as `convert::json_to_js` does.
    let json = serde_json::to_string(&s.custom).unwrap_or_else(|_| "{}".into());
    text.push_str(&json)
  };
  lens[7] = status_index(s.status);
}

/// Calls a referenced function (a shaper, or a generated export) with `args`.
fn call_shaper(env: Env, shaper: &js::Ref, args: &[Value]) -> JsResult<Value> {
  let f = shaper.value(env)?;
  js::call(env, js::undefined(env), f, args)
}

/// `getSessionState(sessionId)`: as `api::get_session_state`.
unsafe extern "C" fn get_session_state(env: Env, info: sys::napi_callback_info) -> Value {
  let Some(([id], data)) = (unsafe { js::cb_args::<1>(env, info) }) else {
    return ptr::null_mut();
  };
  let Some(state) = with_id(env, id, table::get).flatten() else {
    return js::null(env);
  };
  js::callback_result(env, shapers(data).and_then(|s| one_state(env, s, &state)))
}

fn one_state(env: Env, s: &Shapers, state: &SessionState) -> JsResult<Value> {
  let mut text = Text::default();
  // The scratch buffer is this environment's alone, and nothing runs between these writes
  // and the shaper's reads.
  let nums = unsafe { std::slice::from_raw_parts_mut(s.scratch.cast::<f64>(), STATE_NUMS) };
  let lens = unsafe {
    std::slice::from_raw_parts_mut(s.scratch.add(STATE_NUMS * 8).cast::<i32>(), STATE_LENS)
  };
  pack_state(state, &mut text, nums, lens);
  let t = text.value(env)?;
  call_shaper(env, &s.one, &[t])
}

/// `getAllSessions()`: as `api::get_all_sessions`.
unsafe extern "C" fn get_all_sessions(env: Env, info: sys::napi_callback_info) -> Value {
  let Some((_, data)) = (unsafe { js::cb_args::<0>(env, info) }) else {
    return ptr::null_mut();
  };
  js::callback_result(env, shapers(data).and_then(|s| all_sessions(env, s)))
}

/// Packs every record straight from the table (no copy of the states, as `table::all` makes;
/// that copy and its sort moved most of the bytes, per perf), in table order, then hands the
/// shaper the registration order as a permutation.
fn all_sessions(env: Env, s: &Shapers) -> JsResult<Value> {
  let hint = table::len();
  let mut text = Text::with_capacity(hint * 16);
  let mut nums: Vec<f64> = Vec::with_capacity(hint * STATE_NUMS);
  let mut lens: Vec<i32> = Vec::with_capacity(hint * STATE_LENS);
  let mut order: Vec<(u64, i32)> = Vec::with_capacity(hint);
  table::for_each(|id, r| {
    let i = order.len();
    order.push((r.seq, i as i32));
    nums.resize((i + 1) * STATE_NUMS, 0.0);
    lens.resize((i + 1) * STATE_LENS, 0);
    let l = &mut lens[i * STATE_LENS..];
    l[L_START] = text.len() as i32;
    l[L_ID] = text.push_str(id);
    pack_state(&r.state, &mut text, &mut nums[i * STATE_NUMS..], l);
  });
  if text.len() > MAX_TEXT {
    return call_shaper(env, &s.generated_sessions, &[]);
  }
  order.sort_unstable_by_key(|o| o.0);
  let n = order.len();
  let (buf, bn, bl) = buffer(env, n * STATE_NUMS, n * STATE_LENS + n)?;
  bn.copy_from_slice(&nums);
  bl[..n * STATE_LENS].copy_from_slice(&lens);
  for (slot, (_, i)) in bl[n * STATE_LENS..].iter_mut().zip(&order) {
    *slot = *i;
  }
  let t = text.value(env)?;
  let n = js::number(env, n as f64)?;
  call_shaper(env, &s.sessions, &[t, buf, n])
}

/// `getStats()`: as `api::get_stats`.
unsafe extern "C" fn get_stats(env: Env, info: sys::napi_callback_info) -> Value {
  let Some((_, data)) = (unsafe { js::cb_args::<0>(env, info) }) else {
    return ptr::null_mut();
  };
  js::callback_result(env, shapers(data).and_then(|s| stats_js(env, s)))
}

/// What `stats::collect` gathers (the same fields, rules and order: the bench's parity check
/// holds the two together), read straight from the table: `collect` copies each id and error
/// into a summary and sorts the summaries, which perf showed as a fifth of the call.
fn stats_js(env: Env, s: &Shapers) -> JsResult<Value> {
  let idle_after = config::idle_after_ms();
  let now = js::now_ms();
  let hint = table::len();
  let mut text = Text::with_capacity(hint * 48);
  let mut rows: Vec<[i32; STAT_INTS]> = Vec::with_capacity(hint);
  let mut order: Vec<(u64, u32)> = Vec::with_capacity(hint);
  let mut by_status = stats::StatusCounts::default();
  // How many ids go to inactiveSessions, errorSessions, connectedSessions, disconnectedSessions.
  let mut sizes = [0i32; 4];
  let mut iso = IsoCache::default();
  table::for_each(|id, r| {
    let st = &r.state;
    by_status[stats::status_index(st.status)] += 1;
    let mut m = [0i32; STAT_INTS];
    m[0] = text.len() as i32;
    m[1] = text.push_str(id);
    m[2] = iso.push(&mut text, st.created_at);
    // Never active since registered: lastActivity is the very createdAt string.
    m[3] = if st.last_activity == st.created_at {
      SAME_AS_CREATED
    } else {
      iso.push(&mut text, st.last_activity)
    };
    m[4] = text.push_opt(st.error.as_deref());
    let idle = st.is_idle(now, idle_after as f64);
    let failed = st.error.as_deref().is_some_and(|e| !e.is_empty());
    let flags = (if st.is_connected { S_CONNECTED } else { 0 })
      | (if idle { S_IDLE } else { 0 })
      | (if failed { S_ERROR } else { 0 });
    sizes[0] += i32::from(idle);
    sizes[1] += i32::from(failed);
    sizes[2] += i32::from(st.is_connected);
    sizes[3] += i32::from(!st.is_connected);
    m[5] = flags;
    m[6] = status_index(st.status);
    order.push((r.seq, rows.len() as u32));
    rows.push(m);
  });
  if text.len() > MAX_TEXT {
    return call_shaper(env, &s.generated_stats, &[]);
  }
  order.sort_unstable_by_key(|o| o.0);
  let n = rows.len();
  let (buf, _, ints) = buffer(env, 0, n * STAT_INTS + by_status.len() + sizes.len())?;
  for (chunk, (_, i)) in ints.chunks_exact_mut(STAT_INTS).zip(&order) {
    chunk.copy_from_slice(&rows[*i as usize]);
  }
  let tail = &mut ints[n * STAT_INTS..];
  for (slot, count) in tail.iter_mut().zip(by_status) {
    *slot = i32::try_from(count).unwrap_or(i32::MAX);
  }
  tail[by_status.len()..].copy_from_slice(&sizes);
  let (count, last) = tracking::faults();
  let args = [
    text.value(env)?,
    buf,
    js::number(env, n as f64)?,
    js::number(env, idle_after as f64)?,
    js::number(env, count as f64)?,
    js::opt_string(env, last.as_deref())?,
  ];
  call_shaper(env, &s.stats, &args)
}

/// `state::write_iso` with the date part kept from one call to the next: sessions mostly share
/// a handful of days, and the calendar arithmetic was an eighth of `getStats` (perf).
#[derive(Default)]
struct IsoCache {
  day: Option<i64>,
  date: [u8; 11],
}

impl IsoCache {
  /// Appends the ISO form of `epoch_ms` (nothing for an invalid time, as `write_iso`); returns
  /// its length.
  fn push(&mut self, text: &mut Text, epoch_ms: f64) -> i32 {
    let mut out = [0u8; 24];
    let len = if epoch_ms.is_finite() && self.day.is_some() {
      let ms_total = epoch_ms.floor() as i64;
      if Some(ms_total.div_euclid(86_400_000)) == self.day {
        out[..11].copy_from_slice(&self.date);
        write_time(ms_total.rem_euclid(86_400_000), &mut out);
        24
      } else {
        self.full(epoch_ms, &mut out)
      }
    } else {
      self.full(epoch_ms, &mut out)
    };
    text.push_ascii(&out[..len]);
    len as i32
  }

  fn full(&mut self, epoch_ms: f64, out: &mut [u8; 24]) -> usize {
    let len = state::write_iso(epoch_ms, out);
    if len == 24 {
      self.day = Some((epoch_ms.floor() as i64).div_euclid(86_400_000));
      self.date.copy_from_slice(&out[..11]);
    }
    len
  }
}

/// `HH:mm:ss.sssZ` at bytes 11.. of `out`, as `state::write_iso` writes it.
fn write_time(ms_of_day: i64, out: &mut [u8; 24]) {
  let two = |out: &mut [u8; 24], at: usize, v: i64| {
    out[at] = b'0' + (v / 10) as u8;
    out[at + 1] = b'0' + (v % 10) as u8;
  };
  two(out, 11, ms_of_day / 3_600_000);
  out[13] = b':';
  two(out, 14, ms_of_day / 60_000 % 60);
  out[16] = b':';
  two(out, 17, ms_of_day / 1000 % 60);
  out[19] = b'.';
  let ms = ms_of_day % 1000;
  out[20] = b'0' + (ms / 100) as u8;
  two(out, 21, ms % 100);
  out[23] = b'Z';
}

/// Past this many UTF-16 units V8 cannot make the one string (its limit is 2^29 - 24
/// characters): such a registry (millions of sessions) is listed by the generated function.
const MAX_TEXT: usize = (1 << 29) - 64;

// ---------------------------------------------------------------------------------------------
// The benchmark's floor

/// The N-API floor for calls with arguments: reads up to two arguments the way the hot paths
/// do and returns the first. Does nothing else.
unsafe extern "C" fn bench_noop(env: Env, info: sys::napi_callback_info) -> Value {
  match unsafe { js::cb_args::<2>(env, info) } {
    Some(([first, _], _)) => first,
    None => ptr::null_mut(),
  }
}

/// The floor for calls without arguments (`getSocketCount`): returns `undefined`.
unsafe extern "C" fn bench_noop_no_args(env: Env, _info: sys::napi_callback_info) -> Value {
  js::undefined(env)
}

/// The floor of a call without arguments that answers a number (`getSocketCount`): Node-API has
/// to make a handle for it, where `undefined` needs none.
unsafe extern "C" fn bench_noop_number(env: Env, _info: sys::napi_callback_info) -> Value {
  let mut v = ptr::null_mut();
  unsafe { sys::napi_create_uint32(env, 0, &mut v) };
  v
}

/// Not a no-op: the floor of any lookup by id. Reads the first argument as the hot paths read a
/// session id (one Node-API call into the stack) and returns it, doing nothing with the text.
unsafe extern "C" fn bench_read_id(env: Env, info: sys::napi_callback_info) -> Value {
  let Some(([id], _)) = (unsafe { js::cb_args::<1>(env, info) }) else {
    return ptr::null_mut();
  };
  std::hint::black_box(with_id(env, id, |s| s.len()));
  id
}
