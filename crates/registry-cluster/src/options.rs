//! What `connectCluster` accepts, validated once.

use std::time::Duration;

use registry_core::errors::RegistryError;

/// Options of a cluster connection.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
  /// `redis://[user:password@]host:port[/db]` (or `rediss://` is not built in this phase).
  pub url: String,
  /// This node's name in the cluster: unique per process; 1..=128 chars, no `{` or `}`.
  pub node_id: String,
  /// How long a lease lives in Redis without renewal.
  pub lease_ms: u64,
  /// Prefix of every key and of the events channel (no `{` or `}`).
  pub prefix: String,
  /// The longest any single Redis call may take before it fails with `ERR_CLUSTER_UNAVAILABLE`.
  pub op_timeout_ms: u64,
  /// Renew every held lease this often; default `lease_ms / 3`.
  pub renew_every_ms: Option<u64>,
  /// A lease is treated as lost this long before it could expire in Redis; default `lease_ms / 5`.
  pub safety_margin_ms: Option<u64>,
  /// How long state mirror writes are gathered before one batch goes out.
  pub mirror_flush_ms: u64,
  /// After Redis lost its data, sessions it no longer knows can be claimed only after this long,
  /// so that their old owners can re-assert their leases first; default `lease_ms`. `Some(0)`
  /// turns it off (then a restart without persistence may briefly give a session two owners).
  pub data_loss_grace_ms: Option<u64>,
}

impl Default for ClusterOptions {
  fn default() -> Self {
    Self {
      url: "redis://127.0.0.1:6379".into(),
      node_id: String::new(),
      lease_ms: 15_000,
      prefix: "bsr".into(),
      op_timeout_ms: 2_000,
      renew_every_ms: None,
      safety_margin_ms: None,
      mirror_flush_ms: 20,
      data_loss_grace_ms: None,
    }
  }
}

/// The options turned into durations, after validation.
#[derive(Clone, Debug)]
pub(crate) struct Timing {
  pub lease: Duration,
  pub renew_every: Duration,
  pub margin: Duration,
  pub op_timeout: Duration,
  pub mirror_flush: Duration,
  pub grace: Duration,
}

fn bad(msg: String) -> RegistryError {
  RegistryError::ClusterOptions(msg)
}

fn check_name(what: &str, value: &str) -> Result<(), RegistryError> {
  if value.is_empty() || value.len() > 128 || value.contains(['{', '}']) {
    return Err(bad(format!(
      "cluster {what} must be 1 to 128 characters without '{{' or '}}', got {value:?}"
    )));
  }
  Ok(())
}

impl ClusterOptions {
  pub(crate) fn timing(&self) -> Result<Timing, RegistryError> {
    check_name("nodeId", &self.node_id)?;
    check_name("prefix", &self.prefix)?;
    if !(300..=3_600_000).contains(&self.lease_ms) {
      return Err(bad(format!(
        "leaseMs must be between 300 and 3600000, got {}",
        self.lease_ms
      )));
    }
    let lease = self.lease_ms;
    let renew = self.renew_every_ms.unwrap_or(lease / 3);
    let margin = self.safety_margin_ms.unwrap_or(lease / 5);
    // A renewal must have time to go out and come back before the local deadline.
    if renew == 0 || margin == 0 || renew + margin >= lease {
      return Err(bad(format!(
        "renewEveryMs ({renew}) + safetyMarginMs ({margin}) must be positive and below leaseMs ({lease})"
      )));
    }
    if self.op_timeout_ms == 0 || self.op_timeout_ms > 60_000 {
      return Err(bad(format!(
        "opTimeoutMs must be between 1 and 60000, got {}",
        self.op_timeout_ms
      )));
    }
    Ok(Timing {
      lease: Duration::from_millis(lease),
      renew_every: Duration::from_millis(renew),
      margin: Duration::from_millis(margin),
      op_timeout: Duration::from_millis(self.op_timeout_ms),
      mirror_flush: Duration::from_millis(self.mirror_flush_ms),
      grace: Duration::from_millis(self.data_loss_grace_ms.unwrap_or(lease)),
    })
  }

  /// The URL without its password, for error messages.
  pub(crate) fn redacted_url(&self) -> String {
    match (self.url.find("://"), self.url.rfind('@')) {
      (Some(scheme), Some(at)) if at > scheme => {
        format!("{}://***@{}", &self.url[..scheme], &self.url[at + 1..])
      }
      _ => self.url.clone(),
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn opts() -> ClusterOptions {
    ClusterOptions {
      node_id: "a".into(),
      ..Default::default()
    }
  }

  #[test]
  fn defaults_renew_at_a_third_and_keep_a_fifth_as_margin() {
    let t = opts().timing().unwrap();
    assert_eq!(t.renew_every, Duration::from_millis(5_000));
    assert_eq!(t.margin, Duration::from_millis(3_000));
  }

  #[test]
  fn rejects_bad_names_and_timings() {
    for o in [
      ClusterOptions {
        node_id: String::new(),
        ..opts()
      },
      ClusterOptions {
        node_id: "a{b}".into(),
        ..opts()
      },
      ClusterOptions {
        lease_ms: 10,
        ..opts()
      },
      ClusterOptions {
        renew_every_ms: Some(10_000),
        safety_margin_ms: Some(5_000),
        ..opts()
      },
    ] {
      assert_eq!(o.timing().unwrap_err().code(), "ERR_CLUSTER_OPTIONS");
    }
  }

  #[test]
  fn redacts_the_password() {
    let o = ClusterOptions {
      url: "redis://user:secret@127.0.0.1:6379/0".into(),
      ..opts()
    };
    assert_eq!(o.redacted_url(), "redis://***@127.0.0.1:6379/0");
  }
}
