#![deny(clippy::all)]
//! baileys-socket-registry: a native registry for the Baileys sockets of a multi-session bot.
//!
//! The logic lives in the plain-Rust core crate, `registry_core` (crates/registry-core:
//! states, the process-wide table, statistics, snapshots, configuration, errors), tested by
//! `cargo test` without Node. The modules here (`api`, `convert`, `tracking`, `health`,
//! `events`, `handles`, `channel`, `promise`, `js`) only convert and call.

mod api;
mod channel;
mod convert;
mod events;
mod fast;
mod handles;
mod health;
mod js;
mod promise;
mod session_state;
mod tracking;
mod types;
