//! Supervised sessions (`superviseSession`): the reconnect policy and every decision it makes,
//! in plain Rust. The binding (src/supervise.rs) holds one [`Supervisor`] per supervised
//! session and index.js carries its decisions out (calling `makeSocket`, registering,
//! timers).
//!
//! A supervisor counts the sockets it made since the last stable open (`failures`): each
//! close, or each `makeSocket` that throws, is one more. By the close's reason the policy says
//! what comes next: a new socket at once (`now`), one after an exponential backoff with full
//! jitter (`backoff`), or nothing ever again (`stop`: the credentials are gone, or another
//! client holds the account). After `maxAttempts` failures in a row it gives up. A socket that
//! stayed open for `stableAfterMs` resets the count when it closes.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::errors::RegistryError;
use crate::state::disconnect_reason;

/// The longest delay a JavaScript timer takes (2^31 - 1 ms, about 24.8 days).
pub const MAX_DELAY_MS: f64 = 2_147_483_647.0;

const WHAT: &str = "superviseSession(sessionId, makeSocket, policy)";

/// Exponential backoff: before the socket that follows `n` failures in a row, wait a random
/// time in `[0, min(maxMs, baseMs * factor^(n-1))]` (full jitter), or exactly that ceiling
/// without jitter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
  pub base_ms: f64,
  pub factor: f64,
  pub max_ms: f64,
  /// Full jitter (the default); `false` waits the ceiling itself (predictable, for tests).
  pub jitter: bool,
}

impl Backoff {
  pub const DEFAULT: Backoff = Backoff {
    base_ms: 1000.0,
    factor: 2.0,
    max_ms: 60_000.0,
    jitter: true,
  };

  /// The longest wait after `failures` failures in a row (at least 1).
  pub fn ceiling(&self, failures: u32) -> f64 {
    // Capped exponent: factor^1024 is already infinite, and min() then gives max_ms.
    let exp = failures.saturating_sub(1).min(1024) as i32;
    (self.base_ms * self.factor.powi(exp)).min(self.max_ms)
  }

  /// A delay drawn with full jitter: `random` in `[0, 1)` scales the ceiling.
  pub fn delay(&self, failures: u32, random: f64) -> f64 {
    if !self.jitter {
      return self.ceiling(failures).floor();
    }
    (self.ceiling(failures) * random.clamp(0.0, 1.0)).floor()
  }
}

/// What the policy does after a close for one reason.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rule {
  /// A new socket at once.
  Now,
  /// A new socket after a backoff.
  Backoff(Backoff),
  /// No new socket ever: the supervisor stops.
  Stop,
}

/// Why a socket failed: Baileys' `DisconnectReason` names, a close the policy cannot name, or
/// a `makeSocket` that threw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
  RestartRequired,
  ConnectionClosed,
  ConnectionLost,
  TimedOut,
  UnavailableService,
  BadSession,
  LoggedOut,
  Forbidden,
  MultideviceMismatch,
  ConnectionReplaced,
  /// A close without a status code the policy names (a plain Error, `end(undefined)`, a
  /// close the health pass found).
  Unknown,
  /// `makeSocket` threw, rejected, or gave something that is not a socket.
  MakeSocketFailed,
}

impl Reason {
  pub const ALL: [Reason; 12] = [
    Reason::RestartRequired,
    Reason::ConnectionClosed,
    Reason::ConnectionLost,
    Reason::TimedOut,
    Reason::UnavailableService,
    Reason::BadSession,
    Reason::LoggedOut,
    Reason::Forbidden,
    Reason::MultideviceMismatch,
    Reason::ConnectionReplaced,
    Reason::Unknown,
    Reason::MakeSocketFailed,
  ];

