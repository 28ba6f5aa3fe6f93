//! Lifecycle events: `onStateChange` subscribers in every thread, `waitForState`, and the
//! health timer that reports sessions stuck in `connecting`.
//!
//! A change is emitted once, from whichever thread made it, and delivered to each subscriber
//! on the subscriber's own thread through a weak channel (so subscriptions never keep a
//! process alive). Waiters (`waitForState`) are decided by the thread that makes the change,
//! as it makes it, and their answer travels to the waiter's thread.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Duration;

use std::collections::HashMap;
use std::sync::Mutex;

use crate::channel::Channel;
use crate::convert;
use crate::js::{self, Env, JsResult, Value};
use crate::promise::{Outcome, Pending};
use registry_core::config;
use registry_core::errors::RegistryError;
use registry_core::state::{SessionState, Status};
use registry_core::table::{self, EnvKey};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
  Registered,
  Status,
  Removed,
  Stuck,
  /// This node lost (or gave up) the session's cluster lease (see `cluster.rs`).
  LeaseLost,
  /// A supervised session will make a new socket (see `supervise.rs`).
  Reconnecting,
  /// A supervised session gave up after `maxAttempts` failures in a row.
  GaveUp,
  /// A supervised session's supervision stopped.
  Stopped,
}

impl ChangeKind {
  pub fn as_str(self) -> &'static str {
    match self {
      ChangeKind::Registered => "registered",
      ChangeKind::Status => "status",
      ChangeKind::Removed => "removed",
      ChangeKind::Stuck => "stuck",
      ChangeKind::LeaseLost => "leaseLost",
      ChangeKind::Reconnecting => "reconnecting",
      ChangeKind::GaveUp => "gaveUp",
      ChangeKind::Stopped => "stopped",
    }
  }
}

/// What a supervision event (`reconnecting`, `gaveUp`, `stopped`) adds to the event.
#[derive(Debug, Clone)]
pub struct SuperviseDetail {
  /// The attempt the next socket will be (`reconnecting`), or the last one's.
  pub attempt: u32,
  /// The wait before the next socket (`reconnecting` only).
  pub delay_ms: Option<f64>,
  pub reason: Option<String>,
  pub error: Option<String>,
  /// The supervising thread: the session may have no record (makeSocket failed).
  pub thread_id: u32,
}

