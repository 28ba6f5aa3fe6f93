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
use crate::handles::{self, SocketEntry};
use crate::js::{self, Fail, JsResult, Value};
use crate::promise::{self, KeepAlive, Outcome};
use crate::tracking;
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

/// The id a lookup asks for; `None` (no such session, as for a non-string) when it cannot be a
/// registered id: a session id never holds a lone surrogate.
pub(crate) fn lookup_id(env: js::Env, v: Value) -> Option<String> {
  js::with_id(env, v, str::to_owned).ok()
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

/// Reads an optional boolean option; `undefined` gives the default.
fn bool_option(
  env: js::Env,
  options: Value,
  key: &std::ffi::CStr,
  default: bool,
  what: &str,
) -> JsResult<bool> {
  let Some(v) = option(env, options, key)? else {
    return Ok(default);
  };
  js::get_bool(env, v).ok_or_else(|| {
    RegistryError::InvalidOptions(format!(
      "{what}: options.{} must be a boolean",
      key.to_string_lossy()
    ))
    .into()
  })
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

/// Stores `socket` under `sessionId` and returns the same socket.
///
/// If the id already has another socket in this thread, the new socket takes its place and
/// then the old one is let go: the registry's listeners are removed from it (`ev.off`) and it
/// is ended (`end(undefined)`). If that `end()` registers the id again, that registration is
/// the latest and wins. Registering the socket that is already registered under the id
/// changes nothing.
/// The new session's state starts as `{ createdAt: now, lastActivity: now, isConnected: false,
/// error: null, status: 'connecting' }` (status `null` when not tracked). Unless
/// `{ track: false }`, the registry follows the socket's `connection.update`,
/// `messages.upsert` and `creds.update` events to keep that state current.
///
/// Throws `ERR_INVALID_SESSION_ID` (TypeError) for an id that is not a non-empty string (or
/// holds a lone surrogate), `ERR_INVALID_SOCKET` (TypeError) for a socket that is not an object,
/// `ERR_INVALID_OPTIONS` (TypeError) for malformed options, and
/// `ERR_SESSION_OWNED_BY_OTHER_THREAD` when another worker thread owns the id.
#[napi(
  ts_generic_types = "T extends object",
  ts_args_type = "sessionId: string, socket: T, options?: RegisterOptions",
  ts_return_type = "T"
)]
pub fn register_socket(
  env: Env,
  session_id: JsAny,
  socket: JsAny,
  options: JsAny,
) -> napi::Result<JsAny> {
  finish(
    &env,
    register(env.raw(), session_id.0, socket.0, options.0).map(JsAny),
  )
}

fn register(env: js::Env, id: Value, socket: Value, options: Value) -> JsResult<Value> {
  const WHAT: &str = "registerSocket(sessionId, socket, options)";
  let id = session_id_arg(env, id, WHAT)?;
  if !js::is_object(env, socket) && !js::is_function(env, socket) {
    return Err(
      RegistryError::InvalidSocket(format!(
        "{WHAT}: socket must be an object, got {}",
        type_name(env, socket)
      ))
      .into(),
    );
  }
  options_arg(env, options, WHAT)?;
  let track = bool_option(env, options, c"track", true, WHAT)?;
  let takeover = bool_option(env, options, c"takeover", false, WHAT)?;
  register_checked(env, &id, socket, track, takeover)?;
  Ok(socket)
}

