//! A channel into one JS thread, over a Node-API thread-safe function.
//!
//! Why not napi-rs's `ThreadsafeFunction`: a subscriber's listener may throw, and the registry
//! must catch that itself (an exception left pending in a thread-safe call ends the process).
//! The channel survives its environment: when the environment is torn down Node finalizes the
//! thread-safe function, the finalizer marks the channel closed under its lock, and later
//! `send`s from other threads return `false` instead of touching freed memory.

use std::ffi::c_void;
use std::marker::PhantomData;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use napi::sys;

use crate::js::{self, Env, JsResult, Value};

/// What runs on the JS thread for each message. `callback` is the JS function the channel
/// was made with (null when it was made without one).
pub type Deliver<T> = fn(env: Env, callback: Value, message: T);

struct RawTsfn(sys::napi_threadsafe_function);
// The handle is used only under the channel's lock, and Node-API allows calling and
// releasing a thread-safe function from any thread.
unsafe impl Send for RawTsfn {}

pub struct Channel<T: Send + 'static> {
  tsfn: Mutex<Option<RawTsfn>>,
  /// Set by [`Channel::close`]: a message already queued is then dropped, not delivered (a
  /// listener that unsubscribes, maybe from inside another listener, hears nothing more).
  closed: AtomicBool,
  /// The JS thread the channel delivers to, and its environment (only used on that thread).
  thread: std::thread::ThreadId,
  env: RawEnv,
  /// Told when the channel stops being open (see [`Channel::closed`]).
  gone: tokio::sync::Notify,
  _message: PhantomData<fn(T)>,
}

struct RawEnv(Env);
// Only dereferenced by Node-API calls made on the channel's own thread (see `hold`).
unsafe impl Send for RawEnv {}
unsafe impl Sync for RawEnv {}

struct Context<T: Send + 'static> {
  deliver: Deliver<T>,
  channel: Weak<Channel<T>>,
}

unsafe extern "C" fn call_js<T: Send + 'static>(
  env: Env,
  callback: Value,
  context: *mut c_void,
  data: *mut c_void,
) {
  if data.is_null() {
    return;
  }
  let message = unsafe { Box::from_raw(data.cast::<T>()) };
  // A null env means the environment is going away: only free the message.
  if env.is_null() || context.is_null() {
    return;
  }
  let context = unsafe { &*context.cast::<Context<T>>() };
  // A channel whose last owner let go after `send_last` still delivers what it sent.
  let closed = context
    .channel
    .upgrade()
    .is_some_and(|c| c.closed.load(Ordering::Acquire));
  if closed {
    return;
  }
  // A panic must not unwind into Node (it would abort the process): the message is dropped.
  let deliver = context.deliver;
  let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
    deliver(env, callback, *message)
  }));
  // Never leave an exception pending here: Node would treat it as uncaught.
  js::take_exception(env);
}

unsafe extern "C" fn finalize<T: Send + 'static>(
  _env: Env,
  finalize_data: *mut c_void,
  _hint: *mut c_void,
) {
  if finalize_data.is_null() {
    return;
  }
  let context = unsafe { Box::from_raw(finalize_data.cast::<Context<T>>()) };
  if let Some(channel) = context.channel.upgrade() {
    if let Ok(mut slot) = channel.tsfn.lock() {
      *slot = None;
    }
    channel.gone.notify_waiters();
  }
}

