//! The native half of the state functions (`updateSessionState`, `getSessionState`,
//! `getAllSessions`, `getStats`). The package entry (index.js) implements them: it picks the
//! route of an update, caches shaped states per thread, and shapes results from the layout
//! declared once in `registry_core::layout`. What it calls here crosses Node-API once per call
//! with cheap data: one string in, or positional numbers and one string out.
//!
//! These functions are internal (`__` names, no typings); index.js does not re-export them.

use std::cell::Cell;
use std::ptr;

use napi::{sys, Env};
use napi_derive::napi;

use crate::api::{finish, JsAny};
use crate::convert;
use crate::events::{self, ChangeKind};
use crate::js::{self, Fail, JsResult, Value};
use crate::tracking;
use registry_core::config;
use registry_core::layout::{self, Field, Kind, Text};
use registry_core::state::{self, StatePatch, Status, FORBIDDEN_KEYS, READ_ONLY_KEYS};
use registry_core::stats;
use registry_core::table;
use registry_core::update;
use registry_core::versions;

/// Header of the scratch before a packed state: the record's version slot, its version.
const HEADER: usize = 2;

thread_local! {
  /// This thread's scratch numbers for one state, lent to its environment as an external
  /// `ArrayBuffer`. One environment per thread, and a write is read back before anything else
  /// runs; freed with the thread, after its environment (and every view of it) is gone.
  static SCRATCH: Box<[Cell<f64>; HEADER + layout::SLOTS]> =
    Box::new([const { Cell::new(0.0) }; HEADER + layout::SLOTS]);
}

/// Applies `patch` to the session `id`. Leaves in this thread's scratch what index.js needs to
/// bring its cached copy of the state along instead of asking again (`[slot, version, now]`:
/// the record's version slot, the version this change gave it, the `lastActivity` it set;
/// slot -1 when no session changed).
fn apply(env: js::Env, id: Value, patch: StatePatch) {
  set_scratch(&[-1.0]);
  // The id read into the stack (`fast::with_id`), not copied into a `String`: that copy, its
  // UTF-8 encoding and validation were a fifth of an update (perf).
  crate::fast::with_id(env, id, |id| {
    let now = js::now_ms();
    let Some(applied) = table::update(id, None, events::wanted, |r| {
      ((), Some(r.state.apply_patch(patch, now)))
    }) else {
      return;
    };
    if applied.slot != versions::NO_SLOT {
      set_scratch(&[f64::from(applied.slot), f64::from(applied.version), now]);
    }
    if let Some((before, after)) = applied.change {
      events::emit(id, ChangeKind::Status, Some(before), Some(after));
    }
  });
}

/// Writes `values` at the start of this thread's scratch.
fn set_scratch(values: &[f64]) {
  SCRATCH.with(|scratch| {
    for (cell, v) in scratch.iter().zip(values) {
      cell.set(*v);
    }
  })
}

/// `updateSessionState(id, updates)` for any `updates`: read out of JavaScript and checked
/// (`convert::parse_patch`), then applied. Nothing is changed when it throws.
#[napi(js_name = "__updateState", skip_typescript)]
pub fn update_state(env: Env, session_id: JsAny, updates: JsAny) -> napi::Result<()> {
  let raw = env.raw();
  finish(
    &env,
    convert::parse_patch(raw, updates.0).map(|patch| apply(raw, session_id.0, patch)),
  )
}

/// Sets the two per-call functions, `__updateFlat` and `__state`, on the exports as raw
/// Node-API callbacks: napi-rs's generic wrapper of a `#[napi]` function was a third of their
/// cost.
pub fn install(env: js::Env, exports: Value) -> JsResult<()> {
  js::install_raw(
    env,
    exports,
    &[
      (c"__updateFlat", update_flat),
      (c"__updateKnown", update_known),
      (c"__state", state),
    ],
  )
}

