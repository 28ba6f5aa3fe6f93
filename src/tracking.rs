//! Listening to a socket's Baileys events, and letting go of a socket.
//!
//! The registry adds three listeners to `socket.ev` (`connection.update`, `messages.upsert`,
//! `creds.update`) and keeps a reference to each, so that it can later remove exactly those
//! with `ev.off`. On a socket that stays registered it never calls `ev.removeAllListeners()`
//! (that removes Baileys' own dispatcher and breaks a live socket) nor touches `socket.ws`
//! (closing the ws directly leaves Baileys' timers running).
//!
//! A socket the registry lets go of (replaced, unregistered, cleared, taken over by another
//! thread: all through [`release`]) is let go silently, then ended: the registry's listeners
//! come off with `ev.off`, nobody hears its `connection.update` any more (see [`silence`]),
//! `socket.end(undefined)` stops Baileys' timers, and a listener on `socket.ws` swallows the
//! aborted handshake of a socket that was still connecting (see [`guard_ws_error`]).
//! Whatever the socket throws meanwhile is recorded, not thrown.

use std::ffi::{c_void, CStr};
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use napi::sys;

use crate::events::{self, ChangeKind};
use crate::handles::{self, SocketEntry};
use crate::health;
use crate::js::{self, Env, JsResult, Value};
use registry_core::state::{Connection, ConnectionUpdate, Me};
use registry_core::table;

#[derive(Clone, Copy, Debug)]
enum Kind {
  Connection,
  Messages,
  Creds,
}

const EVENTS: [(&CStr, Kind); 3] = [
  (c"connection.update", Kind::Connection),
  (c"messages.upsert", Kind::Messages),
  (c"creds.update", Kind::Creds),
];

/// What a listener function knows: whose events it carries.
struct ListenerData {
  session_id: Box<str>,
  generation: u64,
  kind: Kind,
}

static SOCKET_FAULTS: AtomicU64 = AtomicU64::new(0);
static LAST_SOCKET_FAULT: Mutex<Option<String>> = Mutex::new(None);

/// Records that a socket threw (or lacked something) while the registry handled it.
pub fn record_fault(session_id: &str, what: &str, message: &str) -> String {
  let text = format!("socket '{session_id}': {what}: {message}");
  SOCKET_FAULTS.fetch_add(1, Ordering::Relaxed);
  *LAST_SOCKET_FAULT.lock().unwrap_or_else(|p| p.into_inner()) = Some(text.clone());
  text
}

/// How many socket faults were recorded in this process, and the last one.
pub fn faults() -> (u64, Option<String>) {
  (
    SOCKET_FAULTS.load(Ordering::Relaxed),
    LAST_SOCKET_FAULT
      .lock()
      .unwrap_or_else(|p| p.into_inner())
      .clone(),
  )
}

unsafe extern "C" fn free_listener_data(_env: Env, data: *mut c_void, _hint: *mut c_void) {
  if !data.is_null() {
    drop(unsafe { Box::from_raw(data.cast::<ListenerData>()) });
  }
}

fn listener_function(env: Env, data: ListenerData) -> JsResult<Value> {
  let name = data.kind_name();
  let raw = Box::into_raw(Box::new(data));
  let made = js::function(env, name, on_event, raw.cast()).and_then(|f| {
    // The data lives as long as the function object.
    let status = unsafe {
      sys::napi_add_finalizer(
        env,
        f,
        raw.cast(),
        Some(free_listener_data),
        ptr::null_mut(),
        ptr::null_mut(),
      )
    };
    js::ok(status).map(|_| f)
  });
  if made.is_err() {
    drop(unsafe { Box::from_raw(raw) });
  }
  made
}

impl ListenerData {
  fn kind_name(&self) -> &'static CStr {
    match self.kind {
      Kind::Connection => c"registryConnectionUpdate",
      Kind::Messages => c"registryMessagesUpsert",
      Kind::Creds => c"registryCredsUpdate",
    }
  }
}

/// `socket.ev`, if it is an object with the given method.
fn emitter_with(env: Env, socket: Value, method: &CStr) -> Result<(Value, Value), String> {
  let ev = js::get_named(env, socket, c"ev").map_err(|_| thrown(env))?;
  if !js::is_object(env, ev) {
    return Err("the socket has no `ev` event emitter".into());
  }
  let f = js::get_named(env, ev, method).map_err(|_| thrown(env))?;
  if !js::is_function(env, f) {
    return Err(format!(
      "socket.ev.{} is not a function",
      method.to_string_lossy()
    ));
  }
  Ok((ev, f))
}

