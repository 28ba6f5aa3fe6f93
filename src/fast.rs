//! Hot paths registered as raw Node-API callbacks (see bench/ for why).

use crate::js::{Env, JsResult, Value};

/// Replaces selected exports with raw callbacks. Runs once per environment, after napi-rs
/// has set the generated exports.
pub fn install(_env: Env, _exports: Value) -> JsResult<()> {
  Ok(())
}