/// Registers an already-checked socket. Shared by `registerSocket` and `createSocketWrapper`.
///
/// The new socket takes the id in one step, in the table and in this thread's handles at once,
/// and only then is the old socket let go (`ev.off`, `end()`). Letting go runs the caller's
/// JavaScript, which may register the id again (a bot that reconnects from inside `end`):
/// that registration is the latest, so it wins, and it lets go of this one in turn. Every
/// socket taken out of the handles is let go exactly once, by whoever took it out.
fn register_checked(
  env: js::Env,
  id: &str,
  socket: Value,
  track: bool,
  takeover: bool,
) -> JsResult<()> {
  handles::sync_pending(env);
  let (env_key, thread_id) = env_identity()?;
  // Refuse before touching anything when another thread owns the id.
  if !takeover {
    let mut owner = None;
    table::for_one(id, |r| owner = Some((r.owner, r.state.thread_id)));
    if let Some((owner, owner_thread)) = owner {
      if owner != env_key {
        return Err(
          RegistryError::SessionOwnedByOtherThread {
            session_id: id.to_owned(),
            thread_id: owner_thread,
          }
          .into(),
        );
      }
    }
  }
  // The very socket already registered under this id (a bot whose createBaileysSocket and
  // wrapper both register): ending it as a "replaced" socket would kill a live session, so a
  // second registration of it changes nothing.
  if is_registered_as(env, id, socket) {
    return Ok(());
  }
  let socket_ref = js::Ref::new(env, socket)?;
  let registered = match table::register(id, env_key, thread_id, track, takeover, js::now_ms()) {
    Ok(r) => r,
    Err(e) => {
      socket_ref.delete(env);
      return Err(e.into());
    }
  };
  let generation = registered.generation;
  // No JavaScript runs between the table's change above and this one.
  let old = handles::with(|t| {
    t.sockets.insert(
      id.into(),
      SocketEntry {
        socket: socket_ref,
        generation,
        listeners: Vec::new(),
      },
    )
  })
  .flatten();
  if let Some((owner, previous)) = registered.previous {
    if owner != env_key {
      handles::revoke(owner, id, previous);
    }
  }
  if events::wanted() {
    let current = table::get(id);
    events::emit(
      id,
      ChangeKind::Registered,
      registered.previous_state,
      current,
    );
  }
  if track {
    match tracking::attach(env, id, generation, socket) {
      Ok(listeners) => {
        // Attaching ran JS: keep the listeners only if this registration is still current.
        let leftover = handles::with(|t| match t.sockets.get_mut(id) {
          Some(e) if e.generation == generation => {
            e.listeners = listeners;
            None
          }
          _ => Some(listeners),
        })
        .flatten();
        if let Some(listeners) = leftover {
          tracking::detach(env, id, socket, listeners);
        }
      }
      Err(reason) => {
        let text = tracking::record_fault(id, "tracking disabled", &reason);
        let applied = table::update(id, Some(generation), events::wanted, |r| {
          ((), Some(r.state.mark_untracked(text)))
        });
        if let Some((before, after)) = applied.and_then(|a| a.change) {
          events::emit(id, ChangeKind::Status, Some(before), Some(after));
        }
      }
    }
  }
  if let Some(old) = old {
    tracking::release(env, id, old);
  }
  Ok(())
}

/// Whether `socket` is the very object this thread has registered under `id`.
fn is_registered_as(env: js::Env, id: &str, socket: Value) -> bool {
  handles::socket_value(env, id, None)
    .is_some_and(|current| js::strict_equals(env, current, socket))
}

/// The socket registered under `sessionId` in this thread (the very same object), or `null`.
#[napi(
  ts_generic_types = "T = any",
  ts_args_type = "sessionId: string",
  ts_return_type = "T | null"
)]
pub fn get_socket(env: Env, session_id: JsAny) -> JsAny {
  let env = env.raw();
  handles::sync_pending(env);
  let found = js::with_id(env, session_id.0, |id| handles::socket_value(env, id, None))
    .ok()
    .flatten();
  JsAny(found.unwrap_or_else(|| js::null(env)))
}

/// Whether `sessionId` has a socket in this thread.
#[napi(ts_args_type = "sessionId: string")]
pub fn has_socket(env: Env, session_id: JsAny) -> bool {
  let env = env.raw();
  handles::sync_pending(env);
  js::with_id(env, session_id.0, |id| {
    handles::with(|t| t.sockets.contains_key(id))
  })
  .ok()
  .flatten()
  .unwrap_or(false)
}

/// How many sockets this thread has registered.
#[napi]
pub fn get_socket_count(env: Env) -> u32 {
  handles::sync_pending(env.raw());
  handles::with(|t| t.sockets.len() as u32).unwrap_or(0)
}

/// A new `Map` of sessionId → socket for this thread. It is a copy: changing it does not
/// change the registry.
#[napi(ts_generic_types = "T = any", ts_return_type = "Map<string, T>")]
pub fn get_all_sockets(env: Env) -> napi::Result<JsAny> {
  let raw = env.raw();
  finish(&env, all_sockets(raw).map(JsAny))
}

