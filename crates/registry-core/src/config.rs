//! Process-wide settings changed with `configure()`.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::errors::RegistryError;

/// Default idle threshold: 10 minutes without activity.
pub const DEFAULT_IDLE_AFTER_MS: u64 = 10 * 60 * 1000;
/// Default stuck threshold: 60 s in `connecting`.
pub const DEFAULT_STUCK_AFTER_MS: u64 = 60 * 1000;

static IDLE_AFTER_MS: AtomicU64 = AtomicU64::new(DEFAULT_IDLE_AFTER_MS);
static STUCK_AFTER_MS: AtomicU64 = AtomicU64::new(DEFAULT_STUCK_AFTER_MS);

pub fn idle_after_ms() -> u64 {
  IDLE_AFTER_MS.load(Ordering::Relaxed)
}

pub fn stuck_after_ms() -> u64 {
  STUCK_AFTER_MS.load(Ordering::Relaxed)
}

/// Checks a threshold given from JS: a finite number of milliseconds, at least 1.
pub fn check_ms(name: &str, value: f64) -> Result<u64, RegistryError> {
  if !value.is_finite() || !(1.0..=1e12).contains(&value) {
    return Err(RegistryError::InvalidOptions(format!(
      "{name} must be a number of milliseconds between 1 and 1e12, got {value}"
    )));
  }
  Ok(value as u64)
}

pub fn set(idle_after_ms: Option<u64>, stuck_after_ms: Option<u64>) {
  if let Some(v) = idle_after_ms {
    IDLE_AFTER_MS.store(v, Ordering::Relaxed);
  }
  if let Some(v) = stuck_after_ms {
    STUCK_AFTER_MS.store(v, Ordering::Relaxed);
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn thresholds_are_checked() {
    assert_eq!(check_ms("idleAfterMs", 5.0).unwrap(), 5);
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
      assert_eq!(
        check_ms("idleAfterMs", bad).unwrap_err().code(),
        "ERR_INVALID_OPTIONS"
      );
    }
  }
}
