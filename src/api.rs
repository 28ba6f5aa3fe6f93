//! The JavaScript API: argument checks and conversion only. The logic lives in `table`,
//! `state`, `stats`, `tracking`, `events` and `snapshot`.

use std::ffi::c_void;
use std::path::PathBuf;
use std::ptr;

use napi::bindgen_prelude::{FromNapiValue, ToNapiValue, TypeName, ValidateNapiValue};
use napi::sys::ValueType as Vt;
use napi::{sys, Env, ValueType};
use napi_derive::napi;

use crate::events::{self, ChangeKind};
use crate::handles;
use crate::js::{self, Fail, JsResult, Value};
use crate::promise::{self, KeepAlive, Outcome};
use registry_core::config;
use registry_core::errors::RegistryError;
use registry_core::snapshot::{self, SavedSession};
use registry_core::state::Status;
use registry_core::table;

/// Any JS value, passed through untouched (the typings come from `ts_args_type`).
#[derive(Clone, Copy)]
pub struct JsAny(pub sys::napi_value);

impl FromNapiValue for JsAny {
  unsafe fn from_napi_value(_env: sys::napi_env, v: sys::napi_value) -> napi::Result<Self> {
    Ok(JsAny(v))
  }
}

impl ToNapiValue for JsAny {
  unsafe fn to_napi_value(_env: sys::napi_env, v: Self) -> napi::Result<sys::napi_value> {
    Ok(v.0)
  }
}

impl TypeName for JsAny {
  fn type_name() -> &'static str {
    "unknown"
  }
  fn value_type() -> ValueType {
    ValueType::Unknown
  }
}

impl ValidateNapiValue for JsAny {}

/// Turns a failure into a thrown JS error (with its code) for napi-rs to return.
pub(crate) fn finish<T>(env: &Env, r: JsResult<T>) -> napi::Result<T> {
  r.map_err(|f| {
    js::throw_fail(env.raw(), f);
    napi::Error::new(napi::Status::PendingException, "")
  })
}

fn session_id_arg(env: js::Env, v: Value, what: &str) -> JsResult<String> {
  match js::with_id(env, v, str::to_owned) {
    Ok(id) if !id.is_empty() => Ok(id),
    Ok(_) => {
      Err(RegistryError::InvalidSessionId(format!("{what}: sessionId must not be empty")).into())
    }
    Err(js::BadId::LoneSurrogate) => Err(lone_surrogate(what).into()),
    Err(js::BadId::NotString) => Err(
      RegistryError::InvalidSessionId(format!(
        "{what}: sessionId must be a non-empty string, got {}",
        type_name(env, v)
      ))
      .into(),
    ),
  }
}

fn lone_surrogate(what: &str) -> RegistryError {
  RegistryError::InvalidSessionId(format!(
    "{what}: sessionId contains a lone surrogate (half of a UTF-16 pair), which cannot be kept apart from other such ids"
  ))
}

fn type_name(env: js::Env, v: Value) -> &'static str {
  match js::type_of(env, v) {
    Vt::napi_undefined => "undefined",
    Vt::napi_null => "null",
    Vt::napi_boolean => "a boolean",
    Vt::napi_number => "a number",
    Vt::napi_string => "a string",
    Vt::napi_symbol => "a symbol",
    Vt::napi_object => "an object",
    Vt::napi_function => "a function",
    Vt::napi_bigint => "a bigint",
    _ => "an unknown value",
  }
}

/// `options[key]`, or `None` when there are no options or the key is `undefined`.
fn option(env: js::Env, options: Value, key: &std::ffi::CStr) -> JsResult<Option<Value>> {
  if js::is_nullish(env, options) {
    return Ok(None);
  }
  let v = js::get_named(env, options, key)?;
  Ok((js::type_of(env, v) != Vt::napi_undefined).then_some(v))
}

fn options_arg(env: js::Env, options: Value, what: &str) -> JsResult<()> {
  if js::is_nullish(env, options) || js::is_object(env, options) {
    Ok(())
  } else {
    Err(
      RegistryError::InvalidOptions(format!(
        "{what}: options must be an object, got {}",
        type_name(env, options)
      ))
      .into(),
    )
  }
}

fn env_identity() -> JsResult<(table::EnvKey, u32)> {
  handles::current().ok_or_else(|| {
    RegistryError::Internal("the registry was not initialised in this thread".into()).into()
  })
}

