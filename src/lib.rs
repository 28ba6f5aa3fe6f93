#![deny(clippy::all)]
//! baileys-socket-registry: a native registry for the Baileys sockets of a multi-session bot.
//!
//! The logic lives in the plain-Rust core crate, `registry_core` (crates/registry-core:
//! states, the process-wide table, statistics, snapshots, configuration, errors), tested by
//! `cargo test` without Node. The modules here (`api`, `sockets`, `convert`, `tracking`,
//! `events`, `handles`, `supervise`, `cluster`, `channel`, `promise`, `js`) only convert and
//! call; this thread's sockets live in a JavaScript `Map` in index.js.

mod api;
mod channel;
mod cluster;
mod convert;
mod events;
mod fast;
mod handles;
mod js;
mod promise;
mod session_state;
mod sockets;
mod supervise;
mod tracking;
mod types;