/// What some events add: `leaseLost` its reason and token, supervision events their detail.
#[derive(Debug, Clone)]
pub enum Detail {
  /// `leaseLost`: why (`unreachable`, `superseded`, `takeover`), and the lost lease's token.
  LeaseLost { reason: &'static str, token: u64 },
  /// `reconnecting`, `gaveUp`, `stopped`.
  Supervise(SuperviseDetail),
}

#[derive(Debug)]
pub struct StateChange {
  pub session_id: String,
  pub kind: ChangeKind,
  pub previous: Option<SessionState>,
  pub current: Option<SessionState>,
  pub detail: Option<Detail>,
}

impl StateChange {
  pub fn thread_id(&self) -> u32 {
    if let Some(Detail::Supervise(d)) = &self.detail {
      return d.thread_id;
    }
    self
      .current
      .as_ref()
      .or(self.previous.as_ref())
      .map(|s| s.thread_id)
      .unwrap_or(0)
  }
}

struct Subscriber {
  id: u64,
  env: EnvKey,
  channel: Arc<Channel<Arc<StateChange>>>,
}

static SUBSCRIBERS: RwLock<Vec<Subscriber>> = RwLock::new(Vec::new());
static SUBSCRIBER_COUNT: AtomicUsize = AtomicUsize::new(0);
static NEXT_SUBSCRIPTION: AtomicU64 = AtomicU64::new(1);

/// Whether anyone listens; when nobody does, changes are not copied.
#[inline]
pub fn wanted() -> bool {
  SUBSCRIBER_COUNT.load(Ordering::Relaxed) > 0 || WAITER_COUNT.load(Ordering::SeqCst) > 0
}

pub fn emit(
  session_id: &str,
  kind: ChangeKind,
  previous: Option<SessionState>,
  current: Option<SessionState>,
) {
  emit_with(session_id, kind, previous, current, None);
}

/// [`emit`] with the detail of a `leaseLost` or supervision event.
pub fn emit_with(
  session_id: &str,
  kind: ChangeKind,
  previous: Option<SessionState>,
  current: Option<SessionState>,
  detail: Option<Detail>,
) {
  if !wanted() {
    return;
  }
  let change = Arc::new(StateChange {
    session_id: session_id.to_owned(),
    kind,
    previous,
    current,
    detail,
  });
  decide_waiters(&change);
  for s in SUBSCRIBERS.read().unwrap_or_else(|p| p.into_inner()).iter() {
    s.channel.send(change.clone());
  }
}

fn deliver(env: Env, listener: Value, change: Arc<StateChange>) {
  let event = match change_to_js(env, &change) {
    Ok(v) => v,
    Err(_) => {
      js::take_exception(env);
      return;
    }
  };
  if js::call(env, js::undefined(env), listener, &[event]).is_err() {
    // A throwing listener must not stop the others nor crash the process: report it as a
    // process warning, which is where Node reports other non-fatal problems.
    if let Some(message) = js::take_exception(env) {
      warn(env, &format!("an onStateChange listener threw: {message}"));
    }
  }
}

pub(crate) fn warn(env: Env, message: &str) {
  let sent = (|| -> JsResult<()> {
    let process = js::get_named(env, js::global(env)?, c"process")?;
    let text = js::string(env, message)?;
    let kind = js::string(env, "BaileysSocketRegistryWarning")?;
    js::call_method(env, process, c"emitWarning", &[text, kind])?;
    Ok(())
  })();
  if sent.is_err() {
    js::take_exception(env);
  }
}

pub fn change_to_js(env: Env, change: &StateChange) -> JsResult<Value> {
  let o = js::object(env)?;
  js::set_named(env, o, c"sessionId", js::string(env, &change.session_id)?)?;
  js::set_named(env, o, c"type", js::string(env, change.kind.as_str())?)?;
  let state = |s: &Option<SessionState>| match s {
    Some(s) => convert::state_to_js(env, s),
    None => Ok(js::null(env)),
  };
  js::set_named(env, o, c"previous", state(&change.previous)?)?;
  js::set_named(env, o, c"current", state(&change.current)?)?;
  js::set_named(
    env,
    o,
    c"threadId",
    js::number(env, f64::from(change.thread_id()))?,
  )?;
  match &change.detail {
    Some(Detail::LeaseLost { reason, token }) => {
      js::set_named(env, o, c"reason", js::string(env, reason)?)?;
      js::set_named(env, o, c"token", js::string(env, &token.to_string())?)?;
    }
    Some(Detail::Supervise(d)) => {
      js::set_named(env, o, c"attempt", js::number(env, f64::from(d.attempt))?)?;
      js::set_named(env, o, c"delayMs", js::opt_number(env, d.delay_ms)?)?;
      js::set_named(env, o, c"reason", js::opt_string(env, d.reason.as_deref())?)?;
      js::set_named(env, o, c"error", js::opt_string(env, d.error.as_deref())?)?;
    }
    None => {}
  }
  Ok(o)
}

/// Subscribes `listener` (a function) in this environment. Returns the subscription id.
pub fn subscribe(env: Env, env_key: EnvKey, listener: Value) -> JsResult<u64> {
  let channel = Channel::new(env, Some(listener), deliver, true)?;
  let id = NEXT_SUBSCRIPTION.fetch_add(1, Ordering::Relaxed);
  let mut subs = SUBSCRIBERS.write().unwrap_or_else(|p| p.into_inner());
  subs.push(Subscriber {
    id,
    env: env_key,
    channel,
  });
  SUBSCRIBER_COUNT.store(subs.len(), Ordering::Relaxed);
  ensure_health_task();
  Ok(id)
}

/// Ends a subscription. Returns whether it existed.
pub fn unsubscribe(id: u64) -> bool {
  let removed = {
    let mut subs = SUBSCRIBERS.write().unwrap_or_else(|p| p.into_inner());
    let before = subs.len();
    let mut gone = Vec::new();
    subs.retain(|s| {
      if s.id == id {
        gone.push(s.channel.clone());
        false
      } else {
        true
      }
    });
    SUBSCRIBER_COUNT.store(subs.len(), Ordering::Relaxed);
    (before != subs.len()).then_some(gone)
  };
  match removed {
    Some(gone) => {
      for c in gone {
        c.close();
      }
      true
    }
    None => false,
  }
}

/// Forgets the subscriptions of an environment that went away (Node already finalized their
/// channels).
pub fn remove_env(env_key: EnvKey) {
  let mut subs = SUBSCRIBERS.write().unwrap_or_else(|p| p.into_inner());
  subs.retain(|s| s.env != env_key);
  SUBSCRIBER_COUNT.store(subs.len(), Ordering::Relaxed);
}

// ---------------------------------------------------------------------------------------------
// waitForState

/// A `waitForState` promise waiting for a session to reach `wanted`.
pub struct Waiter {
  id: u64,
  wanted: Status,
  env: EnvKey,
  pending: Pending,
  /// The timeout's timer, stopped when the wait is decided otherwise.
  timer: Option<tokio::task::AbortHandle>,
}

static WAITERS: LazyLock<Mutex<HashMap<String, Vec<Waiter>>>> =
  LazyLock::new(|| Mutex::new(HashMap::new()));
static WAITER_COUNT: AtomicUsize = AtomicUsize::new(0);
static NEXT_WAITER: AtomicU64 = AtomicU64::new(1);

fn waiters() -> std::sync::MutexGuard<'static, HashMap<String, Vec<Waiter>>> {
  WAITERS.lock().unwrap_or_else(|p| p.into_inner())
}