/// `__updateKnown(id, mask, error)`: `updateSessionState(id, updates)` for an update of the
/// registry's own fields only, checked by index.js (the most common update: `isConnected`,
/// `error`, `status`), as bits of `mask` (see `KNOWN_*`) and the `error` string (anything else:
/// null). No string to build or parse: about a third of an update was that (perf).
unsafe extern "C" fn update_known(env: js::Env, info: sys::napi_callback_info) -> Value {
  js::guard(env, || {
    let Some(([id, mask, error], _)) = (unsafe { js::cb_args::<3>(env, info) }) else {
      return ptr::null_mut();
    };
    let mask = js::get_number(env, mask).map_or(0, |m| m as u32);
    let mut patch = StatePatch::default();
    if mask & KNOWN_IS_CONNECTED != 0 {
      patch.is_connected = Some(mask & KNOWN_CONNECTED != 0);
    }
    if mask & KNOWN_ERROR != 0 {
      patch.error = Some(js::get_string(env, error));
    }
    if mask & KNOWN_STATUS != 0 {
      let index = (mask >> KNOWN_STATUS_SHIFT) as usize;
      patch.status = Some(Status::ALL.get(index).copied());
    }
    apply(env, id, patch);
    js::undefined(env)
  })
}

/// Bits of `__updateKnown`'s mask: which fields the update sets and to what. The status's
/// index in `Status::ALL` is in the bits from `KNOWN_STATUS_SHIFT` (an index past the last
/// status: null). index.js reads these from `__stateLayout().known`.
const KNOWN_IS_CONNECTED: u32 = 1;
const KNOWN_CONNECTED: u32 = 2;
const KNOWN_ERROR: u32 = 4;
const KNOWN_STATUS: u32 = 8;
const KNOWN_STATUS_SHIFT: u32 = 4;

/// `__updateFlat(id, flat)`: `updateSessionState(id, updates)` for a flat update of primitives,
/// in the form index.js writes (`registry_core::update::parse_flat`): the same rules.
unsafe extern "C" fn update_flat(env: js::Env, info: sys::napi_callback_info) -> Value {
  js::guard(env, || {
    let Some(([id, flat], _)) = (unsafe { js::cb_args::<2>(env, info) }) else {
      return ptr::null_mut();
    };
    let patch = with_units(env, flat, update::parse_flat).and_then(|p| p.map_err(Fail::Registry));
    js::callback_result(
      env,
      patch.map(|patch| {
        apply(env, id, patch);
        js::undefined(env)
      }),
    )
  })
}

/// Units read into the stack; longer strings are read into the heap.
const STACK_UNITS: usize = 512;

/// Runs `f` on the UTF-16 units of the string `v` (as V8 copies them out, with no encoding).
fn with_units<T>(env: js::Env, v: Value, f: impl FnOnce(&[u16]) -> T) -> JsResult<T> {
  // Not zeroed: only the `len` units Node-API wrote are read (zeroing 1 KiB per update showed
  // in perf).
  let mut stack = std::mem::MaybeUninit::<[u16; STACK_UNITS]>::uninit();
  let mut len = 0usize;
  js::ok(unsafe {
    sys::napi_get_value_string_utf16(env, v, stack.as_mut_ptr().cast(), STACK_UNITS, &mut len)
  })?;
  if len + 1 < STACK_UNITS {
    // Node-API wrote `len` units from the start of the buffer.
    return Ok(f(unsafe {
      std::slice::from_raw_parts(stack.as_ptr().cast::<u16>(), len)
    }));
  }
  // Possibly cut short: ask for the length, then read it whole.
  js::ok(unsafe { sys::napi_get_value_string_utf16(env, v, ptr::null_mut(), 0, &mut len) })?;
  let mut heap = vec![0u16; len + 1];
  js::ok(unsafe {
    sys::napi_get_value_string_utf16(env, v, heap.as_mut_ptr(), len + 1, &mut len)
  })?;
  Ok(f(&heap[..len]))
}

