//! Raw Node-API callbacks, where napi-rs's generic wrapper would be most of a call's cost.
//!
//! [`with_id`] reads a session id the cheapest way Node-API allows (one call, into the stack);
//! the socket path's hot native calls (`src/sockets.rs`) use it. The benchmark's floor (the
//! cost of a raw no-op call taking the same arguments) lives here too, on the non-enumerable
//! `__bench` property of the exports, with the cost of a table removal alone, the bytes the
//! process holds in malloc (what the native records take, outside every V8 heap) and one test
//! hook (`panic`).

use std::ffi::CStr;
use std::mem::MaybeUninit;
use std::ptr;

use napi::sys;

use crate::js::{self, Callback, Env, JsResult, Value};
use registry_core::table::{self, EnvKey};

/// Puts the benchmark's floor on the exports. Runs once per environment.
pub fn install(env: Env, exports: Value) -> JsResult<()> {
  install_bench_hooks(env, exports)
}

/// The benchmark's helpers live on one non-enumerable `__bench` property of the exports.
///
/// Why this way: `bench/run.mjs` must measure the very binding the loader picked (a
/// `require` of a `.node` path could pick another copy), and the helpers must stay out of the
/// public API. napi-rs writes `index.d.ts` and the loader's export list from `#[napi]` items
/// only, so a property defined here is in neither; being non-enumerable it is not in
/// `Object.keys(require('baileys-socket-registry'))` nor a named ESM export either; index.js
/// keeps it on its own exports the same way.
fn install_bench_hooks(env: Env, exports: Value) -> JsResult<()> {
  let bench = js::object(env)?;
  let hooks: [(&CStr, &CStr, Callback); 7] = [
    (c"noop", c"__benchNoop", bench_noop),
    (c"noopNoArgs", c"__benchNoopNoArgs", bench_noop_no_args),
    (c"noopNumber", c"__benchNoopNumber", bench_noop_number),
    (c"readId", c"__benchReadId", bench_read_id),
    (c"tableRemoval", c"__benchTableRemoval", bench_table_removal),
    (c"mallocBytes", c"__benchMallocBytes", bench_malloc_bytes),
    (c"panic", c"__benchPanic", test_panic),
  ];
  for (key, name, cb) in hooks {
    js::set_named(
      env,
      bench,
      key,
      js::function(env, name, cb, ptr::null_mut())?,
    )?;
  }
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
  // Not checked: a floor must do nothing more than the call it stands for; if it failed, `v`
  // stays null and JavaScript reads `undefined`.
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

/// Not a call's floor but a part of one: what removing a session from the process-wide table
/// costs in Rust alone, with no crossing (the floor of `unregisterSocket` beside the crossing).
/// `__bench.tableRemoval(n)` registers `n` records under ids no bot uses, owned by no
/// environment, removes them the way `unregisterSocket` does and returns the nanoseconds per
/// removal (the registrations are not timed).
unsafe extern "C" fn bench_table_removal(env: Env, info: sys::napi_callback_info) -> Value {
  js::guard(env, || {
    let Some(([n], _)) = (unsafe { js::cb_args::<1>(env, info) }) else {
      return ptr::null_mut();
    };
    let n = js::get_number(env, n).map_or(1, |n| n.clamp(1.0, 100_000.0) as usize);
    // An owner no environment has (keys count up from 1), so no thread's sessions are touched.
    const NOBODY: EnvKey = EnvKey::MAX;
    let ids: Vec<String> = (0..n).map(|i| format!("\u{0}bench-removal-{i}")).collect();
    for id in &ids {
      // Cannot fail: a new id, or one this owner registered.
      let _ = table::register(id, NOBODY, 0, false, false, 0.0);
    }
    let started = std::time::Instant::now();
    for id in &ids {
      std::hint::black_box(table::remove_owned(id, NOBODY));
    }
    let ns = started.elapsed().as_nanos() as f64 / n as f64;
    js::number(env, ns).unwrap_or(ptr::null_mut())
  })
}

/// Not a floor: the bytes malloc has handed out and not taken back (glibc's `mallinfo2`), so
/// the memory benchmark can tell the native records' share of a session's RSS from the V8
/// heap's. `null` where the C library has no such count (musl, macOS, Windows).
unsafe extern "C" fn bench_malloc_bytes(env: Env, _info: sys::napi_callback_info) -> Value {
  js::guard(env, || {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
      // SAFETY: mallinfo2 only reads the allocator's counters.
      let info = unsafe { libc::mallinfo2() };
      // Small blocks from the heap, and large ones (a table's buckets) mapped on their own.
      js::number(env, (info.uordblks + info.hblkhd) as f64).unwrap_or(ptr::null_mut())
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    js::null(env)
  })
}

/// Not a floor: a test hook (`__test__/hostile.spec.mjs`) that panics inside [`js::guard`],
/// the guard every raw callback runs in. A panic that unwound into Node would abort the
/// process; the guard must turn it into a thrown `ERR_INTERNAL`.
unsafe extern "C" fn test_panic(env: Env, _info: sys::napi_callback_info) -> Value {
  js::guard(env, || panic!("a panic on purpose (__bench.panic)"))
}