  /// The key of the reason in a policy's `reasons` (Baileys' `DisconnectReason` name).
  pub fn as_str(self) -> &'static str {
    match self {
      Reason::RestartRequired => "restartRequired",
      Reason::ConnectionClosed => "connectionClosed",
      Reason::ConnectionLost => "connectionLost",
      Reason::TimedOut => "timedOut",
      Reason::UnavailableService => "unavailableService",
      Reason::BadSession => "badSession",
      Reason::LoggedOut => "loggedOut",
      Reason::Forbidden => "forbidden",
      Reason::MultideviceMismatch => "multideviceMismatch",
      Reason::ConnectionReplaced => "connectionReplaced",
      Reason::Unknown => "unknown",
      Reason::MakeSocketFailed => "makeSocketFailed",
    }
  }

  fn index(self) -> usize {
    self as usize
  }

  pub fn parse(text: &str) -> Option<Reason> {
    Reason::ALL.iter().copied().find(|r| r.as_str() == text)
  }

  /// The reason of a close with this status code and error message.
  pub fn of_close(code: Option<u32>, message: Option<&str>) -> Reason {
    disconnect_reason(code, message)
      .and_then(Reason::parse)
      .unwrap_or(Reason::Unknown)
  }

  /// The default rule: 515 reconnects at once; 401, 403, 411 and 440 stop; everything else
  /// backs off.
  pub fn default_rule(self, backoff: Backoff) -> Rule {
    match self {
      Reason::RestartRequired => Rule::Now,
      Reason::LoggedOut
      | Reason::Forbidden
      | Reason::MultideviceMismatch
      | Reason::ConnectionReplaced => Rule::Stop,
      _ => Rule::Backoff(backoff),
    }
  }
}

/// A supervisor's policy: defaults per reason, each configurable.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
  /// The backoff of every reason whose rule is `backoff` without its own parameters.
  pub backoff: Backoff,
  /// Give up after this many failures in a row without a stable open (`None`: never).
  pub max_attempts: Option<u32>,
  /// A socket open at least this long when it closes resets the count of failures.
  pub stable_after_ms: f64,
  rules: [Rule; Reason::ALL.len()],
}

impl Default for Policy {
  fn default() -> Self {
    Policy::with_backoff(Backoff::DEFAULT)
  }
}

fn invalid(message: String) -> RegistryError {
  RegistryError::InvalidOptions(format!("{WHAT}: {message}"))
}

/// What `value` is, for an error message.
fn describe(value: &Value) -> String {
  match value {
    Value::Null => "null".into(),
    Value::Bool(b) => b.to_string(),
    Value::Number(n) => n.to_string(),
    Value::String(s) if s.chars().count() > 40 => "a long string".into(),
    Value::String(s) => format!("'{s}'"),
    Value::Array(_) => "an array".into(),
    Value::Object(_) => "an object".into(),
  }
}

fn object<'a>(
  value: &'a Value,
  path: &str,
  known: &[&str],
) -> Result<&'a Map<String, Value>, RegistryError> {
  let Value::Object(map) = value else {
    return Err(invalid(format!(
      "{path} must be an object, got {}",
      describe(value)
    )));
  };
  if let Some(key) = map.keys().find(|k| !known.contains(&k.as_str())) {
    return Err(invalid(format!(
      "{path} has an unknown key '{key}' (known: {})",
      known.join(", ")
    )));
  }
  Ok(map)
}

/// A number in `[min, MAX_DELAY_MS]`.
fn millis(
  map: &Map<String, Value>,
  key: &str,
  path: &str,
  min: f64,
) -> Result<Option<f64>, RegistryError> {
  match map.get(key) {
    None | Some(Value::Null) => Ok(None),
    Some(Value::Number(n)) => match n.as_f64() {
      Some(v) if (min..=MAX_DELAY_MS).contains(&v) => Ok(Some(v)),
      _ => Err(invalid(format!(
        "{path}.{key} must be a number of milliseconds from {min} to {MAX_DELAY_MS}, got {n}"
      ))),
    },
    Some(v) => Err(invalid(format!(
      "{path}.{key} must be a number, got {}",
      describe(v)
    ))),
  }
}

