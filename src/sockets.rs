//! The native half of the socket path, used by index.js only (names start with `__` and stay
//! out of the typings).
//!
//! This thread's sockets live in a JavaScript `Map` in index.js: lookups never cross into
//! Rust. What must be shared stays here: ownership, generations and takeovers (the table),
//! events to subscribers, socket faults. Each operation is one call that makes the whole
//! decision; index.js carries out its JavaScript side (the `Map`, listeners, letting go).

use std::ptr;

use napi::{sys, Env};
use napi_derive::napi;

use crate::api::JsAny;
use crate::events::{self, ChangeKind};
use crate::handles;
use crate::js::{self, JsResult, Value};
use crate::tracking;
use registry_core::errors::RegistryError;
use registry_core::table::{self, Generation};

/// The calls made for every registration, unregistration and health look, as raw callbacks:
/// napi-rs's generic wrapper (argument scopes and borrow tracking) cost more than the work
/// itself (profiled with perf). Put on the exports when the addon loads.
const RAW: [(&std::ffi::CStr, js::Callback); 3] = [
  (c"__register", register),
  (c"__unregister", unregister),
  (c"__healthWatched", health_watched),
];

/// Puts the raw callbacks of this module on the exports object.
pub fn install(env: js::Env, exports: Value) -> JsResult<()> {
  js::install_raw(env, exports, &RAW)
}

fn finish<T>(env: &Env, r: JsResult<T>) -> napi::Result<T> {
  r.map_err(|f| {
    js::throw_fail(env.raw(), f);
    napi::Error::new(napi::Status::PendingException, "")
  })
}

/// Runs `f` on the session id index.js passed (always a checked string): read into a stack
/// buffer, not into a new `String` as a `String` argument would be (most of a call's cost).
fn with_id<T: Default>(env: &Env, id: JsAny, f: impl FnOnce(&str) -> T) -> T {
  js::with_str(env.raw(), id.0, f).unwrap_or_default()
}

/// Generations travel to JavaScript as numbers (u32: always exact). Anything else index.js
/// could pass reads as 0, a generation never issued.
pub(crate) fn generation(g: f64) -> Generation {
  g as Generation
}

/// Connects index.js to this environment: `onRevoked` runs on this thread after another
/// thread took one of its sessions over; the returned `ArrayBuffer` holds a counter (an
/// `Int32Array` over it) that changes each time that happens, read by every lookup.
#[napi(js_name = "__attachSockets", skip_typescript)]
pub fn attach_sockets(env: Env, on_revoked: JsAny) -> napi::Result<JsAny> {
  let raw = env.raw();
  finish(&env, handles::attach_js(raw, on_revoked.0).map(JsAny))
}

/// Registers `id` for this thread and returns the new generation. The whole decision is
/// made here, in the table, at once: a session of another thread is refused
/// (`ERR_SESSION_OWNED_BY_OTHER_THREAD`) unless `takeover`, in which case that thread is told
/// to let its socket go; subscribers hear `registered` with the state it replaced. The caller
/// (index.js) has checked the arguments and holds the socket.
///
/// `__register(id, track, takeover)`, a raw callback (see [`install`]).
unsafe extern "C" fn register(env: js::Env, info: sys::napi_callback_info) -> Value {
  js::guard(env, || {
    let Some(([id, track, takeover], _)) = (unsafe { js::cb_args::<3>(env, info) }) else {
      return ptr::null_mut();
    };
    let track = js::get_bool(env, track).unwrap_or(true);
    let takeover = js::get_bool(env, takeover).unwrap_or(false);
    let decided = crate::fast::with_id(env, id, |id| register_id(id, track, takeover))
      .unwrap_or_else(|| {
        Err(RegistryError::Internal("the session id is not a string".into()).into())
      });
    js::callback_result(env, decided.and_then(|g| js::number(env, g)))
  })
}

fn register_id(id: &str, track: bool, takeover: bool) -> JsResult<f64> {
  let (env_key, thread_id) = handles::current().ok_or_else(|| {
    RegistryError::Internal("the registry was not initialised in this thread".into())
  })?;
  crate::cluster::check_register(id)?;
  let registered = table::register(id, env_key, thread_id, track, takeover, js::now_ms())?;
  if let Some((owner, _)) = registered.previous {
    if owner != env_key {
      handles::revoke(owner, id);
    }
  }
  if events::wanted() {
    events::emit(
      id,
      ChangeKind::Registered,
      registered.previous_state,
      table::get(id),
    );
  }
  Ok(registered.generation as f64)
}