impl<T: Send + 'static> Channel<T> {
  /// Makes a channel into the current thread. A `weak` channel does not keep the event loop
  /// alive; a strong one does until it is closed.
  pub fn new(
    env: Env,
    callback: Option<Value>,
    deliver: Deliver<T>,
    weak: bool,
  ) -> JsResult<Arc<Self>> {
    let channel = Arc::new(Channel {
      tsfn: Mutex::new(None),
      closed: AtomicBool::new(false),
      thread: std::thread::current().id(),
      env: RawEnv(env),
      gone: tokio::sync::Notify::new(),
      _message: PhantomData,
    });
    let context = Box::into_raw(Box::new(Context {
      deliver,
      channel: Arc::downgrade(&channel),
    }));
    let name = js::string(env, "baileys-socket-registry")?;
    let mut tsfn = ptr::null_mut();
    let status = unsafe {
      sys::napi_create_threadsafe_function(
        env,
        callback.unwrap_or(ptr::null_mut()),
        ptr::null_mut(),
        name,
        0,
        1,
        context.cast(),
        Some(finalize::<T>),
        context.cast(),
        Some(call_js::<T>),
        &mut tsfn,
      )
    };
    if status != sys::Status::napi_ok {
      drop(unsafe { Box::from_raw(context) });
      return Err(js::Fail::Js);
    }
    // A channel meant to be weak that stayed strong would hold the process open: released
    // instead (its finalizer frees the context; a failed release leaves nothing else to do),
    // and the caller hears of it.
    if weak && unsafe { sys::napi_unref_threadsafe_function(env, tsfn) } != sys::Status::napi_ok {
      unsafe {
        sys::napi_release_threadsafe_function(tsfn, sys::ThreadsafeFunctionReleaseMode::abort)
      };
      return Err(js::Fail::Js);
    }
    *channel.tsfn.lock().unwrap_or_else(|p| p.into_inner()) = Some(RawTsfn(tsfn));
    Ok(channel)
  }

  /// Queues `message` for the JS thread. `false` when the channel is closed.
  pub fn send(&self, message: T) -> bool {
    let slot = self.tsfn.lock().unwrap_or_else(|p| p.into_inner());
    let Some(tsfn) = slot.as_ref() else {
      return false;
    };
    let data = Box::into_raw(Box::new(message));
    let status = unsafe {
      sys::napi_call_threadsafe_function(
        tsfn.0,
        data.cast(),
        sys::ThreadsafeFunctionCallMode::nonblocking,
      )
    };
    if status != sys::Status::napi_ok {
      drop(unsafe { Box::from_raw(data) });
      return false;
    }
    true
  }

  /// Closes the channel: messages not yet delivered are dropped.
  pub fn close(&self) {
    self.closed.store(true, Ordering::Release);
    let taken = self.tsfn.lock().unwrap_or_else(|p| p.into_inner()).take();
    self.gone.notify_waiters();
    if let Some(tsfn) = taken {
      // The status is not checked: `abort` on a handle that Node already finalized is the only
      // failure, and then there is nothing left to release.
      unsafe {
        sys::napi_release_threadsafe_function(tsfn.0, sys::ThreadsafeFunctionReleaseMode::abort)
      };
    }
  }

  /// Makes a weak channel hold its thread's event loop open until it finishes, so that a
  /// message sent with [`Channel::send_last`] is delivered even if nothing else keeps the
  /// thread alive. Only possible on the channel's own thread (Node-API allows it only there);
  /// `false` elsewhere or once closed.
  pub fn hold(&self) -> bool {
    if std::thread::current().id() != self.thread {
      return false;
    }
    let slot = self.tsfn.lock().unwrap_or_else(|p| p.into_inner());
    slot.as_ref().is_some_and(|tsfn| unsafe {
      sys::napi_ref_threadsafe_function(self.env.0, tsfn.0) == sys::Status::napi_ok
    })
  }

  /// Whether messages can still be sent (false once closed, or once its environment is gone).
  pub fn is_open(&self) -> bool {
    self.tsfn.lock().map(|s| s.is_some()).unwrap_or(false)
  }

  /// Completes once the channel is no longer open: closed, finished with
  /// [`Channel::send_last`], or its environment gone. No polling: every path that closes the
  /// channel notifies.
  pub async fn closed(&self) {
    loop {
      let notified = self.gone.notified();
      tokio::pin!(notified);
      // Registered before the check, so a close between the check and the wait is not missed.
      notified.as_mut().enable();
      if !self.is_open() {
        return;
      }
      notified.await;
    }
  }

  /// Sends one last message, then lets the channel finish once it is delivered.
  pub fn send_last(&self, message: T) -> bool {
    let sent = self.send(message);
    let taken = self.tsfn.lock().unwrap_or_else(|p| p.into_inner()).take();
    self.gone.notify_waiters();
    if let Some(tsfn) = taken {
      // Not checked: it fails only for a handle Node already finalized (its environment going
      // away), and then there is nothing left to release.
      unsafe {
        sys::napi_release_threadsafe_function(tsfn.0, sys::ThreadsafeFunctionReleaseMode::release)
      };
    }
    sent
  }
}