fn all_sockets(env: js::Env) -> JsResult<Value> {
  handles::sync_pending(env);
  // Every socket is read into a handle before any JavaScript runs: `Map` and
  // `Map.prototype.set` are the caller's to patch, and a patched one may unregister sockets,
  // which deletes the registry's references to them. Handles stay valid whatever runs.
  let mut ordered: Vec<(u64, Box<str>, JsResult<Value>)> = handles::with(|t| {
    t.sockets
      .iter()
      .map(|(k, e)| {
        (
          table::seq_of(k).unwrap_or(u64::MAX),
          k.clone(),
          e.socket.value(env),
        )
      })
      .collect()
  })
  .unwrap_or_default();
  // In registration order, as the table keeps it.
  ordered.sort_by_key(|e| e.0);
  let ctor = js::get_named(env, js::global(env)?, c"Map")?;
  let map = js::new_instance(env, ctor, &[])?;
  let set = js::get_named(env, map, c"set")?;
  for (_, id, socket) in ordered {
    let key = js::string(env, &id)?;
    js::call(env, map, set, &[key, socket?])?;
  }
  Ok(map)
}

/// Removes the socket and its state: the registry's listeners are removed, the socket is
/// ended, and every reference the registry held to it is released. Returns whether there was
/// one. An unknown id (or one owned by another thread) does nothing.
#[napi(ts_args_type = "sessionId: string")]
pub fn unregister_socket(env: Env, session_id: JsAny) -> bool {
  let env = env.raw();
  handles::sync_pending(env);
  let Some(id) = lookup_id(env, session_id.0) else {
    return false;
  };
  unregister(env, &id)
}

/// Takes the socket out of the handles and its record out of the table (no JavaScript runs
/// between the two), then lets go of it. If its `end()` registers the id again, that new
/// registration stays.
fn unregister(env: js::Env, id: &str) -> bool {
  let Some(entry) = handles::with(|t| t.sockets.remove(id)).flatten() else {
    return false;
  };
  let removed = table::remove(id, Some(entry.generation));
  if let Some(record) = removed {
    events::emit(id, ChangeKind::Removed, Some(record.state), None);
  }
  tracking::release(env, id, entry);
  true
}

/// Unregisters every socket this thread had registered when it was called. They all leave the
/// registry first, then each is let go; a socket registered meanwhile (by an `end()` that
/// reconnects) stays registered, so `clearAll` always ends.
#[napi]
pub fn clear_all(env: Env) {
  let env = env.raw();
  handles::sync_pending(env);
  let mut taken: Vec<(u64, Box<str>, SocketEntry)> = handles::with(|t| {
    t.sockets
      .drain()
      .map(|(id, e)| (table::seq_of(&id).unwrap_or(u64::MAX), id, e))
      .collect()
  })
  .unwrap_or_default();
  taken.sort_by_key(|t| t.0);
  for (_, id, entry) in &taken {
    if let Some(record) = table::remove(id, Some(entry.generation)) {
      events::emit(id, ChangeKind::Removed, Some(record.state), None);
    }
  }
  for (_, id, entry) in taken {
    tracking::release(env, &id, entry);
  }
}

/// Wraps Baileys' `makeWASocket`: the returned function takes the usual socket config plus
/// `sessionId` (or `auth.sessionId`), creates the socket, registers it (tracked), sets
/// `socket._sessionId` and returns it. Without a session id it throws
/// `ERR_MISSING_SESSION_ID`; a `makeWASocket` that is not a function throws
/// `ERR_INVALID_FACTORY`.
#[napi(
  ts_generic_types = "C extends object, S extends object",
  ts_args_type = "makeWASocket: (config: C) => S",
  ts_return_type = "(config: C & SocketWrapperConfig) => S"
)]
pub fn create_socket_wrapper(env: Env, make_wa_socket: JsAny) -> napi::Result<JsAny> {
  let raw = env.raw();
  finish(&env, socket_wrapper(raw, make_wa_socket.0).map(JsAny))
}