/// `__state(id)`: the state of `id` into this thread's scratch (`[slot, version,
/// ...layout::pack]`) and its strings as the returned string; `null` for no such session.
unsafe extern "C" fn state(env: js::Env, info: sys::napi_callback_info) -> Value {
  js::guard(env, || {
    let Some(([id], _)) = (unsafe { js::cb_args::<1>(env, info) }) else {
      return ptr::null_mut();
    };
    let mut text = Text::default();
    let found = js::with_id(env, id, |id| {
      table::with_state(id, |s, slot, version| {
        let mut nums = [0.0; HEADER + layout::SLOTS];
        nums[0] = f64::from(slot);
        nums[1] = f64::from(version);
        layout::pack(s, &mut text, &mut nums[HEADER..]);
        SCRATCH.with(|scratch| {
          for (cell, v) in scratch.iter().zip(&nums) {
            cell.set(*v);
          }
        })
      })
    })
    .ok()
    .flatten();
    js::callback_result(
      env,
      match found {
        Some(()) => text_value(env, &text),
        None => Ok(js::null(env)),
      },
    )
  })
}

/// Every session in registration order: `[text, order, rows, n]`. `order` (a fresh
/// `ArrayBuffer` of doubles) holds, per session, its version slot, its version and the index of
/// its row in `rows`, or -1 when the caller said it has that version already: `seen` (a
/// `Uint32Array` the caller keeps, or anything else for none) holds, by slot, the version of
/// the row the caller last shaped for it. Each row of `rows` is where its strings start in
/// `text`, the id's length, then `layout::pack`; the id comes first in its strings. So a
/// thread that asks again is sent only the sessions that changed.
#[napi(js_name = "__allStates", skip_typescript)]
pub fn all_states(env: Env, seen: JsAny) -> napi::Result<JsAny> {
  let raw = env.raw();
  finish(&env, all_states_js(raw, seen.0).map(JsAny))
}

/// The memory of the `Uint32Array` `v`, or an empty slice for anything else.
fn u32_view<'a>(env: js::Env, v: Value) -> &'a [u32] {
  let mut kind = sys::TypedarrayType::int8_array;
  let mut len = 0usize;
  let mut data = ptr::null_mut();
  let ok = unsafe {
    sys::napi_get_typedarray_info(
      env,
      v,
      &mut kind,
      &mut len,
      &mut data,
      ptr::null_mut(),
      ptr::null_mut(),
    )
  } == sys::Status::napi_ok;
  if !ok || kind != sys::TypedarrayType::uint32_array || data.is_null() || len == 0 {
    // Not a typed array (napi_invalid_arg, no exception): the caller has no rows.
    return &[];
  }
  // A Uint32Array's data is aligned and `len` elements long; it is only read here, on its own
  // thread, while no JavaScript runs.
  unsafe { std::slice::from_raw_parts(data.cast::<u32>(), len) }
}

/// Doubles of one row of `__allStates`' `rows`.
const ALL_ROW: usize = 2 + layout::SLOTS;

thread_local! {
  /// `__allStates`' working memory, kept from one call to the next: allocating and freeing
  /// these (megabytes at 10,000 sessions) made page faults a large part of the call (perf).
  static ALL_WORK: std::cell::RefCell<AllWork> = std::cell::RefCell::default();
}

#[derive(Default)]
struct AllWork {
  /// Per session in table order: its seq, and (slot, version, row index or -1).
  seqs: Vec<u64>,
  order: Vec<(u32, u32, f64)>,
  rows: Vec<f64>,
  text: Text,
  sorting: SeqOrder,
}

fn all_states_js(env: js::Env, seen: Value) -> JsResult<Value> {
  let seen = u32_view(env, seen);
  // Taken out of the thread's cell for the call (and put back after): nothing borrowed is held
  // while Node-API runs, whatever JavaScript that may reach.
  let mut work = ALL_WORK.take();
  let answer = {
    let AllWork {
      seqs,
      order,
      rows,
      text,
      sorting,
    } = &mut work;
    seqs.clear();
    order.clear();
    rows.clear();
    text.clear();
    // Packed straight from the table (no copy of the states); the version is read under the
    // record's lock, with the state it belongs to.
    table::for_each(|id, r, version| {
      seqs.push(r.seq());
      let known = r.slot() != versions::NO_SLOT && seen.get(r.slot() as usize) == Some(&version);
      if known {
        order.push((r.slot(), version, -1.0));
        return;
      }
      let at = rows.len();
      order.push((r.slot(), version, (at / ALL_ROW) as f64));
      rows.resize(at + ALL_ROW, 0.0);
      rows[at] = text.len() as f64;
      rows[at + 1] = f64::from(text.push_str(id));
      layout::pack(&r.state, text, &mut rows[at + 2..]);
    });
    let (order_buf, out) = f64_buffer(env, order.len() * 3)?;
    for (dst, &i) in out.chunks_exact_mut(3).zip(sorting.of(seqs)) {
      let (slot, version, row) = order[i as usize];
      dst.copy_from_slice(&[f64::from(slot), f64::from(version), row]);
    }
    let (rows_buf, out) = f64_buffer(env, rows.len())?;
    out.copy_from_slice(rows);
    let values = [
      text_value(env, text)?,
      order_buf,
      rows_buf,
      js::number(env, order.len() as f64)?,
    ];
    trim(rows);
    trim(&mut text.latin1);
    js::array_of(env, values.into_iter())
  };
  if work.held() <= WORK_BUDGET {
    ALL_WORK.set(work);
  }
  answer
}

