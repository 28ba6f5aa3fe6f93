//! Per-environment handle table: session id → the socket object and the listener functions
//! the registry attached to it.
//!
//! JS handles belong to one environment (the main thread or one worker) and must never be
//! used from another, so this table is thread-local (Node runs one environment per thread)
//! and is emptied by the environment's cleanup hook. Other threads reach an environment only
//! through its [`EnvShared`]: a queue of revoked sessions (a takeover) and a weak channel
//! that wakes the environment to process it.

use std::cell::RefCell;
use std::ffi::{c_void, CStr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};

use dashmap::DashMap;
use napi::sys;
// Session ids are chosen by the bot, not by an attacker: a fast hash beats SipHash here.
use rustc_hash::FxHashMap;

use crate::channel::Channel;
use crate::health;
use crate::js::{self, Env, JsResult};
use registry_core::table::EnvKey;

/// The socket and the registry's listeners for one session in this environment.
pub struct SocketEntry {
  pub socket: js::Ref,
  pub generation: u64,
  /// `(event name, listener)` pairs added to `socket.ev`, to be removed with `ev.off`.
  pub listeners: Vec<(&'static CStr, js::Ref)>,
}

/// The part of an environment that other threads may touch.
pub struct EnvShared {
  pub key: EnvKey,
  pub thread_id: u32,
  revoked: Mutex<Vec<(String, u64)>>,
  pending: AtomicBool,
  wake: OnceLock<Arc<Channel<()>>>,
}

pub struct EnvHandles {
  pub env: Env,
  pub shared: Arc<EnvShared>,
  pub sockets: FxHashMap<Box<str>, SocketEntry>,
  /// What the health pass noted about sockets of this environment.
  pub health: health::Notes,
}

thread_local! {
  static HANDLES: RefCell<Option<EnvHandles>> = const { RefCell::new(None) };
}

static ENVS: LazyLock<DashMap<EnvKey, Arc<EnvShared>>> = LazyLock::new(DashMap::new);
static NEXT_ENV_KEY: AtomicU64 = AtomicU64::new(1);

/// What to do with revoked entries; set by `tracking` (which knows how to end a socket).
pub type ReleaseFn = fn(Env, &str, SocketEntry);
static RELEASE: OnceLock<ReleaseFn> = OnceLock::new();
/// What to do when an environment goes away; set by the API layer (table + events).
pub type TeardownFn = fn(EnvKey);
static TEARDOWN: OnceLock<TeardownFn> = OnceLock::new();

pub fn set_hooks(release: ReleaseFn, teardown: TeardownFn) {
  let _ = RELEASE.set(release);
  let _ = TEARDOWN.set(teardown);
}

/// Sets up this environment's table. Runs once per environment, at module load.
pub fn init_env(env: Env, thread_id: u32) -> JsResult<()> {
  let already = HANDLES.with(|h| h.borrow().as_ref().is_some_and(|t| t.env == env));
  if already {
    return Ok(());
  }
  let shared = Arc::new(EnvShared {
    key: NEXT_ENV_KEY.fetch_add(1, Ordering::Relaxed),
    thread_id,
    revoked: Mutex::new(Vec::new()),
    pending: AtomicBool::new(false),
    wake: OnceLock::new(),
  });
  let wake = Channel::new(env, None, |env, _, ()| drain_revocations(env), true)?;
  let _ = shared.wake.set(wake);
  ENVS.insert(shared.key, shared.clone());
  let key_box = Box::into_raw(Box::new(shared.key));
  js::ok(unsafe { sys::napi_add_env_cleanup_hook(env, Some(cleanup_hook), key_box.cast()) })?;
  HANDLES.with(|h| {
    *h.borrow_mut() = Some(EnvHandles {
      env,
      shared,
      sockets: FxHashMap::default(),
      health: health::Notes::default(),
    })
  });
  Ok(())
}

unsafe extern "C" fn cleanup_hook(arg: *mut c_void) {
  let key = *unsafe { Box::from_raw(arg.cast::<EnvKey>()) };
  let table = HANDLES.with(|h| h.borrow_mut().take());
  if let Some(table) = table {
    // The environment is going away: no JS may run, so only the references are released.
    for (_, entry) in table.sockets {
      for (_, l) in entry.listeners {
        l.delete(table.env);
      }
      entry.socket.delete(table.env);
    }
    if let Some(wake) = table.shared.wake.get() {
      wake.close();
    }
  }
  ENVS.remove(&key);
  if let Some(teardown) = TEARDOWN.get() {
    teardown(key);
  }
}

/// Runs `f` with this environment's table. `None` if the addon was not set up here.
/// `f` must not call into JS (a JS call could re-enter the registry and the table).
#[inline]
pub fn with<R>(f: impl FnOnce(&mut EnvHandles) -> R) -> Option<R> {
  HANDLES.with(|h| h.borrow_mut().as_mut().map(f))
}

/// This thread's socket for `id` (only of `generation`, when given), as a handle of the
/// current scope: the reference itself never leaves the table, so nothing can read it after
/// JavaScript that runs later unregistered the socket.
#[inline]
pub fn socket_value(env: Env, id: &str, generation: Option<u64>) -> Option<sys::napi_value> {
  with(|t| {
    t.sockets
      .get(id)
      .filter(|e| generation.is_none_or(|g| e.generation == g))
      .and_then(|e| e.socket.value(env).ok())
  })
  .flatten()
}

/// This environment's key and thread id.
pub fn current() -> Option<(EnvKey, u32)> {
  with(|t| (t.shared.key, t.shared.thread_id))
}

/// Applies takeovers that other threads asked for, if any are waiting. Cheap when none are.
#[inline]
pub fn sync_pending(env: Env) {
  let pending = with(|t| t.shared.pending.load(Ordering::Acquire)).unwrap_or(false);
  if pending {
    drain_revocations(env);
  }
}

fn drain_revocations(env: Env) {
  let Some(shared) = with(|t| t.shared.clone()) else {
    return;
  };
  let revoked = {
    let mut q = shared.revoked.lock().unwrap_or_else(|p| p.into_inner());
    shared.pending.store(false, Ordering::Release);
    std::mem::take(&mut *q)
  };
  for (id, generation) in revoked {
    let entry = with(|t| {
      if t
        .sockets
        .get(id.as_str())
        .is_some_and(|e| e.generation == generation)
      {
        t.sockets.remove(id.as_str())
      } else {
        None
      }
    })
    .flatten();
    if let (Some(entry), Some(release)) = (entry, RELEASE.get()) {
      release(env, &id, entry);
    }
  }
}

/// Tells environment `owner` (any thread) that its socket for `id` at `generation` was taken
/// over: it must end that socket and forget it. Returns `false` if that environment is gone.
pub fn revoke(owner: EnvKey, id: &str, generation: u64) -> bool {
  let Some(shared) = ENVS.get(&owner).map(|s| s.clone()) else {
    return false;
  };
  shared
    .revoked
    .lock()
    .unwrap_or_else(|p| p.into_inner())
    .push((id.to_owned(), generation));
  shared.pending.store(true, Ordering::Release);
  shared.wake.get().is_some_and(|w| w.send(()))
}