/// Backoff parameters over `inherit`; `maxMs` must not be below `baseMs`.
fn backoff(value: &Value, path: &str, inherit: Backoff) -> Result<Backoff, RegistryError> {
  let map = object(value, path, &["baseMs", "factor", "maxMs", "jitter"])?;
  let base_ms = millis(map, "baseMs", path, 1.0)?.unwrap_or(inherit.base_ms);
  let factor = match map.get("factor") {
    None | Some(Value::Null) => inherit.factor,
    Some(Value::Number(n)) => match n.as_f64() {
      Some(f) if (1.0..=1000.0).contains(&f) => f,
      _ => {
        return Err(invalid(format!(
          "{path}.factor must be a number from 1 to 1000, got {n}"
        )))
      }
    },
    Some(v) => {
      return Err(invalid(format!(
        "{path}.factor must be a number, got {}",
        describe(v)
      )))
    }
  };
  let max_ms = millis(map, "maxMs", path, 1.0)?.unwrap_or(inherit.max_ms.max(base_ms));
  let jitter = match map.get("jitter") {
    None | Some(Value::Null) => inherit.jitter,
    Some(Value::String(s)) if s == "full" => true,
    Some(Value::String(s)) if s == "none" => false,
    Some(v) => {
      return Err(invalid(format!(
        "{path}.jitter must be 'full' or 'none', got {}",
        describe(v)
      )))
    }
  };
  if max_ms < base_ms {
    return Err(invalid(format!(
      "{path}.maxMs ({max_ms}) must not be below baseMs ({base_ms})"
    )));
  }
  Ok(Backoff {
    base_ms,
    factor,
    max_ms,
    jitter,
  })
}

impl Policy {
  fn with_backoff(backoff: Backoff) -> Policy {
    let mut rules = [Rule::Stop; Reason::ALL.len()];
    for r in Reason::ALL {
      rules[r.index()] = r.default_rule(backoff);
    }
    Policy {
      backoff,
      max_attempts: Some(10),
      stable_after_ms: 30_000.0,
      rules,
    }
  }

  /// The rule for `reason`.
  pub fn rule(&self, reason: Reason) -> Rule {
    self.rules[reason.index()]
  }

  /// Reads a user policy (its JSON form; `null` for the defaults):
  /// `{ backoff: { baseMs, factor, maxMs }, maxAttempts, stableAfterMs, reasons: { [reason]:
  /// 'now' | 'backoff' | 'stop' | { baseMs, factor, maxMs } } }`, every key optional.
  /// `maxAttempts` is a positive integer or `"Infinity"` (how JavaScript's `Infinity` crosses).
  /// Anything else, and unknown keys, are `ERR_INVALID_OPTIONS`.
  pub fn from_json(value: &Value) -> Result<Policy, RegistryError> {
    if value.is_null() {
      return Ok(Policy::default());
    }
    let map = object(
      value,
      "policy",
      &["backoff", "maxAttempts", "stableAfterMs", "reasons"],
    )?;
    let base = match map.get("backoff") {
      None | Some(Value::Null) => Backoff::DEFAULT,
      Some(v) => backoff(v, "policy.backoff", Backoff::DEFAULT)?,
    };
    let mut policy = Policy::with_backoff(base);
    match map.get("maxAttempts") {
      None | Some(Value::Null) => {}
      Some(Value::String(s)) if s == "Infinity" => policy.max_attempts = None,
      Some(Value::Number(n))
        if n
          .as_u64()
          .is_some_and(|v| (1..=u64::from(u32::MAX)).contains(&v)) =>
      {
        policy.max_attempts = n.as_u64().map(|v| v as u32);
      }
      Some(v) => {
        return Err(invalid(format!(
          "policy.maxAttempts must be a positive integer or Infinity, got {}",
          describe(v)
        )))
      }
    }
    if let Some(ms) = millis(map, "stableAfterMs", "policy", 0.0)? {
      policy.stable_after_ms = ms;
    }
    if let Some(reasons) = map.get("reasons").filter(|v| !v.is_null()) {
      let names: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
      let reasons = object(reasons, "policy.reasons", &names)?;
      for (key, v) in reasons {
        let reason =
          Reason::parse(key).ok_or_else(|| invalid(format!("unknown reason '{key}'")))?;
        let path = format!("policy.reasons.{key}");
        let rule = match v {
          Value::String(s) if s == "now" => Rule::Now,
          Value::String(s) if s == "backoff" => Rule::Backoff(base),
          Value::String(s) if s == "stop" => Rule::Stop,
          Value::Object(_) => Rule::Backoff(backoff(v, &path, base)?),
          other => {
            return Err(invalid(format!(
              "{path} must be 'now', 'backoff', 'stop' or backoff parameters {{ baseMs, factor, maxMs }}, got {}",
              describe(other)
            )))
          }
        };
        policy.rules[reason.index()] = rule;
      }
    }
    Ok(policy)
  }
}

