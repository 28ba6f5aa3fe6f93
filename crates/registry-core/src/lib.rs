//! The session registry of `baileys-socket-registry`, in plain Rust: no Node-API here, so every
//! rule is tested by `cargo test` without Node.
//!
//! - [`state`]: a session's state, its statuses and the rules that change it.
//! - [`table`]: the process-wide session table (generations, owners).
//! - [`versions`]: per-session change counters that JavaScript threads read directly.
//! - [`layout`]: the state's fields as JavaScript receives them, declared once.
//! - [`update`]: the rules of `updateSessionState`'s argument, and its JSON form.
//! - [`stats`]: `getStats` / `getAllSessions` data in one pass over the table.
//! - [`snapshot`]: versioned JSON snapshots, written atomically.
//! - [`supervise`]: supervised sessions: the reconnect policy and its decisions.
//! - [`config`]: process-wide thresholds.
//! - [`errors`]: every error, with its stable `ERR_*` code.

pub mod config;
pub mod errors;
pub mod layout;
pub mod snapshot;
pub mod state;
pub mod stats;
pub mod supervise;
pub mod table;
pub mod update;
pub mod versions;
