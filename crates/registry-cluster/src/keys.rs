//! Key names. Every key of one session carries the hash tag `{s:<id>}` and every key of one node
//! the tag `{n:<id>}`, so on Redis Cluster a script only ever touches one slot.

/// The key names under one prefix.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
  prefix: String,
}

impl Keys {
  pub fn new(prefix: &str) -> Self {
    Self {
      prefix: prefix.to_owned(),
    }
  }
  /// Hash `node`, `token`, `since`, `takeover`; expires after leaseMs without renewal.
  pub fn lease(&self, session: &str) -> String {
    format!("{}:{{s:{session}}}:lease", self.prefix)
  }
  /// The last fencing token issued for the session (never expires).
  pub fn fence(&self, session: &str) -> String {
    format!("{}:{{s:{session}}}:fence", self.prefix)
  }
  /// Hash `node`, `token`, `state` (JSON), `updated`; expires with the lease.
  pub fn state(&self, session: &str) -> String {
    format!("{}:{{s:{session}}}:state", self.prefix)
  }
  /// The node's heartbeat (JSON); expires after leaseMs without a beat.
  pub fn node(&self, node: &str) -> String {
    format!("{}:{{n:{node}}}:alive", self.prefix)
  }
  /// Set of the session ids the node holds; expires with the heartbeat.
  pub fn node_sessions(&self, node: &str) -> String {
    format!("{}:{{n:{node}}}:sessions", self.prefix)
  }
  /// Sorted set of node ids by last beat (ms); dead entries are pruned by readers.
  pub fn nodes(&self) -> String {
    format!("{}:nodes", self.prefix)
  }
  /// When this Redis first saw the cluster (server time, ms): written once, never expires, so
  /// its absence means the data was lost (or this is the first start).
  pub fn epoch(&self) -> String {
    format!("{}:epoch", self.prefix)
  }
  /// The pub/sub channel of cluster events.
  pub fn channel(&self) -> String {
    format!("{}:events", self.prefix)
  }
}
