//! What other threads may know of one environment (the main thread or one worker): its key,
//! its thread id, and how to tell it that one of its sockets was taken over.
//!
//! The socket objects themselves live in the environment's own JavaScript `Map` (index.js):
//! they cannot leave their thread anyway. A takeover from another thread queues the revoked
//! session id here, bumps a counter in a small buffer the environment's
//! JavaScript reads on every lookup (so a lookup notices a takeover without a native call),
//! and wakes the environment through a weak channel (so the old socket is let go even when
//! that thread never looks anything up). The JavaScript side then drains the queue with
//! [`take_revoked`] and lets go of those sockets.

use std::cell::RefCell;
use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};

use dashmap::DashMap;
use napi::sys;

use crate::channel::Channel;
use crate::js::{self, Env, JsResult, Value};
use registry_core::table::{EnvKey, Generation};

/// The part of an environment that other threads may touch.
pub struct EnvShared {
  pub key: EnvKey,
  pub thread_id: u32,
  revoked: Mutex<Vec<String>>,
  /// Sessions whose cluster lease this node lost: (id, generation of the socket to end).
  lost: Mutex<Vec<(String, Generation)>>,
  /// Bumped after each revocation is queued; read by the environment's lookups through an
  /// external `ArrayBuffer` (see [`attach_js`]). Boxed: its address must not move.
  counter: Box<AtomicI32>,
  wake: OnceLock<Arc<Channel<()>>>,
}

thread_local! {
  static CURRENT: RefCell<Option<Arc<EnvShared>>> = const { RefCell::new(None) };
}

static ENVS: LazyLock<DashMap<EnvKey, Arc<EnvShared>>> = LazyLock::new(DashMap::new);
static NEXT_ENV_KEY: AtomicU32 = AtomicU32::new(1);

/// What to do when an environment goes away; set by the API layer (table + events).
pub type TeardownFn = fn(EnvKey);
static TEARDOWN: OnceLock<TeardownFn> = OnceLock::new();

pub fn set_teardown(teardown: TeardownFn) {
  let _ = TEARDOWN.set(teardown);
}

/// Sets up this environment. Runs once per environment, at module load.
pub fn init_env(env: Env, thread_id: u32) -> JsResult<()> {
  if CURRENT.with(|c| c.borrow().is_some()) {
    return Ok(());
  }
  let shared = Arc::new(EnvShared {
    key: NEXT_ENV_KEY.fetch_add(1, Ordering::Relaxed),
    thread_id,
    revoked: Mutex::new(Vec::new()),
    lost: Mutex::new(Vec::new()),
    counter: Box::new(AtomicI32::new(0)),
    wake: OnceLock::new(),
  });
  ENVS.insert(shared.key, shared.clone());
  let key_box = Box::into_raw(Box::new(shared.key));
  let hooked =
    js::ok(unsafe { sys::napi_add_env_cleanup_hook(env, Some(cleanup_hook), key_box.cast()) });
  if let Err(e) = hooked {
    drop(unsafe { Box::from_raw(key_box) });
    ENVS.remove(&shared.key);
    return Err(e);
  }
  CURRENT.with(|c| *c.borrow_mut() = Some(shared));
  Ok(())
}

unsafe extern "C" fn cleanup_hook(arg: *mut c_void) {
  let key = *unsafe { Box::from_raw(arg.cast::<EnvKey>()) };
  if let Some(shared) = CURRENT.with(|c| c.borrow_mut().take()) {
    if let Some(wake) = shared.wake.get() {
      wake.close();
    }
  }
  ENVS.remove(&key);
  if let Some(teardown) = TEARDOWN.get() {
    // A panic must not unwind into Node (it would abort the process while a thread exits).
    let _ = std::panic::catch_unwind(move || teardown(key));
  }
}

/// This environment's key and thread id.
pub fn current() -> Option<(EnvKey, u32)> {
  CURRENT.with(|c| c.borrow().as_ref().map(|s| (s.key, s.thread_id)))
}