impl AllWork {
  /// Bytes of working memory this thread keeps.
  fn held(&self) -> usize {
    bytes(&self.seqs)
      + bytes(&self.order)
      + bytes(&self.rows)
      + self.text.held()
      + self.sorting.held()
  }
}

/// Bytes of working memory this thread keeps between calls: `[getAllSessions', getStats']`.
/// For the tests, which check that a call over a very large registry gives its memory back.
#[napi(js_name = "__workMemory", skip_typescript)]
pub fn work_memory() -> Vec<u32> {
  let all = ALL_WORK.with(|w| w.borrow().held());
  let stats = STATS_WORK.with(|w| w.borrow().held());
  [all, stats]
    .map(|b| u32::try_from(b).unwrap_or(u32::MAX))
    .to_vec()
}

/// Working memory kept by a thread between calls is trimmed to this many elements (or twice
/// what the call needed).
const KEEP: usize = 1 << 16;

/// A thread keeps at most this much working memory per kind of call: what a call over a very
/// large registry needed (about 100 bytes a session) is given back at once, or a bot that asks
/// for statistics of 100,000 sessions now and then would carry megabytes between its calls.
/// Allocating it again costs page faults, small beside such a call.
const WORK_BUDGET: usize = 8 << 20;

fn bytes<T>(v: &Vec<T>) -> usize {
  v.capacity() * std::mem::size_of::<T>()
}

/// What a burst of changes needed is not kept for good: at most twice this call's need, or
/// [`KEEP`] elements.
fn trim<T>(v: &mut Vec<T>) {
  if v.capacity() > KEEP.max(2 * v.len()) {
    v.shrink_to(KEEP.max(v.len()));
  }
}

/// Puts the sessions of a listing in registration order (by seq, each unique).
#[derive(Default)]
struct SeqOrder {
  perm: Vec<u32>,
  places: Vec<u32>,
  pairs: Vec<(u64, u32)>,
}

impl SeqOrder {
  /// The indexes of `seqs` by increasing seq. Sequence numbers mostly come from a dense range
  /// (a replaced id keeps its own): then each index goes straight to its place, in one pass;
  /// otherwise they are sorted. The sort was a tenth of `getStats` at 10,000 sessions (perf).
  fn of(&mut self, seqs: &[u64]) -> &[u32] {
    let SeqOrder {
      perm,
      places,
      pairs,
    } = self;
    perm.clear();
    pairs.clear();
    let min = seqs.iter().copied().min().unwrap_or(0);
    let max = seqs.iter().copied().max().unwrap_or(0);
    if max - min < (4 * seqs.len() as u64).max(64) {
      places.clear();
      places.resize((max - min) as usize + 1, u32::MAX);
      for (i, &seq) in seqs.iter().enumerate() {
        places[(seq - min) as usize] = i as u32;
      }
      perm.extend(places.iter().copied().filter(|&i| i != u32::MAX));
    } else {
      // The seq beside its index: a sort that looked each seq up by index was slower than the
      // sort it replaced (random reads in every comparison).
      pairs.extend(seqs.iter().enumerate().map(|(i, &seq)| (seq, i as u32)));
      pairs.sort_unstable();
      perm.extend(pairs.iter().map(|p| p.1));
    }
    trim(places);
    trim(pairs);
    perm
  }

