//! The native half of `superviseSession`, used by index.js only (`__supervise*` functions, out of the
//! typings).
//!
//! Every decision is `registry_core::supervise`'s; this class holds one session's
//! [`Supervisor`], writes its supervision into the session's record (so `getSessionState`,
//! `getAllSessions` and events show it) and emits the `reconnecting`, `gaveUp` and `stopped`
//! events. index.js carries the decisions out: it calls `makeSocket`, registers the socket and
//! runs the timers.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use napi::Env;
use napi_derive::napi;

use crate::api::finish;
use crate::events::{self, ChangeKind, SuperviseDetail};
use crate::handles;
use crate::js;
use registry_core::errors::RegistryError;
use registry_core::state::{Connection, ConnectionUpdate};
use registry_core::supervise::{Decision, Jitter, Policy, Reason, Supervision, Supervisor};
use registry_core::table::{self, Generation};

/// What `failed` returns besides a delay (>= 0).
const STOP: f64 = -1.0;
const GIVE_UP: f64 = -2.0;

/// Distinguishes the jitter seeds of supervisors made in the same millisecond.
static SEEDS: AtomicU64 = AtomicU64::new(0);

/// What the record of a session says while its supervisor replaces its socket
/// (`restart()`): the socket was let go silently, so no close of its own reaches the registry.
const RESTARTED: &str = "the supervisor let go of this socket to make a fresh one (restart())";

/// One supervised session of this thread: its policy, attempts and the generation of the
/// socket it registered last.
struct SupervisorHandle {
  id: String,
  core: Supervisor,
  generation: Option<Generation>,
  jitter: Jitter,
  thread_id: u32,
}

thread_local! {
  /// This thread's supervisors by key: a supervisor lives in the thread of its sockets.
  static SUPERVISORS: RefCell<HashMap<u32, SupervisorHandle>> = RefCell::new(HashMap::new());
  static NEXT_KEY: Cell<u32> = const { Cell::new(1) };
}

/// Runs `f` on the supervisor `key` (`None` when it was dropped).
fn with<T>(key: u32, f: impl FnOnce(&mut SupervisorHandle) -> T) -> Option<T> {
  SUPERVISORS.with(|m| m.borrow_mut().get_mut(&key).map(f))
}

/// `__superviseNew(id, policyJson)`: a supervisor for `id`, returned as its key.
/// `policyJson` is the user policy as JSON text (with `Infinity` as the string "Infinity"),
/// or undefined for the defaults. Throws `ERR_INVALID_OPTIONS` for a policy that does not
/// validate.
#[napi(js_name = "__superviseNew", skip_typescript)]
pub fn supervise_new(env: Env, id: String, policy: Option<String>) -> napi::Result<u32> {
  let parsed = match policy {
    None => Ok(Policy::default()),
    Some(text) => serde_json::from_str(&text)
      .map_err(|e| RegistryError::InvalidOptions(format!("policy: {e}")))
      .and_then(|v| Policy::from_json(&v)),
  };
  let policy = finish(&env, parsed.map_err(js::Fail::from))?;
  let seed = (js::now_ms() as u64)
    ^ SEEDS
      .fetch_add(1, Ordering::Relaxed)
      .wrapping_mul(0x9E37_79B9_7F4A_7C15);
  let handle = SupervisorHandle {
    id,
    core: Supervisor::new(policy),
    generation: None,
    jitter: Jitter::new(seed),
    thread_id: handles::current().map_or(0, |c| c.1),
  };
  let key = NEXT_KEY.with(|k| {
    let key = k.get();
    k.set(key.wrapping_add(1).max(1));
    key
  });
  SUPERVISORS.with(|m| m.borrow_mut().insert(key, handle));
  Ok(key)
}

/// `__superviseDrop(key)`: forgets a supervisor that index.js let go of.
#[napi(js_name = "__superviseDrop", skip_typescript)]
pub fn supervise_drop(key: u32) {
  SUPERVISORS.with(|m| m.borrow_mut().remove(&key));
}

/// A socket is about to be made: returns its attempt number (0: no such supervisor).
#[napi(js_name = "__superviseBegin", skip_typescript)]
pub fn supervise_begin(key: u32) -> u32 {
  with(key, |h| {
    let attempt = h.core.begin();
    h.write();
    attempt
  })
  .unwrap_or(0)
}

/// The socket made last was registered at `generation`: its record shows the supervision.
#[napi(js_name = "__superviseRegistered", skip_typescript)]
pub fn supervise_registered(key: u32, generation: f64) {
  with(key, |h| {
    h.generation = Some(crate::sockets::generation(generation));
    h.write();
  });
}

/// The current socket reached `open`.
#[napi(js_name = "__superviseOpened", skip_typescript)]
pub fn supervise_opened(key: u32) {
  with(key, |h| h.core.opened(js::now_ms()));
}