fn thrown(env: Env) -> String {
  js::take_exception(env).unwrap_or_else(|| "a Node-API call failed".into())
}

/// Adds the registry's listeners to `socket.ev`. On failure nothing stays attached and the
/// reason is returned (the caller registers the socket untracked).
pub fn attach(
  env: Env,
  session_id: &str,
  generation: u64,
  socket: Value,
) -> Result<Vec<(&'static CStr, js::Ref)>, String> {
  let (ev, on) = emitter_with(env, socket, c"on")?;
  let mut added: Vec<(&'static CStr, js::Ref)> = Vec::with_capacity(EVENTS.len());
  for (event, kind) in EVENTS {
    let data = ListenerData {
      session_id: session_id.into(),
      generation,
      kind,
    };
    let step = (|| -> JsResult<js::Ref> {
      let f = listener_function(env, data)?;
      let name = js::string(env, &event.to_string_lossy())?;
      let r = js::Ref::new(env, f)?;
      if let Err(e) = js::call(env, ev, on, &[name, f]) {
        r.delete(env);
        return Err(e);
      }
      Ok(r)
    })();
    match step {
      Ok(r) => added.push((event, r)),
      Err(_) => {
        let reason = format!("ev.on threw: {}", thrown(env));
        detach(env, session_id, socket, added);
        return Err(reason);
      }
    }
  }
  // A tracked socket is what the health pass watches over.
  health::ensure_started(env);
  Ok(added)
}

/// Removes the given listeners from `socket.ev` and releases them.
pub fn detach(env: Env, session_id: &str, socket: Value, listeners: Vec<(&'static CStr, js::Ref)>) {
  if listeners.is_empty() {
    return;
  }
  let emitter = emitter_with(env, socket, c"off");
  if let Err(reason) = &emitter {
    record_fault(session_id, "removing listeners", reason);
  }
  for (event, r) in listeners {
    if let (Ok((ev, off)), Ok(f)) = (&emitter, r.value(env)) {
      let called = js::string(env, &event.to_string_lossy())
        .and_then(|name| js::call(env, *ev, *off, &[name, f]));
      if called.is_err() {
        record_fault(session_id, "ev.off threw", &thrown(env));
      }
    }
    r.delete(env);
  }
}

unsafe extern "C" fn swallow(_env: Env, _info: sys::napi_callback_info) -> Value {
  ptr::null_mut()
}

/// Calls `socket.end(undefined)`. Baileys 7 returns a promise: its rejection is caught here so
/// it never surfaces as an unhandled rejection.
pub fn end_socket(env: Env, session_id: &str, socket: Value) {
  let end = match js::get_named(env, socket, c"end") {
    Ok(f) if js::is_function(env, f) => f,
    Ok(_) => return,
    Err(_) => {
      record_fault(session_id, "reading socket.end", &thrown(env));
      return;
    }
  };
  let result = match js::call(env, socket, end, &[js::undefined(env)]) {
    Ok(v) => v,
    Err(_) => {
      record_fault(session_id, "end() threw", &thrown(env));
      return;
    }
  };
  if js::is_object(env, result) {
    match js::get_named(env, result, c"then") {
      Ok(then) if js::is_function(env, then) => {
        let caught = js::function(env, c"ignoreEndRejection", swallow, ptr::null_mut())
          .and_then(|noop| js::call(env, result, then, &[js::undefined(env), noop]));
        if caught.is_err() {
          record_fault(session_id, "end() promise", &thrown(env));
        }
      }
      Ok(_) => {}
      Err(_) => {
        js::take_exception(env);
      }
    }
  }
}

/// Makes a socket that is being let go silent: neither `ev.on('connection.update')` listeners
/// nor `ev.process` handlers hear another `connection.update` from it.
///
/// How far, and why: Baileys' README teaches a handler that reconnects on every close but a
/// logout, so the close that `end()` emits would make the bot build a new socket for the
/// session it just replaced or removed, which the registry then lets go of too: a reconnect
/// storm. Baileys' own example does the same from an `ev.process` handler, and those listen
/// on the emitter's internal `'event'` event, where `ev.removeAllListeners(name)` cannot reach
/// them without also removing Baileys' dispatcher. So `ev.emit` of this socket is replaced by
/// one that drops `connection.update` and passes every other event through, and
/// `ev.removeAllListeners('connection.update')` (a named event: Baileys' `end()` makes the
/// same call right after its close) covers forks that emit by another path. Only
/// `connection.update` is silenced: a bot's `creds.update` and message handlers keep
/// whatever a closing socket still delivers. Baileys' own `connection.update` listeners
/// cannot be told apart from the bot's, so they miss the close as well: on 6.x they do
/// nothing on a close, and the two 7.x timers they clear (a 5 s tctoken save, the history
/// sync pause, 120 s) run out by themselves. `socket-factory.js` silenced more: every event.
fn silence(env: Env, session_id: &str, socket: Value) {
  let ev = match js::get_named(env, socket, c"ev") {
    Ok(ev) if js::is_object(env, ev) => ev,
    Ok(_) => return,
    Err(_) => {
      record_fault(session_id, "reading socket.ev", &thrown(env));
      return;
    }
  };
  match js::get_named(env, ev, c"emit") {
    Ok(emit) if js::is_function(env, emit) => {
      let replaced = silenced_emit(env, ev, emit).and_then(|wrapper| {
        js::set_named(env, ev, c"emit", wrapper)?;
        // A frozen `ev` ignores the assignment without throwing.
        let now = js::get_named(env, ev, c"emit")?;
        let mut same = false;
        js::ok(unsafe { sys::napi_strict_equals(env, now, wrapper, &mut same) })?;
        Ok(same)
      });
      match replaced {
        Ok(true) => {}
        Ok(false) => {
          record_fault(
            session_id,
            "silencing ev.emit",
            "ev.emit cannot be replaced",
          );
        }
        Err(_) => {
          record_fault(session_id, "silencing ev.emit", &thrown(env));
        }
      }
    }
    Ok(_) => {}
    Err(_) => {
      record_fault(session_id, "reading ev.emit", &thrown(env));
    }
  }
  match js::get_named(env, ev, c"removeAllListeners") {
    Ok(f) if js::is_function(env, f) => {
      let removed =
        js::string(env, "connection.update").and_then(|name| js::call(env, ev, f, &[name]));
      if removed.is_err() {
        record_fault(
          session_id,
          "ev.removeAllListeners('connection.update') threw",
          &thrown(env),
        );
      }
    }
    Ok(_) => {}
    Err(_) => {
      record_fault(session_id, "reading ev.removeAllListeners", &thrown(env));
    }
  }
}

/// `filterEmit.bind(ev, original)`: an `emit` that drops `connection.update` and passes every
/// other event to `original`. Bound arguments are ordinary JS references: a native reference
/// to `original` would be a GC root, and on 6.x (whose `end()` leaves Baileys' other
/// listeners in place) `original` reaches back to `ev`, so the let-go socket's emitter and
/// everything its listeners hold would never be collected.
fn silenced_emit(env: Env, ev: Value, original: Value) -> JsResult<Value> {
  let filter = js::function(env, c"registrySilencedEmit", filter_emit, ptr::null_mut())?;
  js::call_method(env, filter, c"bind", &[ev, original])
}

/// `(original, event, ...args)` with `this` = `ev`: `false` for `connection.update`, else
/// `original.call(this, event, ...args)`.
unsafe extern "C" fn filter_emit(env: Env, info: sys::napi_callback_info) -> Value {
  // The bound `original`, then Baileys' (event, data) and a few spare slots.
  let mut argv = [ptr::null_mut(); 6];
  let mut argc = argv.len();
  let mut this = ptr::null_mut();
  let status = unsafe {
    sys::napi_get_cb_info(
      env,
      info,
      &mut argc,
      argv.as_mut_ptr(),
      &mut this,
      ptr::null_mut(),
    )
  };
  if status != sys::Status::napi_ok || argc == 0 {
    return ptr::null_mut();
  }
  let silenced = js::get_string(env, argv[1]).is_some_and(|e| e == "connection.update");
  if silenced {
    return js::boolean(env, false).unwrap_or(ptr::null_mut());
  }
  // A listener that throws throws through emit, as it would without the wrapper.
  js::call(env, this, argv[0], &argv[1..argc.min(argv.len())]).unwrap_or(ptr::null_mut())
}

/// `socket.ws`, read before `end()` (a fork's `end()` may drop it), if it is an object.
fn socket_ws(env: Env, session_id: &str, socket: Value) -> Option<Value> {
  match js::get_named(env, socket, c"ws") {
    Ok(ws) if js::is_object(env, ws) => Some(ws),
    Ok(_) => None,
    Err(_) => {
      record_fault(session_id, "reading socket.ws", &thrown(env));
      None
    }
  }
}

/// Adds a listener that swallows `error` on `ws`, right after `end()` returned.
///
/// 6.17.16's `end()` (and forks of it) removes the ws `error` listeners before closing; a
/// socket that is still connecting then reports the aborted handshake ("WebSocket was closed
/// before the connection was established") as an `error` with no listener, a process-ending
/// uncaught exception, on a later tick. So the listener goes on after `end()` (one added
/// before would be removed) and at once, not when 7.x's asynchronous `end()` settles: an
/// async function runs up to its first `await` before returning, so its listener removal
/// has happened by then, while the error may come before it settles. It is added whatever
/// `ws.isConnecting` says (forks that connect lazily report it differently); on a socket
/// that is let go, nothing else is listening for ws errors anyway.
fn guard_ws_error(env: Env, session_id: &str, ws: Value) {
  let on = match js::get_named(env, ws, c"on") {
    Ok(f) if js::is_function(env, f) => f,
    Ok(_) => return,
    Err(_) => {
      record_fault(session_id, "reading ws.on", &thrown(env));
      return;
    }
  };
  let added = js::function(env, c"ignoreAbortedHandshake", swallow, ptr::null_mut())
    .and_then(|f| js::call(env, ws, on, &[js::string(env, "error")?, f]));
  if added.is_err() {
    record_fault(session_id, "ws.on('error') threw", &thrown(env));
  }
}

/// Lets go of a socket that left the registry: removes the registry's listeners, silences
/// its `connection.update`, ends it, guards its ws against the aborted handshake, and
/// releases every reference to it. JS runs here, and may re-enter the registry.
pub fn release(env: Env, session_id: &str, entry: SocketEntry) {
  match entry.socket.value(env) {
    Ok(socket) if !socket.is_null() => {
      detach(env, session_id, socket, entry.listeners);
      silence(env, session_id, socket);
      let ws = socket_ws(env, session_id, socket);
      end_socket(env, session_id, socket);
      if let Some(ws) = ws {
        guard_ws_error(env, session_id, ws);
      }
    }
    _ => {
      for (_, r) in entry.listeners {
        r.delete(env);
      }
    }
  }
  entry.socket.delete(env);
}

/// The callback behind every registry listener. It never throws into Baileys.
unsafe extern "C" fn on_event(env: Env, info: sys::napi_callback_info) -> Value {
  if let Some(([payload], data)) = unsafe { js::cb_args::<1>(env, info) } {
    if !data.is_null() {
      let data = unsafe { &*data.cast::<ListenerData>() };
      handle_event(env, data, payload);
    }
  }
  js::take_exception(env);
  ptr::null_mut()
}

fn handle_event(env: Env, data: &ListenerData, payload: Value) {
  if !js::is_object(env, payload) {
    return;
  }
  let id = &*data.session_id;
  let now = js::now_ms();
  match data.kind {
    Kind::Connection => {
      let update = read_connection_update(env, payload);
      let opened = update.connection == Some(Connection::Open);
      let me = if opened {
        socket_me(env, id, data.generation)
      } else {
        None
      };
      let applied = table::update(id, Some(data.generation), events::wanted, |r| {
        let t = r.state.apply_connection_update(&update, now);
        if let Some(me) = me {
          r.state.apply_me(me, now);
        }
        ((), Some(t))
      });
      if let Some((before, after)) = applied.and_then(|a| a.change) {
        events::emit(id, ChangeKind::Status, Some(before), Some(after));
      }
    }
    Kind::Messages => {
      let (inbound, outbound) = read_messages(env, payload);
      table::update(
        id,
        Some(data.generation),
        || false,
        |r| {
          r.state.apply_messages(inbound, outbound, now);
          ((), None)
        },
      );
    }
    Kind::Creds => {
      if let Ok(me) = js::get_named(env, payload, c"me") {
        if let Some(me) = read_me(env, me) {
          table::update(
            id,
            Some(data.generation),
            || false,
            |r| {
              r.state.apply_me(me, now);
              ((), None)
            },
          );
        }
      }
    }
  }
}

fn read_connection_update(env: Env, payload: Value) -> ConnectionUpdate {
  let mut update = ConnectionUpdate::default();
  if let Ok(c) = js::get_named(env, payload, c"connection") {
    update.connection = js::get_string(env, c).and_then(|s| match s.as_str() {
      "connecting" => Some(Connection::Connecting),
      "open" => Some(Connection::Open),
      "close" => Some(Connection::Close),
      _ => None,
    });
  }
  if let Ok(qr) = js::get_named(env, payload, c"qr") {
    // Only that a QR is waiting: the text is a login secret and is never kept.
    update.qr = js::get_string(env, qr).is_some_and(|s| !s.is_empty());
  }
  if let Ok(ld) = js::get_named(env, payload, c"lastDisconnect") {
    if js::is_object(env, ld) {
      update.last_disconnect = Some(read_disconnect_error(env, ld));
    }
  }
  js::take_exception(env);
  update
}

/// `lastDisconnect.error` is a Boom error (`output.statusCode`), a plain Error, or undefined.
fn read_disconnect_error(env: Env, ld: Value) -> (Option<u32>, Option<String>) {
  let Ok(err) = js::get_named(env, ld, c"error") else {
    return (None, None);
  };
  if !js::is_object(env, err) {
    return (None, None);
  }
  let code = js::get_named(env, err, c"output")
    .ok()
    .filter(|o| js::is_object(env, *o))
    .and_then(|o| js::get_named(env, o, c"statusCode").ok())
    .and_then(|c| js::get_number(env, c))
    .filter(|c| c.is_finite() && *c >= 0.0 && *c <= u32::MAX as f64)
    .map(|c| c as u32);
  let message = js::get_named(env, err, c"message")
    .ok()
    .and_then(|m| js::get_string(env, m));
  (code, message)
}

fn read_messages(env: Env, payload: Value) -> (u32, u32) {
  let notify = js::get_named(env, payload, c"type")
    .ok()
    .and_then(|t| js::get_string(env, t))
    .is_some_and(|t| t == "notify");
  let Ok(messages) = js::get_named(env, payload, c"messages") else {
    js::take_exception(env);
    return (0, 0);
  };
  if !js::is_array(env, messages) {
    return (0, 0);
  }
  let (mut inbound, mut outbound) = (0u32, 0u32);
  for i in 0..js::array_len(env, messages) {
    let from_me = js::get_element(env, messages, i)
      .ok()
      .filter(|m| js::is_object(env, *m))
      .and_then(|m| js::get_named(env, m, c"key").ok())
      .filter(|k| js::is_object(env, *k))
      .and_then(|k| js::get_named(env, k, c"fromMe").ok())
      .and_then(|f| js::get_bool(env, f))
      .unwrap_or(false);
    if from_me {
      outbound += 1;
    } else if notify {
      inbound += 1;
    }
  }
  js::take_exception(env);
  (inbound, outbound)
}

fn read_me(env: Env, me: Value) -> Option<Me> {
  if !js::is_object(env, me) {
    return None;
  }
  let field = |key: &CStr| {
    js::get_named(env, me, key)
      .ok()
      .and_then(|v| js::get_string(env, v))
  };
  let me = Me {
    id: field(c"id"),
    lid: field(c"lid"),
  };
  js::take_exception(env);
  (me.id.is_some() || me.lid.is_some()).then_some(me)
}

/// The live identity, `socket.authState.creds.me` (`socket.user` is a stale copy).
fn socket_me(env: Env, session_id: &str, generation: u64) -> Option<Me> {
  let socket = handles::socket_value(env, session_id, Some(generation))?;
  let me = js::get_named(env, socket, c"authState")
    .ok()
    .filter(|a| js::is_object(env, *a))
    .and_then(|a| js::get_named(env, a, c"creds").ok())
    .filter(|c| js::is_object(env, *c))
    .and_then(|c| js::get_named(env, c, c"me").ok())
    .and_then(|m| read_me(env, m));
  js::take_exception(env);
  me
}