  fn held(&self) -> usize {
    bytes(&self.perm) + bytes(&self.places) + bytes(&self.pairs)
  }
}

/// One `getStats` row: where its text starts, the lengths of id, createdAt, lastActivity (or
/// [`SAME_AS_CREATED`]) and error (-1: null), flags ([`S_CONNECTED`] ...), status index.
const STAT_INTS: usize = 7;
const S_CONNECTED: i32 = 1;
const S_IDLE: i32 = 2;
const S_ERROR: i32 = 4;
/// In place of lastActivity's length: the same string as createdAt.
const SAME_AS_CREATED: i32 = -2;

/// `getStats()`'s data: `[text, ints, n, idleAfterMs, faultCount, faultLast]`; `ints` (a fresh
/// `ArrayBuffer` of int32) holds `n` rows of `STAT_INTS`, then the counts by status (untracked
/// last), then the sizes of inactive, error, connected and disconnected lists. The same fields
/// and rules as `stats::collect`, read straight from the table: `collect` copies each id and
/// error and sorts the copies, which perf showed as a fifth of the call.
#[napi(js_name = "__stats", skip_typescript)]
pub fn stats_data(env: Env) -> napi::Result<JsAny> {
  let raw = env.raw();
  finish(&env, stats_js(raw).map(JsAny))
}

thread_local! {
  /// `__stats`' working memory, kept from one call to the next (see `ALL_WORK`).
  static STATS_WORK: std::cell::RefCell<StatsWork> = std::cell::RefCell::default();
}

#[derive(Default)]
struct StatsWork {
  seqs: Vec<u64>,
  rows: Vec<[i32; STAT_INTS]>,
  text: Text,
  sorting: SeqOrder,
}

fn stats_js(env: js::Env) -> JsResult<Value> {
  // Taken out of the thread's cell for the call (and put back after): nothing borrowed is held
  // while Node-API runs, whatever JavaScript that may reach.
  let mut work = STATS_WORK.take();
  let answer = {
    let StatsWork {
      seqs,
      rows,
      text,
      sorting,
    } = &mut work;
    seqs.clear();
    rows.clear();
    text.clear();
    let idle_after = config::idle_after_ms();
    let now = js::now_ms();
    let mut by_status = stats::StatusCounts::default();
    let mut sizes = [0i32; 4];
    let mut iso = IsoCache::default();
    table::for_each(|id, r, _| {
      let st = &r.state;
      by_status[stats::status_index(st.status)] += 1;
      let mut m = [0i32; STAT_INTS];
      m[0] = text.len() as i32;
      m[1] = text.push_str(id);
      m[2] = iso.push(text, st.created_at);
      // Never active since registered: lastActivity is the very createdAt string.
      m[3] = if st.last_activity() == st.created_at {
        SAME_AS_CREATED
      } else {
        iso.push(text, st.last_activity())
      };
      m[4] = text.push_opt(st.error());
      let idle = st.is_idle(now, idle_after as f64);
      let failed = st.error().is_some_and(|e| !e.is_empty());
      m[5] = (if st.is_connected { S_CONNECTED } else { 0 })
        | (if idle { S_IDLE } else { 0 })
        | (if failed { S_ERROR } else { 0 });
      sizes[0] += i32::from(idle);
      sizes[1] += i32::from(failed);
      sizes[2] += i32::from(st.is_connected);
      sizes[3] += i32::from(!st.is_connected);
      m[6] = st.status.map_or(-1, |s| s.index() as i32);
      seqs.push(r.seq());
      rows.push(m);
    });
    let n = rows.len();
    let (buf, ints) = i32_buffer(env, n * STAT_INTS + by_status.len() + sizes.len())?;
    for (chunk, &i) in ints.chunks_exact_mut(STAT_INTS).zip(sorting.of(seqs)) {
      chunk.copy_from_slice(&rows[i as usize]);
    }
    let tail = &mut ints[n * STAT_INTS..];
    for (slot, count) in tail.iter_mut().zip(by_status) {
      *slot = i32::try_from(count).unwrap_or(i32::MAX);
    }
    tail[by_status.len()..].copy_from_slice(&sizes);
    let (count, last) = tracking::faults();
    let values = [
      text_value(env, text)?,
      buf,
      js::number(env, n as f64)?,
      js::number(env, idle_after as f64)?,
      js::number(env, count as f64)?,
      js::opt_string(env, last.as_deref())?,
    ];
    trim(&mut text.latin1);
    js::array_of(env, values.into_iter())
  };
  if work.held() <= WORK_BUDGET {
    STATS_WORK.set(work);
  }
  answer
}

