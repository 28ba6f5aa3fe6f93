//! The health pass: a truthful status for sockets whose close never reached the registry.
//!
//! Bots often clean up with `sock.ev.removeAllListeners(); sock.end()` and no
//! `unregisterSocket`. That removes the registry's `connection.update` listener before the
//! close is emitted, and Baileys' `end()` also removes the listeners on `sock.ws`, so no event
//! tells the registry. Each environment therefore looks at its own sockets: once a second (an
//! unref'd `setInterval`, started with the environment's first tracked socket, which never
//! keeps the process alive), for every tracked session whose status is `open` or `qr`, it
//! reads `socket.ws.isOpen`, and when that is not true `isClosed` and `isClosing` (getters of
//! Baileys' websocket client, on every tested build).
//!
//! - Only `open` and `qr`: both mean the websocket has connected. A fork that connects lazily
//!   has a ws that reads closed before it ever connected, so sessions in `connecting` are left
//!   to the `stuck` event.
//! - The ws must read closed on two passes in a row, so that a close Baileys is still
//!   reporting (7.x emits it after an `await`) reaches the registry first, with its reason.
//! - The session is then closed as a close without a status code closes it: status `closed`,
//!   `isConnected: false`, `lastDisconnect`/`error` saying why, and a `status` event.
//! - A socket whose `ws` or getters throw is recorded once as a socket fault and then left
//!   alone.
//!
//! Cost (`node bench/health-pass.mjs`, release build, the 2 shared cores of the development
//! machine): a pass visits every socket of the thread (a table lookup each) and reads `ws`
//! and one getter of each open one, about 0.5-0.7 us per open session, bound by cache misses
//! on scattered objects: 5-7 ms per pass at 10,000 open sessions (0.5-0.7 % of one core at
//! one pass a second), 0.8 ms at 10,000 sessions none of which is open, 0.02 ms at 100.

use std::ptr;

use napi::sys;
// Keyed by session id like the handle table (ids are the bot's, not an attacker's).
use rustc_hash::FxHashMap;

use crate::events::{self, ChangeKind};
use crate::handles;
use crate::js::{self, Env, Fail, JsResult, Value};
use crate::tracking;
use registry_core::state::{Connection, ConnectionUpdate, SessionState, Status};
use registry_core::table;

/// How often the pass runs, in milliseconds.
const PASS_EVERY_MS: u32 = 1000;

/// What a session closed by the health pass says in `lastDisconnect.message` and `error`.
const UNHEARD_CLOSE: &str =
  "the socket's websocket closed without a connection.update reaching the registry (were its listeners removed?)";

