//! Every error the registry reports, with its stable `code`.
//!
//! The codes are part of the public API: a bot matches on `err.code`, never on the message.
//! The binding crate turns a [`RegistryError`] into a JS `Error` (or `TypeError` when the
//! caller passed a value of the wrong type) in one place, `js::throw_registry_error`.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
  /// The session id is not a non-empty string.
  #[error("{0}")]
  InvalidSessionId(String),
  /// The socket is not an object.
  #[error("{0}")]
  InvalidSocket(String),
  /// An options object (register, configure, waitForState) is malformed.
  #[error("{0}")]
  InvalidOptions(String),
  /// `updateSessionState` got something other than a plain object.
  #[error("{0}")]
  InvalidStateUpdate(String),
  /// A value in a state update has the wrong type for its key, or cannot be stored as data.
  #[error("{0}")]
  InvalidStateValue(String),
  /// A key that could change an object's prototype (`__proto__`, `constructor`, `prototype`).
  #[error("{0}")]
  ForbiddenStateKey(String),
  /// A key only the registry itself may set (`threadId`, `connects`, ...).
  #[error("{0}")]
  ReadOnlyStateKey(String),
  /// A state update over one of the limits on size and depth (`state::limits`).
  #[error("{0}")]
  StateTooLarge(String),
  /// Another thread owns the session and `takeover` was not asked for.
  #[error("session '{session_id}' is owned by thread {thread_id}; pass {{ takeover: true }} to move it to this thread")]
  SessionOwnedByOtherThread { session_id: String, thread_id: u32 },
  /// `createSocketWrapper`'s function was called without `config.sessionId`.
  #[error("{0}")]
  MissingSessionId(String),
  /// `makeWASocket` passed to `createSocketWrapper` is not a function.
  #[error("{0}")]
  InvalidFactory(String),
  /// `onStateChange` got something other than a function.
  #[error("{0}")]
  InvalidListener(String),
  /// The session does not exist.
  #[error("no session registered under '{0}'")]
  SessionNotFound(String),
  /// `waitForState` ran out of time.
  #[error("session '{session_id}' did not reach status '{status}' within {timeout_ms} ms")]
  WaitTimeout {
    session_id: String,
    status: String,
    timeout_ms: u64,
  },
  /// The session was removed while `waitForState` was waiting on it.
  #[error("session '{0}' was removed while waiting for it")]
  SessionRemoved(String),
  /// The session reached a status from which the awaited one cannot follow.
  #[error(
    "session '{session_id}' reached status '{reached}', from which '{wanted}' cannot follow"
  )]
  StateUnreachable {
    session_id: String,
    wanted: String,
    reached: String,
  },
  /// The snapshot file does not exist.
  #[error("{0}")]
  SnapshotNotFound(String),
  /// A snapshot file could not be read or written, or is not a regular file.
  #[error("{0}")]
  SnapshotIo(String),
  /// A snapshot file is not valid JSON of the expected shape.
  #[error("{0}")]
  SnapshotCorrupt(String),
  /// A snapshot file has a `version` this build does not know.
  #[error("{0}")]
  SnapshotVersion(String),
  /// A snapshot is larger than [`crate::snapshot::MAX_SNAPSHOT_BYTES`].
  #[error("{0}")]
  SnapshotTooLarge(String),
  /// The cluster options are malformed (URL, node id, lease length).
  #[error("{0}")]
  ClusterOptions(String),
  /// The first connection to Redis failed: unreachable, refused, wrong password, or the server
  /// does not speak the Redis protocol.
  #[error("{0}")]
  ClusterConnect(String),
  /// Redis did not answer in time or the connection is down; the call was not waited out.
  #[error("{0}")]
  ClusterUnavailable(String),
  /// Another live node holds the session's lease (the JS error names it in `owner`).
  #[error("session '{session_id}' is held by node '{node_id}'; pass {{ waitMs }} to wait for it or {{ takeover: true }} to ask for it")]
  ClusterHeld { session_id: String, node_id: String },
  /// `claim` with `waitMs` or `takeover` ran out of time before the owner let go.
  #[error("session '{session_id}' was still owned by node '{node_id}' after {wait_ms} ms")]
  ClusterClaimTimeout {
    session_id: String,
    node_id: String,
    wait_ms: u64,
  },
  /// This node does not hold the session's lease (never claimed, released, or lost).
  #[error("this node does not hold the lease of session '{0}'; claim it first (cluster.claim)")]
  ClusterNotHeld(String),
  /// The cluster connection was closed.
  #[error("the cluster connection is closed")]
  ClusterClosed,
  /// `connectCluster` while this process already has a cluster connection (or one is being
  /// made): one per process, shared by every thread.
  #[error("this process is already connected to a cluster (close it first)")]
  ClusterAlreadyConnected,
  /// Redis lost its data (a restart without persistence) less than `leaseMs` ago: a session it
  /// forgot may still run on its old owner, which has until then to re-assert its lease.
  #[error("Redis lost its data less than a lease ago; session '{session_id}' can be claimed in {retry_ms} ms unless its owner re-asserts it (pass {{ waitMs }} to wait)")]
  ClusterRecovering { session_id: String, retry_ms: u64 },
  /// `registerSocket` (or a socket wrapper) for a session that `superviseSession` supervises
  /// in this thread, or `superviseSession` for one it already supervises.
  #[error("{0}")]
  SessionSupervised(String),
  /// A Node-API call failed where it should not (a bug, or the environment is shutting down).
  #[error("{0}")]
  Internal(String),
}

