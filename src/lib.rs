#![deny(clippy::all)]
//! baileys-socket-registry: a native registry for the Baileys sockets of a multi-session bot.
//!
//! Plain-Rust modules (`state`, `table`, `stats`, `snapshot`, `config`, `errors`) hold the
//! logic and have their own `cargo test`; the JS-facing modules (`api`, `convert`,
//! `tracking`, `health`, `events`, `handles`, `channel`, `promise`, `js`) only convert and call.

pub mod config;
pub mod errors;
pub mod snapshot;
pub mod state;
pub mod stats;
pub mod table;

mod api;
mod channel;
mod convert;
mod events;
mod fast;
mod handles;
mod health;
mod js;
mod promise;
mod tracking;
mod types;