unsafe extern "C" fn free_counter(_env: Env, _data: *mut c_void, hint: *mut c_void) {
  if !hint.is_null() {
    drop(unsafe { Arc::from_raw(hint.cast::<EnvShared>()) });
  }
}

/// Connects this environment's JavaScript side: `on_revoked` is called (on this thread) after
/// another thread took a session over; the returned `ArrayBuffer` (4 bytes, an `Int32Array`
/// over it reads the counter) changes each time one is queued. The buffer keeps the memory it
/// shows alive for as long as it lives itself.
pub fn attach_js(env: Env, on_revoked: Value) -> JsResult<Value> {
  let shared = CURRENT.with(|c| c.borrow().clone()).ok_or(js::Fail::Js)?;
  if shared.wake.get().is_none() {
    let wake = Channel::new(
      env,
      Some(on_revoked),
      |env, callback, ()| {
        // The callback catches what letting go throws; anything left is taken by the channel.
        let _ = js::call(env, js::undefined(env), callback, &[]);
      },
      true,
    )?;
    if shared.wake.set(wake.clone()).is_err() {
      wake.close();
    }
  }
  let data: *const AtomicI32 = &*shared.counter;
  let keep = Arc::into_raw(shared.clone());
  let mut buffer = ptr::null_mut();
  let status = unsafe {
    sys::napi_create_external_arraybuffer(
      env,
      data as *mut c_void,
      std::mem::size_of::<AtomicI32>(),
      Some(free_counter),
      keep as *mut c_void,
      &mut buffer,
    )
  };
  if status != sys::Status::napi_ok {
    drop(unsafe { Arc::from_raw(keep) });
    return Err(js::Fail::Js);
  }
  Ok(buffer)
}

/// Takes the ids other threads took over from this environment.
pub fn take_revoked() -> Vec<String> {
  CURRENT
    .with(|c| c.borrow().clone())
    .map(|shared| std::mem::take(&mut *shared.revoked.lock().unwrap_or_else(|p| p.into_inner())))
    .unwrap_or_default()
}

/// Tells environment `owner` (any thread) that its socket for `id` was taken over: it must end
/// that socket and forget it (unless it has registered the id again since, which it knows by
/// owning the record, see `sockets::take_revoked`). Returns `false` if that environment is
/// gone.
pub fn revoke(owner: EnvKey, id: &str) -> bool {
  queue_for(owner, |shared| {
    shared
      .revoked
      .lock()
      .unwrap_or_else(|p| p.into_inner())
      .push(id.to_owned())
  })
}

/// Queues something for environment `owner` with `push`, then bumps its counter and wakes it.
/// Returns `false` if that environment is gone.
fn queue_for(owner: EnvKey, push: impl FnOnce(&EnvShared)) -> bool {
  let Some(shared) = ENVS.get(&owner).map(|s| s.clone()) else {
    return false;
  };
  push(&shared);
  // After the push: a lookup that sees the new count finds the entry queued.
  shared.counter.fetch_add(1, Ordering::Release);
  shared.wake.get().is_some_and(|w| w.send(()))
}

/// Tells environment `owner` (any thread) that this node lost the cluster lease of `id`: it
/// must end the socket registered at `generation` silently and keep the session (its status
/// now says `leaseLost`). Same wake-up as [`revoke`]. Returns `false` if that environment is
/// gone or never attached.
pub fn lease_lost(owner: EnvKey, id: &str, generation: Generation) -> bool {
  queue_for(owner, |shared| {
    shared
      .lost
      .lock()
      .unwrap_or_else(|p| p.into_inner())
      .push((id.to_owned(), generation))
  })
}

/// Takes the lost leases queued for this environment.
pub fn take_lost() -> Vec<(String, Generation)> {
  CURRENT
    .with(|c| c.borrow().clone())
    .map(|shared| std::mem::take(&mut *shared.lost.lock().unwrap_or_else(|p| p.into_inner())))
    .unwrap_or_default()
}
