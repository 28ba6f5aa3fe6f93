//! The native half of the socket path, used by index.js only (names start with `__` and stay
//! out of the typings).
//!
//! This thread's sockets live in a JavaScript `Map` in index.js: lookups never cross into
//! Rust. What must be shared stays here: ownership, generations and takeovers (the table),
//! events to subscribers, socket faults. Each operation is one call that makes the whole
//! decision; index.js carries out its JavaScript side (the `Map`, listeners, letting go).

use napi::Env;
use napi_derive::napi;

use crate::api::JsAny;
use crate::events::{self, ChangeKind};
use crate::handles;
use crate::js::{self, JsResult};
use crate::tracking;
use registry_core::errors::RegistryError;
use registry_core::table;

fn finish<T>(env: &Env, r: JsResult<T>) -> napi::Result<T> {
  r.map_err(|f| {
    js::throw_fail(env.raw(), f);
    napi::Error::new(napi::Status::PendingException, "")
  })
}

/// Generations travel to JavaScript as numbers: exact below 2^53, far beyond what a process
/// registers.
fn generation(g: f64) -> u64 {
  g as u64
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
#[napi(js_name = "__register", skip_typescript)]
pub fn register(env: Env, id: String, track: bool, takeover: bool) -> napi::Result<f64> {
  finish(&env, register_id(&id, track, takeover))
}

fn register_id(id: &str, track: bool, takeover: bool) -> JsResult<f64> {
  let (env_key, thread_id) = handles::current().ok_or_else(|| {
    RegistryError::Internal("the registry was not initialised in this thread".into())
  })?;
  let registered = table::register(id, env_key, thread_id, track, takeover, js::now_ms())?;
  if let Some((owner, previous)) = registered.previous {
    if owner != env_key {
      handles::revoke(owner, id, previous);
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

/// Removes the record of `id` if it is still `generation`, telling subscribers (`removed`).
/// Returns whether it was there.
#[napi(js_name = "__unregister", skip_typescript)]
pub fn unregister(id: String, generation: f64) -> bool {
  let removed = table::remove(&id, Some(self::generation(generation)));
  let found = removed.is_some();
  if let Some(record) = removed {
    events::emit(&id, ChangeKind::Removed, Some(record.state), None);
  }
  found
}

/// The sessions other threads took over from this one since the last call, as a flat array
/// `[id, generation, id, generation, ...]`.
#[napi(js_name = "__takeRevoked", skip_typescript)]
pub fn take_revoked(env: Env) -> napi::Result<JsAny> {
  let raw = env.raw();
  let revoked = handles::take_revoked();
  finish(
    &env,
    (|| {
      let out = js::array(raw, revoked.len() * 2)?;
      for (i, (id, g)) in revoked.iter().enumerate() {
        js::set_element(raw, out, 2 * i as u32, js::string(raw, id)?)?;
        js::set_element(raw, out, 2 * i as u32 + 1, js::number(raw, *g as f64)?)?;
      }
      Ok(JsAny(out))
    })(),
  )
}

/// Records a socket fault (counted in `getStats().socketFaults`).
#[napi(js_name = "__fault", skip_typescript)]
pub fn fault(id: String, what: String, message: String) {
  tracking::record_fault(&id, &what, &message);
}

/// A tracked socket's `connection.update`, as primitives (see `tracking::connection_update`).
/// `code` is the Boom status code when the error had a finite one.
#[napi(js_name = "__connectionUpdate", skip_typescript)]
#[allow(clippy::too_many_arguments)]
pub fn connection_update(
  id: String,
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
  tracking::connection_update(
    &id,
    self::generation(generation),
    connection,
    qr,
    disconnect,
    code,
    message,
    (me_id, me_lid),
  );
}

/// A tracked socket's `messages.upsert`, counted.
#[napi(js_name = "__messagesUpsert", skip_typescript)]
pub fn messages_upsert(id: String, generation: f64, inbound: u32, outbound: u32) {
  tracking::messages(&id, self::generation(generation), inbound, outbound);
}

/// A tracked socket's identity from `creds.update`.
#[napi(js_name = "__credsMe", skip_typescript)]
pub fn creds_me(id: String, generation: f64, me_id: Option<String>, me_lid: Option<String>) {
  tracking::me(&id, self::generation(generation), me_id, me_lid);
}

/// The socket's listeners could not be attached: a fault, and the session reads untracked.
#[napi(js_name = "__untracked", skip_typescript)]
pub fn untracked(id: String, generation: f64, reason: String) {
  tracking::untracked(&id, self::generation(generation), &reason);
}

/// Whether the health pass looks at the socket of `id` at `generation`.
#[napi(js_name = "__healthWatched", skip_typescript)]
pub fn health_watched(id: String, generation: f64) -> bool {
  tracking::is_watched(&id, self::generation(generation))
}

/// The health pass saw the socket's websocket closed twice in a row: the session closes.
#[napi(js_name = "__healthClose", skip_typescript)]
pub fn health_close(id: String, generation: f64) {
  tracking::close_unheard(&id, self::generation(generation));
}