/// Where a supervisor is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Phase {
  /// A socket is being made, or is registered and not closed.
  Running,
  /// Waiting for the next attempt.
  Waiting,
  /// Stopped: by a terminal close (the policy's `stop`), or by `stop()`, `unregisterSocket`,
  /// `clearAll` or a takeover by another thread.
  Stopped,
  /// Gave up after `maxAttempts` failures in a row.
  GaveUp,
}

impl Phase {
  pub fn as_str(self) -> &'static str {
    match self {
      Phase::Running => "running",
      Phase::Waiting => "waiting",
      Phase::Stopped => "stopped",
      Phase::GaveUp => "gaveUp",
    }
  }
}

/// What the supervision of a session looks like, in its state (`getSessionState().supervision`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Supervision {
  #[serde(rename = "state")]
  pub phase: Phase,
  /// The attempt of the current socket (or of the next one, while waiting): 1 for the first
  /// socket since supervision started, `restart()` or the last stable open.
  pub attempt: u32,
  /// When the next attempt is due (epoch ms), while waiting.
  pub next_attempt_at: Option<f64>,
  /// Why the last socket failed, or why supervision stopped or gave up.
  pub reason: Option<String>,
  /// The last failure's error message (a close's, or what `makeSocket` threw).
  pub error: Option<String>,
}

/// What a supervisor does after a failure.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Decision {
  /// Make socket number `attempt` after `delay_ms` (0: at once).
  Retry { attempt: u32, delay_ms: f64 },
  /// Never make another socket.
  Stop,
  /// `maxAttempts` failures in a row: give up.
  GiveUp,
}

/// One supervised session's reconnect state.
#[derive(Clone, Debug)]
pub struct Supervisor {
  policy: Policy,
  failures: u32,
  attempt: u32,
  opened_at: Option<f64>,
  phase: Phase,
  next_at: Option<f64>,
  reason: Option<String>,
  error: Option<String>,
}

impl Supervisor {
  pub fn new(policy: Policy) -> Supervisor {
    Supervisor {
      policy,
      failures: 0,
      attempt: 0,
      opened_at: None,
      phase: Phase::Running,
      next_at: None,
      reason: None,
      error: None,
    }
  }

  pub fn policy(&self) -> &Policy {
    &self.policy
  }

  pub fn phase(&self) -> Phase {
    self.phase
  }

  /// Whether the supervisor still makes sockets (`restart()` aside).
  pub fn is_live(&self) -> bool {
    matches!(self.phase, Phase::Running | Phase::Waiting)
  }

  /// A socket is about to be made: returns its attempt number.
  pub fn begin(&mut self) -> u32 {
    self.attempt = self.failures + 1;
    self.phase = Phase::Running;
    self.next_at = None;
    self.opened_at = None;
    self.attempt
  }

  /// The current socket reached `open`.
  pub fn opened(&mut self, now: f64) {
    self.opened_at = Some(now);
  }

