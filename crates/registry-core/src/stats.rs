//! `getStats()`: one pass over the process-wide table, in plain Rust.

use crate::state::{SessionState, Status};
use crate::table;

/// One row of `activeSessions`.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionSummary {
  pub session_id: String,
  pub created_at: f64,
  pub last_activity: f64,
  pub is_connected: bool,
  pub error: Option<String>,
  pub idle: bool,
  pub status: Option<Status>,
}

/// Counts per status; index `Status::ALL.len()` counts untracked sessions (no status).
pub type StatusCounts = [usize; Status::ALL.len() + 1];

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
  pub sessions: Vec<SessionSummary>,
  pub by_status: StatusCounts,
}

pub fn status_index(status: Option<Status>) -> usize {
  status.map_or(Status::ALL.len(), Status::index)
}

fn summary(id: &str, s: &SessionState, now: f64, idle_after_ms: f64) -> SessionSummary {
  SessionSummary {
    session_id: id.to_owned(),
    created_at: s.created_at,
    last_activity: s.last_activity(),
    is_connected: s.is_connected,
    error: s.error().map(str::to_owned),
    idle: s.is_idle(now, idle_after_ms),
    status: s.status,
  }
}

/// Every session of the process, in registration order, with what `getStats` reports.
pub fn collect(now: f64, idle_after_ms: f64) -> Stats {
  let mut rows: Vec<(u64, SessionSummary)> = Vec::with_capacity(table::len());
  let mut by_status = StatusCounts::default();
  table::for_each(|id, r, _| {
    by_status[status_index(r.state.status)] += 1;
    rows.push((r.seq(), summary(id, &r.state, now, idle_after_ms)));
  });
  rows.sort_unstable_by_key(|r| r.0);
  Stats {
    sessions: rows.into_iter().map(|r| r.1).collect(),
    by_status,
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::state::StatePatch;

  #[test]
  fn stats_follow_the_table() {
    let _g = crate::table::tests::SERIAL.lock().unwrap();
    crate::table::clear_for_tests();
    for (i, id) in ["b", "a", "c"].iter().enumerate() {
      table::register(id, 1, 0, i != 2, false, 1000.0).unwrap();
    }
    table::update(
      "a",
      None,
      || false,
      |r| {
        let p = StatePatch {
          is_connected: Some(true),
          error: Some(Some("boom".into())),
          ..Default::default()
        };
        ((), Some(r.state.apply_patch(p, 5000.0)))
      },
    );
    let stats = collect(6000.0, 2000.0);
    let ids: Vec<_> = stats
      .sessions
      .iter()
      .map(|s| s.session_id.as_str())
      .collect();
    assert_eq!(ids, ["b", "a", "c"], "registration order");
    assert!(stats.sessions[1].is_connected);
    assert_eq!(stats.sessions[1].error.as_deref(), Some("boom"));
    assert_eq!(stats.sessions.iter().filter(|s| s.idle).count(), 2);
    assert_eq!(stats.by_status[status_index(Some(Status::Connecting))], 2);
    assert_eq!(stats.by_status[status_index(None)], 1);
  }
}