/// `Some` when `state` settles a wait for `wanted`: reached, or reached a status from which
/// `wanted` cannot follow.
pub fn judge(
  session_id: &str,
  wanted: Status,
  state: SessionState,
) -> Option<Result<SessionState, RegistryError>> {
  match state.status {
    Some(s) if s == wanted => Some(Ok(state)),
    Some(s) if !s.can_lead_to(wanted) => Some(Err(RegistryError::StateUnreachable {
      session_id: session_id.to_owned(),
      wanted: wanted.as_str().into(),
      reached: s.as_str().into(),
    })),
    _ => None,
  }
}

/// Registers a waiter, before the caller looks at the current state: a change made meanwhile
/// (by any thread) decides it, so none slips between. Returns its id.
pub fn add_waiter(session_id: &str, wanted: Status, env: EnvKey, pending: Pending) -> u64 {
  let id = NEXT_WAITER.fetch_add(1, Ordering::Relaxed);
  let mut all = waiters();
  all.entry(session_id.to_owned()).or_default().push(Waiter {
    id,
    wanted,
    env,
    pending,
    timer: None,
  });
  WAITER_COUNT.fetch_add(1, Ordering::SeqCst);
  id
}

/// Takes the waiter back out, if no change has decided it yet.
pub fn take_waiter(session_id: &str, id: u64) -> Option<Pending> {
  let mut all = waiters();
  let list = all.get_mut(session_id)?;
  let at = list.iter().position(|w| w.id == id)?;
  let w = list.swap_remove(at);
  if list.is_empty() {
    all.remove(session_id);
  }
  WAITER_COUNT.fetch_sub(1, Ordering::SeqCst);
  if let Some(t) = &w.timer {
    t.abort();
  }
  Some(w.pending)
}