impl StatsWork {
  /// Bytes of working memory this thread keeps.
  fn held(&self) -> usize {
    bytes(&self.seqs) + bytes(&self.rows) + self.text.held() + self.sorting.held()
  }
}

/// A plain object of named integer constants, as index.js reads the layout's codes.
fn numbers_object<T: Into<f64>, const N: usize>(
  env: js::Env,
  pairs: [(&std::ffi::CStr, T); N],
) -> JsResult<Value> {
  let o = js::object(env)?;
  for (name, v) in pairs {
    js::set_named(env, o, name, js::number(env, v.into())?)?;
  }
  Ok(o)
}

/// What index.js builds its shapers from, once per environment: `{ fields, statusNames,
/// reservedKeys, scratch, pageShift, noSlot, stats, known, allRow, now }`. `fields` is
/// `layout::FIELDS` as `[name, kind, inner?]` rows; `now` is the clock every change reads (so
/// index.js can tell whether its `Date.now` agrees with it).
#[napi(js_name = "__stateLayout", skip_typescript)]
pub fn state_layout(env: Env) -> napi::Result<JsAny> {
  let raw = env.raw();
  finish(&env, layout_js(raw).map(JsAny))
}

fn fields_js(env: js::Env, fields: &[Field]) -> JsResult<Value> {
  let arr = js::array(env, fields.len())?;
  for (i, f) in fields.iter().enumerate() {
    let (kind, inner) = match f.kind {
      Kind::Num(_) => ("num", None),
      Kind::OptNum(_) => ("optNum", None),
      Kind::Bool(_) => ("bool", None),
      Kind::OptStr(_) => ("optStr", None),
      Kind::Status(_) => ("status", None),
      Kind::Group(_, inner) => ("group", Some(inner)),
    };
    let row = js::array(env, 3)?;
    js::set_element(env, row, 0, js::string(env, f.name)?)?;
    js::set_element(env, row, 1, js::string(env, kind)?)?;
    if let Some(inner) = inner {
      js::set_element(env, row, 2, fields_js(env, inner)?)?;
    }
    js::set_element(env, arr, i as u32, row)?;
  }
  Ok(arr)
}

fn layout_js(env: js::Env) -> JsResult<Value> {
  let o = js::object(env)?;
  js::set_named(env, o, c"fields", fields_js(env, layout::FIELDS)?)?;
  let names = js::array(env, Status::ALL.len())?;
  for (i, s) in Status::ALL.iter().enumerate() {
    js::set_element(env, names, i as u32, js::string(env, s.as_str())?)?;
  }
  js::set_named(env, o, c"statusNames", names)?;
  let reserved = js::array(env, FORBIDDEN_KEYS.len() + READ_ONLY_KEYS.len())?;
  for (i, key) in FORBIDDEN_KEYS.iter().chain(&READ_ONLY_KEYS).enumerate() {
    js::set_element(env, reserved, i as u32, js::string(env, key)?)?;
  }
  js::set_named(env, o, c"reservedKeys", reserved)?;
  let scratch = SCRATCH.with(|s| (s.as_ptr(), s.len()));
  let buf = external_buffer(env, scratch.0.cast_mut().cast(), scratch.1 * 8)?;
  js::set_named(env, o, c"scratch", buf)?;
  js::set_named(
    env,
    o,
    c"pageShift",
    js::number(env, f64::from(versions::PAGE_SHIFT))?,
  )?;
  js::set_named(
    env,
    o,
    c"noSlot",
    js::number(env, f64::from(versions::NO_SLOT))?,
  )?;
  let stats = numbers_object(
    env,
    [
      (c"ints", STAT_INTS as i32),
      (c"connected", S_CONNECTED),
      (c"idle", S_IDLE),
      (c"error", S_ERROR),
      (c"sameAsCreated", SAME_AS_CREATED),
    ],
  )?;
  js::set_named(env, o, c"stats", stats)?;
  let known = numbers_object(
    env,
    [
      (c"isConnected", KNOWN_IS_CONNECTED),
      (c"connected", KNOWN_CONNECTED),
      (c"error", KNOWN_ERROR),
      (c"status", KNOWN_STATUS),
      (c"statusShift", KNOWN_STATUS_SHIFT),
    ],
  )?;
  js::set_named(env, o, c"known", known)?;
  js::set_named(env, o, c"allRow", js::number(env, ALL_ROW as f64)?)?;
  js::set_named(env, o, c"now", js::number(env, js::now_ms())?)?;
  Ok(o)
}