fn socket_wrapper(env: js::Env, factory: Value) -> JsResult<Value> {
  if !js::is_function(env, factory) {
    return Err(
      RegistryError::InvalidFactory(format!(
        "createSocketWrapper(makeWASocket): makeWASocket must be a function, got {}",
        type_name(env, factory)
      ))
      .into(),
    );
  }
  // The wrapper is a native function bound to the factory: the binding (not the registry)
  // holds the factory, so it is collected with the wrapper.
  let native = js::function(
    env,
    c"createBaileysSocket",
    wrapped_make_socket,
    ptr::null_mut(),
  )?;
  js::call_method(env, native, c"bind", &[js::undefined(env), factory])
}

unsafe extern "C" fn wrapped_make_socket(env: js::Env, info: sys::napi_callback_info) -> Value {
  // Bound as (makeWASocket, config): missing arguments come as undefined.
  let Some(([factory, config], _)) = (unsafe { js::cb_args::<2>(env, info) }) else {
    return ptr::null_mut();
  };
  js::callback_result(env, make_and_register(env, factory, config))
}

/// A `sessionId` found in the wrapper's config: `None` when missing or not a non-empty string.
fn config_id(env: js::Env, v: Value) -> JsResult<Option<String>> {
  match js::with_id(env, v, str::to_owned) {
    Ok(id) => Ok(Some(id).filter(|s| !s.is_empty())),
    Err(js::BadId::LoneSurrogate) => Err(lone_surrogate("createSocketWrapper").into()),
    Err(js::BadId::NotString) => Ok(None),
  }
}

fn config_session_id(env: js::Env, config: Value) -> JsResult<Option<String>> {
  if !js::is_object(env, config) {
    return Ok(None);
  }
  let direct = js::get_named(env, config, c"sessionId")?;
  if let Some(id) = config_id(env, direct)? {
    return Ok(Some(id));
  }
  let auth = js::get_named(env, config, c"auth")?;
  if js::is_object(env, auth) {
    let nested = js::get_named(env, auth, c"sessionId")?;
    return config_id(env, nested);
  }
  Ok(None)
}

fn make_and_register(env: js::Env, factory: Value, config: Value) -> JsResult<Value> {
  let Some(id) = config_session_id(env, config)? else {
    return Err(
      RegistryError::MissingSessionId(
        "the socket wrapper needs config.sessionId (or config.auth.sessionId): a non-empty string naming the session".into(),
      )
      .into(),
    );
  };
  let socket = js::call(env, js::undefined(env), factory, &[config])?;
  if !js::is_object(env, socket) {
    return Err(
      RegistryError::InvalidSocket(format!(
        "makeWASocket returned {}, not a socket object",
        type_name(env, socket)
      ))
      .into(),
    );
  }
  // Before registering: a socket whose `_sessionId` cannot be set (a setter or Proxy that
  // throws) is then not left registered behind the error.
  js::set_named(env, socket, c"_sessionId", js::string(env, &id)?)?;
  register_checked(env, &id, socket, true, false)?;
  Ok(socket)
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
  let args = unsafe { js::cb_args::<0>(env, info) };
  let removed = args.is_some_and(|(_, id)| events::unsubscribe(id as usize as u64));
  js::boolean(env, removed).unwrap_or(ptr::null_mut())
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
  handles::set_hooks(tracking::release, teardown_env);
  let thread_id = current_thread_id(raw);
  finish(
    &env,
    handles::init_env(raw, thread_id)
      .and_then(|_| crate::fast::install(raw, napi::JsValue::raw(&exports)))
      .and_then(|_| crate::session_state::install(raw, napi::JsValue::raw(&exports))),
  )
}

/// `worker_threads.threadId` of this environment (0 on the main thread).
///
/// `process.getBuiltinModule` exists from Node 20.16 only; on older versions the package's
/// loader (`loader.js`), which can `require`, leaves the id in [`LOADER_THREAD_ID`] for the
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

/// The global through which `loader.js` hands over `worker_threads.threadId` while it loads the
/// addon (and deletes right after).
const LOADER_THREAD_ID: &std::ffi::CStr = c"__baileysSocketRegistryThreadId";

/// An environment is going away: its sessions leave the process-wide table.
fn teardown_env(env_key: table::EnvKey) {
  // Its own subscriptions go first: their channels are being finalized with it.
  events::remove_env(env_key);
  events::remove_waiters(env_key);
  for (id, record) in table::remove_owned_by(env_key) {
    events::emit(&id, ChangeKind::Removed, Some(record.state), None);
  }
}