/// The current socket closed (with its status code and message), or `makeSocket` failed
/// (`madeNothing`, with the error's message). Returns the delay before the next socket, -1
/// to stop, -2 to give up; the matching event is emitted.
#[napi(js_name = "__superviseFailed", skip_typescript)]
pub fn supervise_failed(
  key: u32,
  code: Option<f64>,
  message: Option<String>,
  made_nothing: bool,
) -> f64 {
  with(key, |h| h.failed(code, message, made_nothing)).unwrap_or(STOP)
}

/// Stops supervision for `reason` (`stop`, `unregistered`, `clearAll`, `takeover`, ...).
/// Returns whether it was still live; only then is `stopped` emitted.
#[napi(js_name = "__superviseStop", skip_typescript)]
pub fn supervise_stop(key: u32, reason: String) -> bool {
  with(key, |h| {
    if !h.core.stop(&reason) {
      return false;
    }
    h.write_and_emit(ChangeKind::Stopped, None);
    true
  })
  .unwrap_or(false)
}

/// `restart()`: a fresh run of attempts. With `letGo`, the current socket was let go
/// silently: its record reads closed (a `status` event), as no close of its own comes.
#[napi(js_name = "__superviseRestart", skip_typescript)]
pub fn supervise_restart(key: u32, let_go: bool) {
  with(key, |h| h.restart(let_go));
}

/// The supervision as `handle.supervision` shows it:
/// `{ state, attempt, nextAttemptAt, reason, error }` (`null` for a dropped supervisor).
#[napi(js_name = "__supervision", skip_typescript)]
pub fn supervision(key: u32) -> serde_json::Value {
  with(key, |h| serde_json::to_value(h.core.snapshot()).ok())
    .flatten()
    .unwrap_or(serde_json::Value::Null)
}

impl SupervisorHandle {
  fn failed(&mut self, code: Option<f64>, message: Option<String>, made_nothing: bool) -> f64 {
    let reason = if made_nothing {
      Reason::MakeSocketFailed
    } else {
      let code = code
        .filter(|c| c.is_finite() && *c >= 0.0 && *c <= f64::from(u32::MAX))
        .map(|c| c as u32);
      Reason::of_close(code, message.as_deref())
    };
    let jitter = &mut self.jitter;
    let decision = self
      .core
      .failed(reason, message, js::now_ms(), &mut || jitter.draw());
    let (kind, delay, result) = match decision {
      Decision::Retry { delay_ms, .. } => (ChangeKind::Reconnecting, Some(delay_ms), delay_ms),
      Decision::Stop => (ChangeKind::Stopped, None, STOP),
      Decision::GiveUp => (ChangeKind::GaveUp, None, GIVE_UP),
    };
    self.write_and_emit(kind, delay);
    result
  }

  fn restart(&mut self, let_go: bool) {
    self.core.restart();
    let Some(generation) = self.generation.filter(|_| let_go) else {
      return;
    };
    let update = ConnectionUpdate {
      connection: Some(Connection::Close),
      qr: false,
      last_disconnect: Some((None, Some(RESTARTED.to_owned()))),
    };
    let now = js::now_ms();
    let applied = table::update(&self.id, Some(generation), events::wanted, |r| {
      let t = r.state.apply_connection_update(&update, now);
      ((), Some(t))
    });
    if let Some((before, after)) = applied.and_then(|a| a.change) {
      events::emit(&self.id, ChangeKind::Status, Some(before), Some(after));
    }
  }

  /// Writes the supervision into the record of the socket registered last (if it is still
  /// this supervisor's: another thread may have taken the session over). Returns the state
  /// before and after when someone listens.
  fn write(
    &self,
  ) -> Option<(
    registry_core::state::SessionState,
    registry_core::state::SessionState,
  )> {
    let snapshot: Supervision = self.core.snapshot();
    let generation = self.generation?;
    let wanted = events::wanted();
    let applied = table::update(
      &self.id,
      Some(generation),
      || false,
      |r| {
        let before = wanted.then(|| r.state.clone());
        r.state.more_mut().supervision = Some(Box::new(snapshot));
        (before.map(|b| (b, r.state.clone())), None)
      },
    )?;
    applied.value
  }

  fn write_and_emit(&self, kind: ChangeKind, delay_ms: Option<f64>) {
    let states = self.write();
    if !events::wanted() {
      return;
    }
    let s = self.core.snapshot();
    let (previous, current) = states.map_or((None, None), |(b, a)| (Some(b), Some(a)));
    events::emit_with(
      &self.id,
      kind,
      previous,
      current,
      Some(events::Detail::Supervise(SuperviseDetail {
        attempt: s.attempt,
        delay_ms,
        reason: s.reason,
        error: s.error,
        thread_id: self.thread_id,
      })),
    );
  }
}
