//! The cluster engine of `baileys-socket-registry`: one owner per session across processes and
//! machines, on Redis. Plain Rust with tokio; the binding turns it into `connectCluster`.
//!
//! - Leases: [`Cluster::claim`] takes a session's lease (set-if-absent with an expiry) and a
//!   fencing token that grows with every new owner; a keeper task renews it.
//! - Never two owners: the keeper measures with a monotonic clock and reports
//!   [`Notice::LeaseLost`] a safety margin before the lease could expire in Redis when it cannot
//!   renew, or as soon as a renewal finds another owner. Every write carries the token and is
//!   refused by script when it is stale.
//! - The fleet view: node heartbeats, a batched state mirror, [`Cluster::where_is`],
//!   [`Cluster::fleet`], and [`ClusterEvent`]s over pub/sub.
//!
//! The key layout is in `keys.rs` and the Lua scripts in `scripts.rs`: every script touches the
//! keys of one session only, all sharing the `{s:<id>}` hash tag, so the layout works on Redis
//! Cluster too (tested on a single server).
//!
//! Assumptions: each node's monotonic clock and the Redis server's clock run at nearly the same
//! rate (the safety margin, `leaseMs / 5` by default, absorbs the difference and scheduling
//! delays); the Redis server's wall clock does not step back across a restart (tokens after a
//! restart that lost the data are floored at its time in microseconds).

#![warn(missing_docs)]

mod cluster;
mod keys;
mod options;
mod scripts;

pub use cluster::{
  ClaimOptions, Cluster, ClusterEvent, Fleet, Lease, LostReason, MirrorCounters, NodeInfo, Notice,
  Placement, SessionRow,
};
pub use options::ClusterOptions;
pub use registry_core::errors::RegistryError;