/// Gives a waiter its timeout: after `ms`, if nothing decided it, it rejects with
/// `ERR_WAIT_TIMEOUT`.
pub fn time_out_waiter(session_id: &str, id: u64, wanted: Status, ms: u64) {
  let key = session_id.to_owned();
  let timer = napi::bindgen_prelude::spawn(async move {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    if let Some(pending) = take_waiter(&key, id) {
      pending.answer(Err(RegistryError::WaitTimeout {
        session_id: key,
        status: wanted.as_str().into(),
        timeout_ms: ms,
      }));
    }
  });
  let mut all = waiters();
  match all
    .get_mut(session_id)
    .and_then(|l| l.iter_mut().find(|w| w.id == id))
  {
    Some(w) => w.timer = Some(timer.abort_handle()),
    None => timer.abort(),
  }
}

/// Decides the waiters of the changed session, on the thread that made the change.
fn decide_waiters(change: &StateChange) {
  // Stuck and supervision events change no status: nothing for a waiter to decide on (and a
  // supervision event of a session without a record must not read as its removal).
  if WAITER_COUNT.load(Ordering::SeqCst) == 0
    || change.kind == ChangeKind::Stuck
    || matches!(change.detail, Some(Detail::Supervise(_)))
  {
    return;
  }
  let mut decided = Vec::new();
  {
    let mut all = waiters();
    let Some(list) = all.get_mut(&change.session_id) else {
      return;
    };
    let mut i = 0;
    while i < list.len() {
      let result = match (&change.kind, &change.current) {
        (ChangeKind::Removed, _) | (_, None) => Some(Err(RegistryError::SessionRemoved(
          change.session_id.clone(),
        ))),
        (_, Some(s)) => judge(&change.session_id, list[i].wanted, s.clone()),
      };
      match result {
        Some(r) => decided.push((list.swap_remove(i), r)),
        None => i += 1,
      }
    }
    if list.is_empty() {
      all.remove(&change.session_id);
    }
    WAITER_COUNT.fetch_sub(decided.len(), Ordering::SeqCst);
  }
  // Answered outside the lock: sending may wait on the channel's own lock.
  for (w, result) in decided {
    if let Some(t) = &w.timer {
      t.abort();
    }
    w.pending
      .answer(result.map(|s| Outcome::State(Box::new(s))));
  }
}

/// Forgets the waiters of an environment that went away (their channels went with it).
pub fn remove_waiters(env_key: EnvKey) {
  let mut all = waiters();
  let mut removed = 0;
  all.retain(|_, list| {
    list.retain(|w| {
      if w.env == env_key {
        if let Some(t) = &w.timer {
          t.abort();
        }
        removed += 1;
        false
      } else {
        true
      }
    });
    !list.is_empty()
  });
  WAITER_COUNT.fetch_sub(removed, Ordering::SeqCst);
}

static HEALTH_RUNNING: AtomicBool = AtomicBool::new(false);
static HEALTH_WAKE: LazyLock<tokio::sync::Notify> = LazyLock::new(tokio::sync::Notify::new);

/// Makes the health timer re-read its settings at once (after `configure`).
pub fn wake_health() {
  HEALTH_WAKE.notify_one();
}

struct HealthGuard;
impl Drop for HealthGuard {
  fn drop(&mut self) {
    HEALTH_RUNNING.store(false, Ordering::SeqCst);
  }
}

/// Starts the health timer on the Tokio runtime if it is not running. It holds no JS handle
/// and does not keep the event loop alive; it ends with the runtime.
pub fn ensure_health_task() {
  if HEALTH_RUNNING.swap(true, Ordering::SeqCst) {
    return;
  }
  napi::bindgen_prelude::spawn(async {
    let _guard = HealthGuard;
    loop {
      let stuck_after = config::stuck_after_ms();
      let tick = (stuck_after / 4).clamp(10, 1000);
      tokio::select! {
        _ = tokio::time::sleep(Duration::from_millis(tick)) => {}
        // configure() changed the thresholds: look again now, with the new values.
        _ = HEALTH_WAKE.notified() => {}
      }
      if !wanted() {
        continue;
      }
      for (id, state) in table::take_newly_stuck(js::now_ms(), stuck_after as f64) {
        emit(&id, ChangeKind::Stuck, Some(state.clone()), Some(state));
      }
    }
  });
}