/// Page `index` of the version counters, as an external `ArrayBuffer` of uint32 over memory
/// that lives as long as the process (`undefined` past the last page).
#[napi(js_name = "__versionPage", skip_typescript)]
pub fn version_page(env: Env, index: u32) -> napi::Result<JsAny> {
  lend_page(&env, versions::page_memory(index))
}

/// Page `index` of the touch times (`versions::touched`), as an external `ArrayBuffer` of
/// float64 over memory that lives as long as the process (`undefined` past the last page):
/// index.js writes there the time of an update it applies without a native call.
#[napi(js_name = "__touchPage", skip_typescript)]
pub fn touch_page(env: Env, index: u32) -> napi::Result<JsAny> {
  lend_page(&env, versions::touch_memory(index))
}

/// A page of `versions` as an external `ArrayBuffer`, or `undefined` for none.
fn lend_page<T>(env: &Env, page: Option<&'static [T]>) -> napi::Result<JsAny> {
  let raw = env.raw();
  finish(
    env,
    match page {
      Some(p) => {
        external_buffer(raw, p.as_ptr().cast_mut().cast(), std::mem::size_of_val(p)).map(JsAny)
      }
      None => Ok(JsAny(js::undefined(raw))),
    },
  )
}

/// An `ArrayBuffer` over memory that outlives every view of it (no finalizer).
fn external_buffer(env: js::Env, data: *mut std::ffi::c_void, bytes: usize) -> JsResult<Value> {
  let mut v = ptr::null_mut();
  js::ok(unsafe {
    sys::napi_create_external_arraybuffer(env, data, bytes, None, ptr::null_mut(), &mut v)
  })?;
  Ok(v)
}

/// The one JS string of a result.
fn text_value(env: js::Env, text: &Text) -> JsResult<Value> {
  let mut v = ptr::null_mut();
  js::ok(unsafe {
    match &text.wide {
      None => sys::napi_create_string_latin1(
        env,
        text.latin1.as_ptr().cast(),
        text.latin1.len() as isize,
        &mut v,
      ),
      Some(w) => sys::napi_create_string_utf16(env, w.as_ptr(), w.len() as isize, &mut v),
    }
  })?;
  Ok(v)
}

/// A fresh `ArrayBuffer` of `n` doubles and a Rust view of it.
fn f64_buffer<'a>(env: js::Env, n: usize) -> JsResult<(Value, &'a mut [f64])> {
  let (buf, data) = raw_buffer(env, n * 8)?;
  // Fresh, zeroed, aligned memory that nothing else sees until index.js reads it.
  Ok((buf, unsafe {
    std::slice::from_raw_parts_mut(data.cast(), n)
  }))
}

fn i32_buffer<'a>(env: js::Env, n: usize) -> JsResult<(Value, &'a mut [i32])> {
  let (buf, data) = raw_buffer(env, n * 4)?;
  Ok((buf, unsafe {
    std::slice::from_raw_parts_mut(data.cast(), n)
  }))
}

fn raw_buffer(env: js::Env, bytes: usize) -> JsResult<(Value, *mut u8)> {
  let mut data = ptr::null_mut();
  let mut buf = ptr::null_mut();
  js::ok(unsafe { sys::napi_create_arraybuffer(env, bytes.max(8), &mut data, &mut buf) })?;
  if data.is_null() || !data.cast::<f64>().is_aligned() {
    return Err(Fail::Js);
  }
  Ok((buf, data.cast()))
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