/// What the health pass keeps per environment (inside its handle table).
#[derive(Default)]
pub struct Notes {
  started: bool,
  /// Sockets whose ws read closed on the last pass, or that are left alone because reading
  /// them threw: by session id, with the generation the note is about.
  marks: FxHashMap<Box<str>, (u64, Mark)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mark {
  ClosedOnce,
  LeftAlone,
}

/// Starts this environment's health pass, unless it runs already.
pub fn ensure_started(env: Env) {
  let start = handles::with(|t| !std::mem::replace(&mut t.health.started, true)).unwrap_or(false);
  if start && start_timer(env).is_err() {
    js::take_exception(env);
    // Tried again with the next tracked socket.
    handles::with(|t| t.health.started = false);
  }
}

fn start_timer(env: Env) -> JsResult<()> {
  let global = js::global(env)?;
  let pass = js::function(env, c"registryHealthPass", on_pass, ptr::null_mut())?;
  let every = js::number(env, f64::from(PASS_EVERY_MS))?;
  let timer = js::call_method(env, global, c"setInterval", &[pass, every])?;
  // A timer that kept the process alive would be worse than no pass at all.
  if js::call_method(env, timer, c"unref", &[]).is_err() {
    js::take_exception(env);
    let _ = js::call_method(env, global, c"clearInterval", &[timer]);
    js::take_exception(env);
    return Err(Fail::Js);
  }
  Ok(())
}

unsafe extern "C" fn on_pass(env: Env, _info: sys::napi_callback_info) -> Value {
  pass(env);
  // Nothing may be left pending: it would surface as an uncaught exception.
  js::take_exception(env);
  ptr::null_mut()
}

/// Whether the pass looks at a session in this state.
fn watched(state: &SessionState) -> bool {
  state.tracked && matches!(state.status, Some(Status::Open | Status::Qr))
}

enum Seen {
  Open,
  Closed,
  Threw(String),
}

fn pass(env: Env) {
  // Chosen without running JS; each socket is looked up again before it is read, since a
  // getter of one socket may run JS that unregisters another.
  let candidates: Vec<(Box<str>, u64)> = handles::with(|t| {
    let mut out = Vec::new();
    for (id, entry) in &t.sockets {
      let mark = t
        .health
        .marks
        .get(id)
        .filter(|m| m.0 == entry.generation)
        .map(|m| m.1);
      if mark == Some(Mark::LeftAlone) {
        continue;
      }
      let mut watch = false;
      table::for_one(id, |r| {
        watch = r.generation == entry.generation && watched(&r.state)
      });
      if watch {
        out.push((id.clone(), entry.generation));
      } else if mark.is_some() {
        t.health.marks.remove(id);
      }
    }
    // Notes about sockets that were let go or replaced.
    let sockets = &t.sockets;
    t.health
      .marks
      .retain(|id, m| sockets.get(id).is_some_and(|e| e.generation == m.0));
    out
  })
  .unwrap_or_default();
  if candidates.is_empty() {
    return;
  }
  // The property names, made once per pass rather than once per socket.
  let Ok(keys) = Keys::new(env) else {
    return;
  };
  for (id, generation) in candidates {
    let Some(seen) = with_handle_scope(env, || look(env, &keys, &id, generation)) else {
      continue;
    };
    match seen {
      Seen::Closed => {
        let second = handles::with(|t| {
          let before = t
            .health
            .marks
            .insert(id.clone(), (generation, Mark::ClosedOnce));
          before == Some((generation, Mark::ClosedOnce))
        })
        .unwrap_or(false);
        if second {
          handles::with(|t| t.health.marks.remove(&id));
          close_unheard(&id, generation);
        }
      }
      Seen::Open => {
        handles::with(|t| {
          if t
            .health
            .marks
            .get(&id)
            .is_some_and(|m| m.1 == Mark::ClosedOnce)
          {
            t.health.marks.remove(&id);
          }
        });
      }
      Seen::Threw(message) => {
        tracking::record_fault(&id, "health pass: reading socket.ws", &message);
        handles::with(|t| t.health.marks.insert(id, (generation, Mark::LeftAlone)));
      }
    }
  }
}

/// Runs `f` in its own handle scope, so that a pass over many sockets holds few handles.
fn with_handle_scope<T>(env: Env, f: impl FnOnce() -> Option<T>) -> Option<T> {
  let mut scope = ptr::null_mut();
  if unsafe { sys::napi_open_handle_scope(env, &mut scope) } != sys::Status::napi_ok {
    return None;
  }
  let out = f();
  unsafe { sys::napi_close_handle_scope(env, scope) };
  out
}

/// The property names a pass reads, as JS strings.
struct Keys {
  ws: Value,
  is_open: Value,
  is_closed: Value,
  is_closing: Value,
}

impl Keys {
  fn new(env: Env) -> JsResult<Keys> {
    Ok(Keys {
      ws: js::string(env, "ws")?,
      is_open: js::string(env, "isOpen")?,
      is_closed: js::string(env, "isClosed")?,
      is_closing: js::string(env, "isClosing")?,
    })
  }
}

/// Reads `socket.ws.isOpen` / `isClosed` / `isClosing`. `None` when the socket is gone or has
/// no ws.
fn look(env: Env, keys: &Keys, id: &str, generation: u64) -> Option<Seen> {
  let socket = handles::socket_value(env, id, Some(generation))?;
  let threw =
    || Seen::Threw(js::take_exception(env).unwrap_or_else(|| "a Node-API call failed".into()));
  let ws = match js::get_property(env, socket, keys.ws) {
    Ok(ws) if js::is_object(env, ws) => ws,
    Ok(_) => return None,
    Err(_) => return Some(threw()),
  };
  // `isOpen` first: one getter answers for a live socket, the common case.
  for (getter, means) in [
    (keys.is_open, Seen::Open),
    (keys.is_closed, Seen::Closed),
    (keys.is_closing, Seen::Closed),
  ] {
    match js::get_property(env, ws, getter) {
      Ok(v) if js::get_bool(env, v) == Some(true) => return Some(means),
      Ok(_) => {}
      Err(_) => return Some(threw()),
    }
  }
  Some(Seen::Open)
}

/// Closes a session whose socket closed unheard, if it is still watched.
fn close_unheard(id: &str, generation: u64) {
  let update = ConnectionUpdate {
    connection: Some(Connection::Close),
    qr: false,
    last_disconnect: Some((None, Some(UNHEARD_CLOSE.to_owned()))),
  };
  let now = js::now_ms();
  let applied = table::update(id, Some(generation), events::wanted, |r| {
    if !watched(&r.state) {
      return ((), None);
    }
    ((), Some(r.state.apply_connection_update(&update, now)))
  });
  if let Some((before, after)) = applied.and_then(|a| a.change) {
    events::emit(id, ChangeKind::Status, Some(before), Some(after));
  }
}