/// Changes process-wide settings and returns them all. Throws `ERR_INVALID_OPTIONS` for a
/// value that is not a number of milliseconds >= 1.
#[napi(
  ts_args_type = "options?: RegistryConfig",
  ts_return_type = "Required<RegistryConfig>"
)]
pub fn configure(env: Env, options: JsAny) -> napi::Result<JsAny> {
  let raw = env.raw();
  finish(&env, configure_js(raw, options.0).map(JsAny))
}

fn configure_js(env: js::Env, options: Value) -> JsResult<Value> {
  options_arg(env, options, "configure(options)")?;
  let read = |key: &std::ffi::CStr| -> JsResult<Option<u64>> {
    let Some(v) = option(env, options, key)? else {
      return Ok(None);
    };
    let name = key.to_string_lossy();
    let n = js::get_number(env, v).ok_or_else(|| {
      RegistryError::InvalidOptions(format!("configure: {name} must be a number"))
    })?;
    Ok(Some(config::check_ms(&name, n)?))
  };
  let idle = read(c"idleAfterMs")?;
  let stuck = read(c"stuckAfterMs")?;
  config::set(idle, stuck);
  events::ensure_health_task();
  events::wake_health();
  let o = js::object(env)?;
  js::set_named(
    env,
    o,
    c"idleAfterMs",
    js::number(env, config::idle_after_ms() as f64)?,
  )?;
  js::set_named(
    env,
    o,
    c"stuckAfterMs",
    js::number(env, config::stuck_after_ms() as f64)?,
  )?;
  Ok(o)
}

/// Calls `listener` with `{ sessionId, type, previous, current, threadId }` on each
/// registration, each removal, each change of a session's `status` or `isConnected`, and when
/// a session is stuck in `connecting` — for sessions of every thread. Listeners run on the
/// thread that subscribed, after the change (never inside the call that made it). A listener
/// that throws is reported with `process.emitWarning` and does not stop the others. The
/// subscription does not keep the process alive. Returns a function that unsubscribes.
#[napi(
  ts_args_type = "listener: (event: StateChangeEvent) => void",
  ts_return_type = "() => boolean"
)]
pub fn on_state_change(env: Env, listener: JsAny) -> napi::Result<JsAny> {
  let raw = env.raw();
  finish(&env, subscribe(raw, listener.0).map(JsAny))
}

fn subscribe(env: js::Env, listener: Value) -> JsResult<Value> {
  if !js::is_function(env, listener) {
    return Err(
      RegistryError::InvalidListener(format!(
        "onStateChange(listener): listener must be a function, got {}",
        type_name(env, listener)
      ))
      .into(),
    );
  }
  let (env_key, _) = env_identity()?;
  let id = events::subscribe(env, env_key, listener)?;
  // The subscription id rides in the function's data pointer: no user-patchable builtin
  // (such as `Function.prototype.bind`) runs between subscribing and handing out the function,
  // and if making it fails, nothing stays subscribed.
  js::function(
    env,
    c"unsubscribe",
    unsubscribe_cb,
    id as usize as *mut c_void,
  )
  .inspect_err(|_| {
    events::unsubscribe(id);
  })
}

unsafe extern "C" fn unsubscribe_cb(env: js::Env, info: sys::napi_callback_info) -> Value {
  js::guard(env, || {
    let args = unsafe { js::cb_args::<0>(env, info) };
    let removed = args.is_some_and(|(_, id)| events::unsubscribe(id as usize as u64));
    js::boolean(env, removed).unwrap_or(ptr::null_mut())
  })
}

/// Resolves with the session's state when it reaches `status` (at once if it already has it).
/// Rejects with `ERR_WAIT_TIMEOUT` after `timeoutMs`, `ERR_SESSION_REMOVED` if the session is
/// removed meanwhile, `ERR_STATE_UNREACHABLE` when it reaches a status from which the wanted
/// one cannot follow (`loggedOut`), and `ERR_SESSION_NOT_FOUND` for an unknown id. A wait with
/// `timeoutMs` keeps the process alive until it settles, as a timer would; a wait without one
/// does not (if nothing else keeps the process alive, nothing could change the session).
#[napi(
  ts_args_type = "sessionId: string, status: SessionStatus, options?: WaitOptions",
  ts_return_type = "Promise<SessionState>"
)]
pub fn wait_for_state(
  env: Env,
  session_id: JsAny,
  status: JsAny,
  options: JsAny,
) -> napi::Result<JsAny> {
  let raw = env.raw();
  finish(
    &env,
    wait_js(raw, session_id.0, status.0, options.0).map(JsAny),
  )
}

