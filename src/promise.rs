//! Promises settled from the Tokio runtime.
//!
//! The JS thread creates the promise and a strong channel (so the process waits for the
//! answer, as it would for a timer); the work runs on Tokio; its outcome comes back through
//! the channel and is turned into JS there. Rejections carry the registry's error codes.

use std::future::Future;
use std::ptr;
use std::sync::Arc;

use napi::sys;

use crate::channel::Channel;
use crate::convert;
use crate::js::{self, Env, JsResult, Value};
use registry_core::errors::RegistryError;
use registry_core::snapshot::SavedSession;
use registry_core::state::SessionState;

/// What a promise resolves with.
pub enum Outcome {
  State(Box<SessionState>),
  Saved {
    path: String,
    sessions: usize,
    saved_at: f64,
  },
  Sessions(Vec<SavedSession>),
  /// JSON data, made into a fresh JS value (the cluster's answers).
  Json(serde_json::Value),
}

struct Deferred(sys::napi_deferred);
// Only used on the JS thread that created it: it travels through the channel untouched.
unsafe impl Send for Deferred {}

type Settlement = (Deferred, Result<Outcome, RegistryError>);

fn outcome_to_js(env: Env, outcome: Outcome) -> JsResult<Value> {
  match outcome {
    Outcome::State(s) => convert::state_to_js(env, &s),
    Outcome::Saved {
      path,
      sessions,
      saved_at,
    } => {
      let o = js::object(env)?;
      js::set_named(env, o, c"path", js::string(env, &path)?)?;
      js::set_named(env, o, c"sessions", js::number(env, sessions as f64)?)?;
      js::set_named(env, o, c"savedAt", js::number(env, saved_at)?)?;
      Ok(o)
    }
    Outcome::Json(v) => convert::json_to_js(env, &v),
    Outcome::Sessions(list) => {
      let json = serde_json::to_value(list).map_err(|e| RegistryError::Internal(e.to_string()))?;
      convert::json_to_js(env, &json)
    }
  }
}

fn settle(env: Env, _callback: Value, (deferred, result): Settlement) {
  let value = match result {
    Ok(outcome) => outcome_to_js(env, outcome).map_err(|_| {
      let message = js::take_exception(env).unwrap_or_else(|| "conversion failed".into());
      RegistryError::Internal(message)
    }),
    Err(e) => Err(e),
  };
  let concluded = match value {
    Ok(v) => unsafe { sys::napi_resolve_deferred(env, deferred.0, v) },
    Err(e) => reject(env, &deferred, &e),
  };
  // Node-API refuses to settle while an exception is pending (left by the conversion, say),
  // and then keeps the deferred: cleared, and the promise rejected instead, so it never stays
  // pending. Any other failure has already consumed the deferred (retrying would use it after
  // it was freed); if even the rejection fails there is no JavaScript left to tell.
  if concluded == sys::Status::napi_pending_exception {
    let message = js::take_exception(env).unwrap_or_else(|| "settling failed".into());
    reject(env, &deferred, &RegistryError::Internal(message));
  }
}

fn reject(env: Env, deferred: &Deferred, e: &RegistryError) -> sys::napi_status {
  let err = js::error_value(env, e).unwrap_or_else(|_| js::undefined(env));
  unsafe { sys::napi_reject_deferred(env, deferred.0, err) }
}

/// Whether a pending promise holds the process open.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum KeepAlive {
  /// Like a timer: the process waits for the answer (file I/O, a wait with a timeout).
  Yes,
  /// Like an event listener: if nothing else keeps the process alive, nothing could settle it
  /// either (a wait without a timeout), so the process may exit.
  No,
}

/// Returns a promise for `work`, which runs on the Tokio runtime. If the environment that
/// asked goes away first (a worker that exits), the work is dropped instead of running on.
pub fn spawn<F>(env: Env, keep_alive: KeepAlive, work: F) -> JsResult<Value>
where
  F: Future<Output = Result<Outcome, RegistryError>> + Send + 'static,
{
  let (promise, deferred, channel) = promise_with_channel(env, keep_alive)?;
  napi::bindgen_prelude::spawn(async move {
    tokio::select! {
      result = work => {
        channel.send_last((deferred, result));
      }
      // The environment went away (its channel's finalizer tells): drop the work.
      _ = channel.closed() => {}
    }
  });
  Ok(promise)
}

/// A promise waiting for an answer that any thread may give (`waitForState`): its deferred and
/// the channel that carries the answer to the promise's thread.
pub struct Pending {
  deferred: Deferred,
  channel: Arc<Channel<Settlement>>,
}

/// A new promise and its [`Pending`] half. With [`KeepAlive::No`] the promise does not hold
/// the event loop open while it waits.
pub fn pending(env: Env, keep_alive: KeepAlive) -> JsResult<(Value, Pending)> {
  let (promise, deferred, channel) = promise_with_channel(env, keep_alive)?;
  Ok((promise, Pending { deferred, channel }))
}

/// A new promise, and the channel that will carry its settlement back to this thread. If the
/// channel cannot be made, the promise is rejected at once rather than left pending forever.
fn promise_with_channel(
  env: Env,
  keep_alive: KeepAlive,
) -> JsResult<(Value, Deferred, Arc<Channel<Settlement>>)> {
  let mut deferred = ptr::null_mut();
  let mut promise = ptr::null_mut();
  js::ok(unsafe { sys::napi_create_promise(env, &mut deferred, &mut promise) })?;
  let deferred = Deferred(deferred);
  match Channel::new(env, None, settle, keep_alive == KeepAlive::No) {
    Ok(channel) => Ok((promise, deferred, channel)),
    Err(e) => {
      let err = js::error_value(
        env,
        &RegistryError::Internal("cannot create the promise's channel".into()),
      )?;
      js::ok(unsafe { sys::napi_reject_deferred(env, deferred.0, err) })?;
      Err(e)
    }
  }
}

impl Pending {
  /// Settles the promise from any thread. On the promise's own thread the answer also holds
  /// the event loop open until it is delivered: a promise that has its answer settles even when
  /// the change came from top-level code with nothing else to keep the process alive.
  pub fn answer(self, result: Result<Outcome, RegistryError>) {
    self.channel.hold();
    self.channel.send_last((self.deferred, result));
  }

  /// Settles the promise at once; only on its own thread, inside a call from JavaScript.
  pub fn settle_now(self, env: Env, result: Result<Outcome, RegistryError>) {
    self.channel.close();
    settle(env, ptr::null_mut(), (self.deferred, result));
  }
}

/// Returns a promise already settled with `result` (no Tokio round trip).
pub fn settled(env: Env, result: Result<Outcome, RegistryError>) -> JsResult<Value> {
  let mut deferred = ptr::null_mut();
  let mut promise = ptr::null_mut();
  js::ok(unsafe { sys::napi_create_promise(env, &mut deferred, &mut promise) })?;
  settle(env, ptr::null_mut(), (Deferred(deferred), result));
  Ok(promise)
}
