//! The session registry of `baileys-socket-registry`, in plain Rust: no Node-API here, so every
//! rule is tested by `cargo test` without Node.
//!
//! - [`state`]: a session's state, its statuses and the rules that change it.
//! - [`table`]: the process-wide session table (generations, owners).
//! - [`stats`]: `getStats` / `getAllSessions` data in one pass over the table.
//! - [`snapshot`]: versioned JSON snapshots, written atomically.
//! - [`config`]: process-wide thresholds.
//! - [`errors`]: every error, with its stable `ERR_*` code.

pub mod config;
pub mod errors;
pub mod snapshot;
pub mod state;
pub mod stats;
pub mod table;