fn wait_js(env: js::Env, id: Value, status: Value, options: Value) -> JsResult<Value> {
  const WHAT: &str = "waitForState(sessionId, status, options)";
  let id = session_id_arg(env, id, WHAT)?;
  let wanted = js::get_string(env, status)
    .and_then(|s| Status::parse(&s))
    .ok_or_else(|| {
      Fail::Registry(RegistryError::InvalidOptions(format!(
        "{WHAT}: status must be one of {}",
        Status::ALL.map(|s| format!("'{}'", s.as_str())).join(", ")
      )))
    })?;
  options_arg(env, options, WHAT)?;
  // A null timeoutMs means no timeout, like a missing one.
  let timeout = match option(env, options, c"timeoutMs")? {
    Some(v) if !js::is_nullish(env, v) => {
      let n = js::get_number(env, v)
        .filter(|n| n.is_finite() && *n >= 0.0)
        .ok_or_else(|| {
          Fail::Registry(RegistryError::InvalidOptions(format!(
            "{WHAT}: options.timeoutMs must be a number >= 0"
          )))
        })?;
      Some(n as u64)
    }
    _ => None,
  };
  if table::get(&id).is_none() {
    return promise::settled(env, Err(RegistryError::SessionNotFound(id)));
  }
  let (env_key, _) = env_identity()?;
  // With a timeout the wait holds the process like a timer; without one it does not: if
  // nothing else keeps the process alive, nothing could change the session either.
  let keep_alive = if timeout.is_some() {
    KeepAlive::Yes
  } else {
    KeepAlive::No
  };
  let (promise, pending) = promise::pending(env, keep_alive)?;
  // Listen first, then look: a change between the two (from any thread) decides the waiter
  // itself, so it cannot be missed.
  let waiter = events::add_waiter(&id, wanted, env_key, pending);
  let now = match table::get(&id) {
    None => Some(Err(RegistryError::SessionRemoved(id.clone()))),
    Some(state) => events::judge(&id, wanted, state),
  };
  match now {
    Some(result) => {
      if let Some(pending) = events::take_waiter(&id, waiter) {
        pending.settle_now(env, result.map(|s| Outcome::State(Box::new(s))));
      }
    }
    None => {
      if let Some(ms) = timeout {
        events::time_out_waiter(&id, waiter, wanted, ms);
      }
    }
  }
  Ok(promise)
}

fn path_arg(env: js::Env, v: Value, what: &str) -> JsResult<PathBuf> {
  js::get_string(env, v)
    .filter(|p| !p.is_empty())
    .map(PathBuf::from)
    .ok_or_else(|| {
      RegistryError::InvalidOptions(format!("{what}: path must be a non-empty string")).into()
    })
}

/// Writes every session of the process (ids, `me`, times, counters, custom keys; never a QR
/// code or a socket) to `path` as JSON with a `version` field. The write is atomic: a
/// temporary file in the same directory, readable by its owner only, flushed to disk and
/// renamed over `path`; on failure the previous file is left as it was and the promise
/// rejects with `ERR_SNAPSHOT_IO`. A symbolic link (or a chain of them) is followed and the
/// file it names is replaced, the link kept; a dangling link creates its target. A directory,
/// FIFO, socket or device at `path` is refused with `ERR_SNAPSHOT_IO` and left untouched, as
/// is a symbolic link loop. A snapshot over 256 MiB rejects with `ERR_SNAPSHOT_TOO_LARGE`
/// and writes nothing. Each save first removes the temporary files of this path that
/// writers killed mid-save left behind (their process gone, the file unchanged for 60 s).
#[napi(
  ts_args_type = "path: string",
  ts_return_type = "Promise<SnapshotInfo>"
)]
pub fn save_snapshot(env: Env, path: JsAny) -> napi::Result<JsAny> {
  let raw = env.raw();
  finish(&env, save_js(raw, path.0).map(JsAny))
}