impl RegistryError {
  /// The stable code put on the JS error as `err.code`.
  pub fn code(&self) -> &'static str {
    match self {
      Self::InvalidSessionId(_) => "ERR_INVALID_SESSION_ID",
      Self::InvalidSocket(_) => "ERR_INVALID_SOCKET",
      Self::InvalidOptions(_) => "ERR_INVALID_OPTIONS",
      Self::InvalidStateUpdate(_) => "ERR_INVALID_STATE_UPDATE",
      Self::InvalidStateValue(_) => "ERR_INVALID_STATE_VALUE",
      Self::ForbiddenStateKey(_) => "ERR_FORBIDDEN_STATE_KEY",
      Self::ReadOnlyStateKey(_) => "ERR_READ_ONLY_STATE_KEY",
      Self::StateTooLarge(_) => "ERR_STATE_TOO_LARGE",
      Self::SessionOwnedByOtherThread { .. } => "ERR_SESSION_OWNED_BY_OTHER_THREAD",
      Self::MissingSessionId(_) => "ERR_MISSING_SESSION_ID",
      Self::InvalidFactory(_) => "ERR_INVALID_FACTORY",
      Self::InvalidListener(_) => "ERR_INVALID_LISTENER",
      Self::SessionNotFound(_) => "ERR_SESSION_NOT_FOUND",
      Self::WaitTimeout { .. } => "ERR_WAIT_TIMEOUT",
      Self::SessionRemoved(_) => "ERR_SESSION_REMOVED",
      Self::StateUnreachable { .. } => "ERR_STATE_UNREACHABLE",
      Self::SnapshotNotFound(_) => "ERR_SNAPSHOT_NOT_FOUND",
      Self::SnapshotIo(_) => "ERR_SNAPSHOT_IO",
      Self::SnapshotCorrupt(_) => "ERR_SNAPSHOT_CORRUPT",
      Self::SnapshotVersion(_) => "ERR_SNAPSHOT_VERSION",
      Self::SnapshotTooLarge(_) => "ERR_SNAPSHOT_TOO_LARGE",
      Self::ClusterOptions(_) => "ERR_CLUSTER_OPTIONS",
      Self::ClusterConnect(_) => "ERR_CLUSTER_CONNECT",
      Self::ClusterUnavailable(_) => "ERR_CLUSTER_UNAVAILABLE",
      Self::ClusterHeld { .. } => "ERR_CLUSTER_HELD",
      Self::ClusterClaimTimeout { .. } => "ERR_CLUSTER_CLAIM_TIMEOUT",
      Self::ClusterNotHeld(_) => "ERR_CLUSTER_NOT_HELD",
      Self::ClusterClosed => "ERR_CLUSTER_CLOSED",
      Self::ClusterAlreadyConnected => "ERR_CLUSTER_ALREADY_CONNECTED",
      Self::ClusterRecovering { .. } => "ERR_CLUSTER_RECOVERING",
      Self::SessionSupervised(_) => "ERR_SESSION_SUPERVISED",
      Self::Internal(_) => "ERR_INTERNAL",
    }
  }

  /// Whether JS should see a `TypeError`: the caller passed a value of the wrong type.
  pub fn is_type_error(&self) -> bool {
    matches!(
      self,
      Self::InvalidSessionId(_)
        | Self::InvalidSocket(_)
        | Self::InvalidOptions(_)
        | Self::InvalidStateUpdate(_)
        | Self::InvalidStateValue(_)
        | Self::ForbiddenStateKey(_)
        | Self::ReadOnlyStateKey(_)
        | Self::MissingSessionId(_)
        | Self::InvalidFactory(_)
        | Self::InvalidListener(_)
        | Self::ClusterOptions(_)
    )
  }

  /// Whether JS should see a `RangeError`: a value of the right type, but too big.
  pub fn is_range_error(&self) -> bool {
    matches!(self, Self::StateTooLarge(_))
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn codes_are_stable_and_prefixed() {
    let all = [
      RegistryError::InvalidSessionId(String::new()),
      RegistryError::InvalidSocket(String::new()),
      RegistryError::SessionNotFound("a".into()),
      RegistryError::SnapshotVersion(String::new()),
    ];
    for e in &all {
      assert!(e.code().starts_with("ERR_"), "{}", e.code());
    }
    assert_eq!(all[0].code(), "ERR_INVALID_SESSION_ID");
    assert!(all[0].is_type_error());
    assert!(!all[2].is_type_error());
    let big = RegistryError::StateTooLarge(String::new());
    assert_eq!(big.code(), "ERR_STATE_TOO_LARGE");
    assert!(big.is_range_error() && !big.is_type_error());
  }

  #[test]
  fn messages_name_the_session() {
    let e = RegistryError::SessionOwnedByOtherThread {
      session_id: "user_1".into(),
      thread_id: 3,
    };
    let text = e.to_string();
    assert!(text.contains("user_1") && text.contains("thread 3") && text.contains("takeover"));
  }
}