/// Removes the record of `id` if this environment owns it (another thread may have taken it
/// over meanwhile), telling subscribers (`removed`). Returns whether it was removed.
///
/// `__unregister(id)`, a raw callback (see [`install`]).
unsafe extern "C" fn unregister(env: js::Env, info: sys::napi_callback_info) -> Value {
  js::guard(env, || {
    let Some(([id], _)) = (unsafe { js::cb_args::<1>(env, info) }) else {
      return ptr::null_mut();
    };
    let owner = handles::current().map(|c| c.0);
    let found = crate::fast::with_id(env, id, |id| {
      let removed = owner.and_then(|owner| table::remove_owned(id, owner));
      let found = removed.is_some();
      // Asked first: without listeners the state is dropped where it lies, not moved (perf).
      if let Some(record) = removed.filter(|_| events::wanted()) {
        events::emit(id, ChangeKind::Removed, Some(record.state), None);
      }
      if found {
        crate::cluster::on_unregistered(id);
      }
      found
    });
    js::boolean(env, found.unwrap_or(false)).unwrap_or(ptr::null_mut())
  })
}

/// The sessions other threads took over from this one since the last call, as an array of
/// ids. An id this environment owns again (it registered the id anew since) is left out: its
/// socket in index.js is that newer one.
#[napi(js_name = "__takeRevoked", skip_typescript)]
pub fn take_revoked(env: Env) -> napi::Result<JsAny> {
  let raw = env.raw();
  let owner = handles::current().map(|c| c.0);
  let revoked: Vec<String> = handles::take_revoked()
    .into_iter()
    .filter(|id| owner.is_none_or(|owner| !table::is_owned_by(id, owner)))
    .collect();
  finish(
    &env,
    (|| {
      let out = js::array(raw, revoked.len())?;
      for (i, id) in revoked.iter().enumerate() {
        js::set_element(raw, out, i as u32, js::string(raw, id)?)?;
      }
      Ok(JsAny(out))
    })(),
  )
}

/// Records a socket fault (counted in `getStats().socketFaults`).
#[napi(js_name = "__fault", skip_typescript)]
pub fn fault(env: Env, id: JsAny, what: String, message: String) {
  with_id(&env, id, |id| tracking::record_fault(id, &what, &message));
}

/// A tracked socket's `connection.update`, as primitives (see `tracking::connection_update`).
/// `code` is the Boom status code when the error had a finite one.
#[napi(js_name = "__connectionUpdate", skip_typescript)]
#[allow(clippy::too_many_arguments)]
pub fn connection_update(
  env: Env,
  id: JsAny,
  generation: f64,
  connection: u32,
  qr: bool,
  disconnect: bool,
  code: Option<f64>,
  message: Option<String>,
  me_id: Option<String>,
  me_lid: Option<String>,
) {
  let code = code
    .filter(|c| c.is_finite() && *c >= 0.0 && *c <= u32::MAX as f64)
    .map(|c| c as u32);
  with_id(&env, id, |id| {
    tracking::connection_update(
      id,
      self::generation(generation),
      connection,
      qr,
      disconnect,
      code,
      message,
      (me_id, me_lid),
    )
  });
}

/// A tracked socket's `messages.upsert`, counted.
#[napi(js_name = "__messagesUpsert", skip_typescript)]
pub fn messages_upsert(env: Env, id: JsAny, generation: f64, inbound: u32, outbound: u32) {
  with_id(&env, id, |id| {
    tracking::messages(id, self::generation(generation), inbound, outbound)
  });
}

/// A tracked socket's identity from `creds.update`.
#[napi(js_name = "__credsMe", skip_typescript)]
pub fn creds_me(
  env: Env,
  id: JsAny,
  generation: f64,
  me_id: Option<String>,
  me_lid: Option<String>,
) {
  with_id(&env, id, |id| {
    tracking::me(id, self::generation(generation), me_id, me_lid)
  });
}

/// The socket's listeners could not be attached: a fault, and the session reads untracked.
#[napi(js_name = "__untracked", skip_typescript)]
pub fn untracked(env: Env, id: JsAny, generation: f64, reason: String) {
  with_id(&env, id, |id| {
    tracking::untracked(id, self::generation(generation), &reason)
  });
}

/// Whether the health pass looks at the socket of `id` at `generation`.
///
/// `__healthWatched(id, generation)`, a raw callback (see [`install`]).
unsafe extern "C" fn health_watched(env: js::Env, info: sys::napi_callback_info) -> Value {
  js::guard(env, || {
    let Some(([id, generation], _)) = (unsafe { js::cb_args::<2>(env, info) }) else {
      return ptr::null_mut();
    };
    let generation = js::get_number(env, generation).map_or(0, self::generation);
    let watched = crate::fast::with_id(env, id, |id| tracking::is_watched(id, generation));
    js::boolean(env, watched.unwrap_or(false)).unwrap_or(ptr::null_mut())
  })
}

/// The health pass saw the socket's websocket closed twice in a row: the session closes.
#[napi(js_name = "__healthClose", skip_typescript)]
pub fn health_close(env: Env, id: JsAny, generation: f64) {
  with_id(&env, id, |id| {
    tracking::close_unheard(id, self::generation(generation))
  });
}