fn save_js(env: js::Env, path: Value) -> JsResult<Value> {
  let path = path_arg(env, path, "saveSnapshot(path)")?;
  let saved_at = js::now_ms();
  let sessions: Vec<SavedSession> = table::all()
    .iter()
    .map(|(id, s)| SavedSession::from_state(id, s))
    .collect();
  let count = sessions.len();
  promise::spawn(env, KeepAlive::Yes, async move {
    let bytes = snapshot::encode(saved_at, sessions)?;
    let target = path.clone();
    napi::bindgen_prelude::spawn_blocking(move || snapshot::write_atomic(&target, &bytes))
      .await
      .map_err(|e| RegistryError::Internal(e.to_string()))??;
    Ok(Outcome::Saved {
      path: path.to_string_lossy().into_owned(),
      sessions: count,
      saved_at,
    })
  })
}

/// Reads a snapshot written by {@link saveSnapshot} and resolves with its sessions. It changes
/// nothing in the registry (it does not invent sockets): the bot re-creates its sockets from
/// the list. Rejects with `ERR_SNAPSHOT_NOT_FOUND`, `ERR_SNAPSHOT_IO` (also for anything
/// but a regular file, such as a directory, FIFO or device, refused without reading it),
/// `ERR_SNAPSHOT_TOO_LARGE` (over 256 MiB; never reads more than that),
/// `ERR_SNAPSHOT_CORRUPT` (truncated or malformed) or `ERR_SNAPSHOT_VERSION`.
#[napi(
  ts_args_type = "path: string",
  ts_return_type = "Promise<SavedSession[]>"
)]
pub fn load_snapshot(env: Env, path: JsAny) -> napi::Result<JsAny> {
  let raw = env.raw();
  finish(&env, load_js(raw, path.0).map(JsAny))
}

fn load_js(env: js::Env, path: Value) -> JsResult<Value> {
  let path = path_arg(env, path, "loadSnapshot(path)")?;
  promise::spawn(env, KeepAlive::Yes, async move {
    let file = napi::bindgen_prelude::spawn_blocking(move || snapshot::read(&path))
      .await
      .map_err(|e| RegistryError::Internal(e.to_string()))??;
    Ok(Outcome::Sessions(file.sessions))
  })
}

/// Sets up this environment (main thread or worker) when the addon loads.
#[napi(module_exports)]
pub fn init(env: Env, exports: napi::bindgen_prelude::Object) -> napi::Result<()> {
  let raw = env.raw();
  handles::set_teardown(teardown_env);
  let thread_id = current_thread_id(raw);
  finish(
    &env,
    handles::init_env(raw, thread_id)
      .and_then(|_| crate::fast::install(raw, napi::JsValue::raw(&exports)))
      .and_then(|_| crate::sockets::install(raw, napi::JsValue::raw(&exports)))
      .and_then(|_| crate::session_state::install(raw, napi::JsValue::raw(&exports))),
  )
}

/// `worker_threads.threadId` of this environment (0 on the main thread).
///
/// `process.getBuiltinModule` exists from Node 20.16 only; on older versions the package's
/// entry (`index.js`), which can `require`, leaves the id in [`LOADER_THREAD_ID`] for the
/// duration of the load.
fn current_thread_id(env: js::Env) -> u32 {
  let read = || -> JsResult<Option<u32>> {
    let global = js::global(env)?;
    let from_loader = js::get_named(env, global, LOADER_THREAD_ID)?;
    if let Some(id) = js::get_number(env, from_loader) {
      return Ok(Some(id as u32));
    }
    let process = js::get_named(env, global, c"process")?;
    let get = js::get_named(env, process, c"getBuiltinModule")?;
    if !js::is_function(env, get) {
      return Ok(None);
    }
    let name = js::string(env, "worker_threads")?;
    let wt = js::call(env, process, get, &[name])?;
    let id = js::get_named(env, wt, c"threadId")?;
    Ok(js::get_number(env, id).map(|n| n as u32))
  };
  read().ok().flatten().unwrap_or_else(|| {
    js::take_exception(env);
    0
  })
}

/// The global through which `index.js` hands over `worker_threads.threadId` while it loads the
/// addon (and deletes right after).
const LOADER_THREAD_ID: &std::ffi::CStr = c"__baileysSocketRegistryThreadId";

/// An environment is going away: its sessions leave the process-wide table.
fn teardown_env(env_key: table::EnvKey) {
  // Its own subscriptions go first: their channels are being finalized with it.
  events::remove_env(env_key);
  events::remove_waiters(env_key);
  for (id, record) in table::remove_owned_by(env_key) {
    events::emit(&id, ChangeKind::Removed, Some(record.state), None);
    // A worker that exits with sessions gives their cluster leases up, as unregistering does.
    crate::cluster::on_unregistered(&id);
  }
}