  /// The current socket failed (closed, or `makeSocket` failed) for `reason`; `random` (in
  /// `[0, 1)`) draws the jitter. Decides what comes next.
  pub fn failed(
    &mut self,
    reason: Reason,
    error: Option<String>,
    now: f64,
    random: &mut dyn FnMut() -> f64,
  ) -> Decision {
    // A socket that stayed open long enough was a success: its close starts a fresh run
    // (the next socket is attempt 1, after the shortest backoff) instead of counting.
    let stable = self
      .opened_at
      .is_some_and(|at| now - at >= self.policy.stable_after_ms);
    self.opened_at = None;
    self.failures = if stable {
      0
    } else {
      self.failures.saturating_add(1)
    };
    self.reason = Some(reason.as_str().into());
    self.error = error;
    self.next_at = None;
    let rule = self.policy.rule(reason);
    if rule == Rule::Stop {
      self.phase = Phase::Stopped;
      return Decision::Stop;
    }
    if !stable && self.policy.max_attempts.is_some_and(|m| self.failures >= m) {
      self.phase = Phase::GaveUp;
      return Decision::GiveUp;
    }
    let delay_ms = match rule {
      Rule::Backoff(b) => b.delay(self.failures.max(1), random()),
      _ => 0.0,
    };
    self.phase = Phase::Waiting;
    self.attempt = self.failures + 1;
    self.next_at = Some(now + delay_ms);
    Decision::Retry {
      attempt: self.attempt,
      delay_ms,
    }
  }

  /// Stops for good (`stop()`, `unregisterSocket`, `clearAll`, a takeover). Returns whether
  /// it was live: stopping twice changes nothing.
  pub fn stop(&mut self, reason: &str) -> bool {
    if !self.is_live() {
      return false;
    }
    self.phase = Phase::Stopped;
    self.next_at = None;
    self.reason = Some(reason.into());
    true
  }

  /// `restart()`: a fresh run of attempts, whatever came before.
  pub fn restart(&mut self) {
    self.failures = 0;
    self.opened_at = None;
    self.phase = Phase::Running;
    self.next_at = None;
  }

  /// The supervision as the session's state shows it.
  pub fn snapshot(&self) -> Supervision {
    Supervision {
      phase: self.phase,
      attempt: self.attempt,
      next_attempt_at: self.next_at,
      reason: self.reason.clone(),
      error: self.error.clone(),
    }
  }
}

/// A small, fast random source (splitmix64) for the jitter: no cryptographic strength needed,
/// only independence between sessions (seed each from the clock and a counter).
#[derive(Clone, Debug)]
pub struct Jitter(u64);

impl Jitter {
  pub fn new(seed: u64) -> Jitter {
    Jitter(seed)
  }

  /// A number in `[0, 1)`.
  pub fn draw(&mut self) -> f64 {
    self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = self.0;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use serde_json::json;

  fn policy(v: Value) -> Policy {
    Policy::from_json(&v).unwrap()
  }

  fn err(v: Value) -> String {
    let e = Policy::from_json(&v).unwrap_err();
    assert_eq!(e.code(), "ERR_INVALID_OPTIONS");
    e.to_string()
  }

  /// A random source that always answers `r`.
  fn fixed(r: f64) -> impl FnMut() -> f64 {
    move || r
  }

  fn close(s: &mut Supervisor, code: Option<u32>, now: f64, r: f64) -> Decision {
    s.begin();
    s.failed(Reason::of_close(code, None), None, now, &mut fixed(r))
  }

  #[test]
  fn default_rules_follow_the_table() {
    let p = Policy::default();
    assert_eq!(p.rule(Reason::RestartRequired), Rule::Now);
    for r in [
      Reason::ConnectionClosed,
      Reason::ConnectionLost,
      Reason::TimedOut,
      Reason::UnavailableService,
      Reason::BadSession,
      Reason::Unknown,
      Reason::MakeSocketFailed,
    ] {
      assert_eq!(p.rule(r), Rule::Backoff(Backoff::DEFAULT), "{r:?}");
    }
    for r in [
      Reason::LoggedOut,
      Reason::Forbidden,
      Reason::MultideviceMismatch,
      Reason::ConnectionReplaced,
    ] {
      assert_eq!(p.rule(r), Rule::Stop, "{r:?}");
    }
    assert_eq!(p.max_attempts, Some(10));
    assert_eq!(p.stable_after_ms, 30_000.0);
  }

  #[test]
  fn close_codes_name_their_reason() {
    assert_eq!(Reason::of_close(Some(515), None), Reason::RestartRequired);
    assert_eq!(Reason::of_close(Some(428), None), Reason::ConnectionClosed);
    assert_eq!(
      Reason::of_close(Some(408), Some("Timed Out")),
      Reason::TimedOut
    );
    assert_eq!(
      Reason::of_close(Some(408), Some("WebSocket Error")),
      Reason::ConnectionLost
    );
    assert_eq!(Reason::of_close(Some(401), None), Reason::LoggedOut);
    assert_eq!(Reason::of_close(Some(403), None), Reason::Forbidden);
    assert_eq!(
      Reason::of_close(Some(411), None),
      Reason::MultideviceMismatch
    );
    assert_eq!(
      Reason::of_close(Some(440), None),
      Reason::ConnectionReplaced
    );
    assert_eq!(Reason::of_close(Some(500), None), Reason::BadSession);
    assert_eq!(
      Reason::of_close(Some(503), None),
      Reason::UnavailableService
    );
    assert_eq!(Reason::of_close(Some(999), None), Reason::Unknown);
    assert_eq!(
      Reason::of_close(None, Some("invalid wire")),
      Reason::Unknown
    );
    for r in Reason::ALL {
      assert_eq!(Reason::parse(r.as_str()), Some(r));
    }
  }

  #[test]
  fn backoff_grows_to_its_cap_with_full_jitter() {
    let b = Backoff {
      base_ms: 100.0,
      factor: 2.0,
      max_ms: 1000.0,
      jitter: true,
    };
    let ceilings: Vec<f64> = (1..=6).map(|n| b.ceiling(n)).collect();
    assert_eq!(ceilings, [100.0, 200.0, 400.0, 800.0, 1000.0, 1000.0]);
    assert_eq!(b.ceiling(u32::MAX), 1000.0);
    assert_eq!(b.delay(3, 0.0), 0.0);
    assert_eq!(b.delay(3, 0.5), 200.0);
    assert_eq!(b.delay(3, 0.999_999), 399.0);
    // Out-of-range randoms are clamped, never above the ceiling.
    assert_eq!(b.delay(1, 7.0), 100.0);
    let exact = Backoff { jitter: false, ..b };
    assert_eq!(exact.delay(3, 0.0), 400.0);
    assert_eq!(
      policy(json!({ "backoff": { "jitter": "none" } })).backoff,
      Backoff {
        jitter: false,
        ..Backoff::DEFAULT
      }
    );
    assert!(err(json!({ "backoff": { "jitter": true } })).contains("'full' or 'none', got true"));
  }

  #[test]
  fn each_failure_backs_off_further_and_gives_up_at_max_attempts() {
    let p =
      policy(json!({ "backoff": { "baseMs": 100, "factor": 2, "maxMs": 300 }, "maxAttempts": 4 }));
    let mut s = Supervisor::new(p);
    assert_eq!(s.begin(), 1);
    let d: Vec<Decision> = (0..3)
      .map(|i| close(&mut s, Some(428), f64::from(i), 0.5))
      .collect();
    assert_eq!(
      d,
      [
        Decision::Retry {
          attempt: 2,
          delay_ms: 50.0
        },
        Decision::Retry {
          attempt: 3,
          delay_ms: 100.0
        },
        Decision::Retry {
          attempt: 4,
          delay_ms: 150.0
        },
      ]
    );
    assert_eq!(s.snapshot().next_attempt_at, Some(152.0));
    assert_eq!(s.phase(), Phase::Waiting);
    assert_eq!(close(&mut s, Some(428), 5.0, 0.5), Decision::GiveUp);
    assert_eq!(s.phase(), Phase::GaveUp);
    let snap = s.snapshot();
    assert_eq!(
      (snap.attempt, snap.next_attempt_at, snap.reason.as_deref()),
      (4, None, Some("connectionClosed"))
    );
  }

  #[test]
  fn restart_required_reconnects_at_once_and_counts() {
    let mut s = Supervisor::new(policy(json!({ "maxAttempts": 2 })));
    s.begin();
    assert_eq!(
      s.failed(Reason::RestartRequired, None, 0.0, &mut fixed(0.9)),
      Decision::Retry {
        attempt: 2,
        delay_ms: 0.0
      }
    );
    // A server that answers every socket with 515 is still bounded by maxAttempts.
    assert_eq!(close(&mut s, Some(515), 1.0, 0.9), Decision::GiveUp);
  }

  #[test]
  fn terminal_reasons_stop_before_max_attempts_counts() {
    for code in [401, 403, 411, 440] {
      let mut s = Supervisor::new(policy(json!({ "maxAttempts": 1 })));
      assert_eq!(
        close(&mut s, Some(code), 0.0, 0.5),
        Decision::Stop,
        "{code}"
      );
      assert_eq!(s.phase(), Phase::Stopped);
      assert!(!s.stop("stop"), "already stopped");
      assert_eq!(
        s.snapshot().reason,
        Some(Reason::of_close(Some(code), None).as_str().into())
      );
    }
  }

  #[test]
  fn replaced_can_back_off_with_its_own_parameters() {
    let p = policy(json!({
      "backoff": { "baseMs": 10 },
      "reasons": { "connectionReplaced": { "baseMs": 5000, "maxMs": 5000 }, "connectionClosed": "stop", "unknown": "now" }
    }));
    let own = Backoff {
      base_ms: 5000.0,
      factor: 2.0,
      max_ms: 5000.0,
      jitter: true,
    };
    assert_eq!(p.rule(Reason::ConnectionReplaced), Rule::Backoff(own));
    assert_eq!(p.rule(Reason::ConnectionClosed), Rule::Stop);
    assert_eq!(p.rule(Reason::Unknown), Rule::Now);
    assert_eq!(
      p.rule(Reason::TimedOut),
      Rule::Backoff(Backoff {
        base_ms: 10.0,
        factor: 2.0,
        max_ms: 60_000.0,
        jitter: true,
      })
    );
    let mut s = Supervisor::new(p);
    assert_eq!(
      close(&mut s, Some(440), 0.0, 0.5),
      Decision::Retry {
        attempt: 2,
        delay_ms: 2500.0
      }
    );
  }

  #[test]
  fn a_stable_open_resets_the_count() {
    let p = policy(
      json!({ "backoff": { "baseMs": 100, "maxMs": 10000 }, "stableAfterMs": 1000, "maxAttempts": 3 }),
    );
    let mut s = Supervisor::new(p);
    s.begin();
    s.opened(0.0);
    // Open 999 ms: not stable, counts.
    assert_eq!(
      s.failed(Reason::ConnectionClosed, None, 999.0, &mut fixed(0.5)),
      Decision::Retry {
        attempt: 2,
        delay_ms: 50.0
      }
    );
    s.begin();
    s.opened(2000.0);
    // Open 1000 ms: stable, the count starts again: the next socket is attempt 1.
    assert_eq!(
      s.failed(Reason::ConnectionClosed, None, 3000.0, &mut fixed(0.5)),
      Decision::Retry {
        attempt: 1,
        delay_ms: 50.0
      }
    );
    assert_eq!(
      close(&mut s, Some(428), 4000.0, 0.5),
      Decision::Retry {
        attempt: 2,
        delay_ms: 50.0
      }
    );
    assert_eq!(
      close(&mut s, Some(428), 4500.0, 0.5),
      Decision::Retry {
        attempt: 3,
        delay_ms: 100.0
      }
    );
    assert_eq!(close(&mut s, Some(428), 5000.0, 0.5), Decision::GiveUp);
    // restart() starts a fresh run, even after giving up.
    s.restart();
    assert!(s.is_live());
    assert_eq!(s.begin(), 1);
  }

  #[test]
  fn make_socket_failures_record_their_error() {
    let mut s = Supervisor::new(Policy::default());
    s.begin();
    let d = s.failed(
      Reason::MakeSocketFailed,
      Some("no creds".into()),
      0.0,
      &mut fixed(0.0),
    );
    assert_eq!(
      d,
      Decision::Retry {
        attempt: 2,
        delay_ms: 0.0
      }
    );
    let snap = s.snapshot();
    assert_eq!(
      (snap.reason.as_deref(), snap.error.as_deref()),
      (Some("makeSocketFailed"), Some("no creds"))
    );
  }

  #[test]
  fn stop_is_idempotent() {
    let mut s = Supervisor::new(Policy::default());
    s.begin();
    assert!(s.stop("stop"));
    assert!(!s.stop("clearAll"));
    assert_eq!(s.snapshot().reason.as_deref(), Some("stop"));
    assert_eq!(s.phase(), Phase::Stopped);
  }

  #[test]
  fn infinite_attempts_never_give_up() {
    let mut s = Supervisor::new(policy(
      json!({ "maxAttempts": "Infinity", "backoff": { "baseMs": 1, "maxMs": 1 } }),
    ));
    for i in 0..1000 {
      assert!(matches!(
        close(&mut s, Some(428), f64::from(i), 0.5),
        Decision::Retry { .. }
      ));
    }
  }

  #[test]
  fn user_policies_are_validated() {
    assert_eq!(Policy::from_json(&Value::Null).unwrap(), Policy::default());
    assert_eq!(policy(json!({})), Policy::default());
    assert!(err(json!(5)).contains("policy must be an object, got 5"));
    assert!(err(json!({ "maxAttempt": 3 })).contains("unknown key 'maxAttempt'"));
    assert!(err(json!({ "maxAttempts": 0 })).contains("positive integer or Infinity, got 0"));
    assert!(err(json!({ "maxAttempts": 1.5 })).contains("got 1.5"));
    assert!(err(json!({ "maxAttempts": "NaN" })).contains("got 'NaN'"));
    assert!(err(json!({ "backoff": { "baseMs": 0 } })).contains("policy.backoff.baseMs"));
    assert!(err(json!({ "backoff": { "baseMs": 1e12 } })).contains("policy.backoff.baseMs"));
    assert!(err(json!({ "backoff": { "factor": 0.5 } })).contains("policy.backoff.factor"));
    assert!(err(json!({ "backoff": { "baseMs": 500, "maxMs": 100 } }))
      .contains("must not be below baseMs"));
    assert!(
      err(json!({ "backoff": [] })).contains("policy.backoff must be an object, got an array")
    );
    assert!(err(json!({ "stableAfterMs": -1 })).contains("policy.stableAfterMs"));
    assert!(err(json!({ "reasons": { "loggedout": "stop" } })).contains("unknown key 'loggedout'"));
    assert!(err(json!({ "reasons": { "loggedOut": "retry" } }))
      .contains("policy.reasons.loggedOut must be"));
    assert!(err(json!({ "reasons": { "timedOut": { "baseMs": "1" } } }))
      .contains("policy.reasons.timedOut.baseMs must be a number"));
    // A base above the default maximum raises the maximum with it.
    assert_eq!(
      policy(json!({ "backoff": { "baseMs": 120000 } }))
        .backoff
        .max_ms,
      120_000.0
    );
  }

  #[test]
  fn jitter_is_uniform_enough_and_in_range() {
    let mut j = Jitter::new(42);
    let draws: Vec<f64> = (0..10_000).map(|_| j.draw()).collect();
    assert!(draws.iter().all(|r| (0.0..1.0).contains(r)));
    let mean = draws.iter().sum::<f64>() / draws.len() as f64;
    assert!((mean - 0.5).abs() < 0.02, "{mean}");
    assert_ne!(Jitter::new(1).draw(), Jitter::new(2).draw());
  }
}
