//! The cluster connection: leases and their keepers, the state mirror, the node heartbeat, the
//! fleet view and the events subscriber.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::future::join_all;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncConnectionConfig, Client, ErrorKind, RedisError, RedisResult};
use registry_core::errors::RegistryError;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{broadcast, mpsc, watch, Mutex as AsyncMutex, Notify};
use tokio::task::JoinHandle;
use tokio::time::{sleep, sleep_until, timeout};

use crate::keys::Keys;
use crate::options::{ClusterOptions, Timing};
use crate::scripts::Scripts;

/// How `claim` behaves when another live node holds the session.
#[derive(Clone, Debug, Default)]
pub struct ClaimOptions {
  /// Wait up to this long for the owner to release (or its lease to expire), then claim.
  pub wait_ms: Option<u64>,
  /// Ask the owner to let go (it sees [`Notice::TakeoverRequested`]), then wait for it: up to
  /// `wait_ms`, or `leaseMs` when `wait_ms` is not given.
  pub takeover: bool,
}

/// A lease this node holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
  /// The session the lease is for.
  pub session_id: String,
  /// The fencing token: larger than every token issued to an earlier owner of this session.
  pub token: u64,
}

/// Why a lease was lost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LostReason {
  /// No renewal succeeded in time: the lease is given up a safety margin before it could expire.
  Unreachable,
  /// Redis shows another owner, or a newer token (another node claimed it first after a restart).
  Superseded {
    /// The node now holding it, if any.
    node_id: Option<String>,
    /// The token Redis holds now, if known.
    token: Option<u64>,
  },
}

impl LostReason {
  /// A short stable name: `unreachable` or `superseded`.
  pub fn as_str(&self) -> &'static str {
    match self {
      Self::Unreachable => "unreachable",
      Self::Superseded { .. } => "superseded",
    }
  }
}

/// What the keeper tells the binding about the leases this node holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
  /// The lease is gone: the binding must end the session's socket now. Sent once per lease,
  /// before the lease can expire in Redis.
  LeaseLost {
    /// The session.
    session_id: String,
    /// The token the lost lease had.
    token: u64,
    /// Why.
    reason: LostReason,
  },
  /// Another node asked for the session: the binding ends the socket and calls `release`.
  TakeoverRequested {
    /// The session.
    session_id: String,
    /// The token of the lease held here.
    token: u64,
    /// The node asking.
    by: String,
  },
  /// The lease had vanished from Redis (a restart that lost data) and was put back with the
  /// same token, since no other node had claimed it.
  Reasserted {
    /// The session.
    session_id: String,
    /// The token, unchanged.
    token: u64,
  },
}

/// A cluster-wide event, as published by the scripts on the `<prefix>:events` channel.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterEvent {
  /// `claimed`, `released`, `reasserted`, `takeoverRequested` or `state`.
  #[serde(rename = "type")]
  pub kind: String,
  /// The session.
  pub session_id: String,
  /// The node that owns (or owned) the session.
  pub node_id: String,
  /// The lease's fencing token, as a decimal string.
  #[serde(default)]
  pub token: Option<String>,
  /// For `takeoverRequested`: the node asking.
  #[serde(default)]
  pub by: Option<String>,
  /// For `state`: the mirrored state.
  #[serde(default)]
  pub state: Option<Value>,
}

/// Where a session runs, as Redis sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Placement {
  /// The owner.
  pub node_id: String,
  /// The owner's fencing token.
  pub token: u64,
  /// How long the lease lives without another renewal.
  pub lease_ttl_ms: i64,
  /// A node that asked for a takeover, if any.
  pub takeover_by: Option<String>,
  /// The last state the owner mirrored under this token, if any.
  pub state: Option<Value>,
  /// When that state was written (Redis server time, epoch ms).
  pub updated_ms: Option<u64>,
}

/// One live node of the fleet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
  /// The node's id.
  pub node_id: String,
  /// Sessions it holds.
  pub sessions: usize,
  /// Of those, sessions whose mirrored state says `isConnected`.
  pub connected: usize,
  /// Its last heartbeat (its own clock, epoch ms).
  pub last_seen_ms: u64,
}

/// One session of the fleet view.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionRow {
  /// The session.
  pub session_id: String,
  /// Where it runs.
  pub placement: Placement,
}

/// The whole fleet: live nodes and the sessions they hold.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fleet {
  /// Live nodes (heartbeat not expired), by id.
  pub nodes: Vec<NodeInfo>,
  /// Their sessions, by id.
  pub sessions: Vec<SessionRow>,
}

/// What the state mirror did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MirrorCounters {
  /// Writes Redis accepted.
  pub written: u64,
  /// Writes refused by the script (stale token) or dropped (lease no longer held here).
  pub refused: u64,
  /// Writes that failed (Redis unreachable); retried with the next batch.
  pub failed: u64,
}

struct Held {
  token: u64,
  /// Local deadline: the lease counts as held until then (monotonic clock).
  valid_until: Instant,
  takeover_by: Option<String>,
  keeper: JoinHandle<()>,
}

struct Inner {
  node_id: String,
  url: String,
  timing: Timing,
  keys: Keys,
  scripts: Scripts,
  conn: ConnectionManager,
  held: Mutex<HashMap<String, Held>>,
  notices: mpsc::UnboundedSender<Notice>,
  events: broadcast::Sender<ClusterEvent>,
  pending: Mutex<HashMap<String, String>>,
  mirror_wake: Notify,
  /// One batch at a time: `flush` waits for the batch the mirror loop has in flight.
  flushing: AsyncMutex<()>,
  shutdown: watch::Sender<bool>,
  closed: AtomicBool,
  written: AtomicU64,
  refused: AtomicU64,
  failed: AtomicU64,
  started_ms: u64,
}

/// A connection of this node to the cluster. Not `Clone`: the binding shares it in an `Arc`.
///
/// [`Cluster::close`] releases every lease; dropping it without `close` stops every task without
/// releasing, as a process that dies would (its leases expire after `leaseMs`).
pub struct Cluster {
  inner: Arc<Inner>,
}

fn epoch_ms() -> u64 {
  SystemTime::now()
    .duration_since(UNIX_EPOCH)
    .map(|d| d.as_millis() as u64)
    .unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
  // A panic while holding these locks leaves plain data behind: keep going with it.
  m.lock().unwrap_or_else(|e| e.into_inner())
}

fn parse_token(text: &str) -> Result<u64, RegistryError> {
  text
    .parse()
    .map_err(|_| RegistryError::Internal(format!("Redis returned a malformed token {text:?}")))
}

fn non_empty(s: String) -> Option<String> {
  (!s.is_empty()).then_some(s)
}

/// The first connection's failure, told plainly.
fn connect_error(url: &str, e: &RedisError) -> RegistryError {
  let text = if e.kind() == ErrorKind::AuthenticationFailed
    || matches!(e.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"))
  {
    format!("Redis at {url} refused the credentials (check the user and password in the URL): {e}")
  } else if e.kind() == ErrorKind::Parse {
    format!("the server at {url} does not speak the Redis protocol: {e}")
  } else if e.is_io_error() || e.is_connection_refusal() {
    format!("cannot connect to Redis at {url}: {e}")
  } else {
    format!("the first exchange with Redis at {url} failed: {e}")
  };
  RegistryError::ClusterConnect(text)
}

impl Cluster {
  /// Connects to Redis, checks that it answers as Redis within `opTimeoutMs`, announces this
  /// node and starts the heartbeat, the mirror and the events subscriber. The receiver gets the
  /// [`Notice`]s about this node's leases.
  pub async fn connect(
    opts: ClusterOptions,
  ) -> Result<(Cluster, mpsc::UnboundedReceiver<Notice>), RegistryError> {
    let timing = opts.timing()?;
    let url = opts.redacted_url();
    let client = Client::open(opts.url.as_str())
      .map_err(|e| RegistryError::ClusterOptions(format!("invalid Redis URL {url}: {e}")))?;
    let wait = timing.op_timeout;
    let probe_cfg = AsyncConnectionConfig::new()
      .set_connection_timeout(Some(wait))
      .set_response_timeout(Some(wait));
    let probe = async {
      let mut c = client
        .get_multiplexed_async_connection_with_config(&probe_cfg)
        .await?;
      redis::cmd("PING").query_async::<String>(&mut c).await
    };
    let no_answer = || {
      RegistryError::ClusterConnect(format!(
        "no Redis answer from {url} within {} ms (is a Redis server listening there?)",
        wait.as_millis()
      ))
    };
    match timeout(wait + Duration::from_millis(200), probe).await {
      Err(_) => return Err(no_answer()),
      Ok(Err(e)) if e.is_timeout() => return Err(no_answer()),
      Ok(Err(e)) => return Err(connect_error(&url, &e)),
      Ok(Ok(_)) => {}
    }
    let manager_cfg = ConnectionManagerConfig::new()
      .set_connection_timeout(Some(wait))
      .set_response_timeout(Some(wait))
      .set_min_delay(Duration::from_millis(50))
      .set_max_delay(Duration::from_secs(2))
      .set_number_of_retries(8);
    let conn = match timeout(
      wait + Duration::from_millis(200),
      ConnectionManager::new_with_config(client.clone(), manager_cfg),
    )
    .await
    {
      Err(_) => return Err(no_answer()),
      Ok(Err(e)) => return Err(connect_error(&url, &e)),
      Ok(Ok(c)) => c,
    };
    let (notices, notices_rx) = mpsc::unbounded_channel();
    let (events, _) = broadcast::channel(1024);
    let inner = Arc::new(Inner {
      node_id: opts.node_id.clone(),
      url,
      keys: Keys::new(&opts.prefix),
      timing,
      scripts: Scripts::new(),
      conn,
      held: Mutex::new(HashMap::new()),
      notices,
      events,
      pending: Mutex::new(HashMap::new()),
      mirror_wake: Notify::new(),
      flushing: AsyncMutex::new(()),
      shutdown: watch::channel(false).0,
      closed: AtomicBool::new(false),
      written: AtomicU64::new(0),
      refused: AtomicU64::new(0),
      failed: AtomicU64::new(0),
      started_ms: epoch_ms(),
    });
    inner.beat().await?;
    tokio::spawn(heartbeat(inner.clone()));
    tokio::spawn(mirror_loop(inner.clone()));
    let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(events_loop(inner.clone(), client, subscribed_tx));
    // Events published from now on reach the subscribers; bounded, since a failure to subscribe
    // only delays events, it does not stop the cluster.
    let _ = timeout(wait, subscribed_rx).await;
    Ok((Cluster { inner }, notices_rx))
  }

  /// This node's id.
  pub fn node_id(&self) -> &str {
    &self.inner.node_id
  }

  /// Takes the session's lease for this node and keeps renewing it until `release`, `close`, or
  /// the lease is lost ([`Notice::LeaseLost`]). Resolves at once when this node already holds it.
  /// When another live node holds it: rejects with `ERR_CLUSTER_HELD`, or with
  /// `wait_ms` / `takeover` waits (and asks) for it, then `ERR_CLUSTER_CLAIM_TIMEOUT`.
  pub async fn claim(&self, session_id: &str, opts: ClaimOptions) -> Result<Lease, RegistryError> {
    let inner = &self.inner;
    if session_id.is_empty() {
      return Err(RegistryError::InvalidSessionId(
        "the session id must be a non-empty string".into(),
      ));
    }
    if let Some(lease) = self.holding(session_id) {
      return Ok(lease);
    }
    let wait_ms = opts.wait_ms.or(
      opts
        .takeover
        .then_some(inner.timing.lease.as_millis() as u64),
    );
    let deadline = wait_ms.map(|ms| Instant::now() + Duration::from_millis(ms));
    let mut asked = false;
    let mut poll = Duration::from_millis(10);
    loop {
      let sent = Instant::now();
      let (code, token, owner, ttl) = inner.claim_once(session_id).await?;
      if code == 0 && owner == inner.node_id {
        // A concurrent claim of this process got it first.
        if let Some(lease) = self.holding(session_id) {
          return Ok(lease);
        }
      }
      if code == 1 {
        let token = parse_token(&token)?;
        inner.install(session_id, token, sent);
        let mut c = inner.conn.clone();
        // Membership in the node's set only feeds the fleet view; the heartbeat re-adds it.
        let _ = inner
          .op(
            "SADD",
            redis::cmd("SADD")
              .arg(inner.keys.node_sessions(&inner.node_id))
              .arg(session_id)
              .query_async::<()>(&mut c),
          )
          .await;
        return Ok(Lease {
          session_id: session_id.to_owned(),
          token,
        });
      }
      if code == 2 {
        let retry_ms = ttl.max(1) as u64;
        match deadline {
          Some(d) if Instant::now() < d => {
            sleep((d - Instant::now()).min(Duration::from_millis(retry_ms))).await;
            continue;
          }
          _ => {
            return Err(RegistryError::ClusterRecovering {
              session_id: session_id.to_owned(),
              retry_ms,
            })
          }
        }
      }
      if opts.takeover && !asked {
        inner.ask_takeover(session_id).await?;
        asked = true;
      }
      let Some(deadline) = deadline else {
        return Err(RegistryError::ClusterHeld {
          session_id: session_id.to_owned(),
          node_id: owner,
        });
      };
      let now = Instant::now();
      if now >= deadline {
        return Err(RegistryError::ClusterClaimTimeout {
          session_id: session_id.to_owned(),
          node_id: owner,
          wait_ms: wait_ms.unwrap_or(0),
        });
      }
      let ttl = Duration::from_millis(ttl.max(1) as u64);
      sleep(poll.min(deadline - now).min(ttl)).await;
      poll = (poll * 2).min(Duration::from_millis(100));
    }
  }

  /// The lease this node holds on the session, if its local deadline has not passed.
  pub fn holding(&self, session_id: &str) -> Option<Lease> {
    let held = lock(&self.inner.held);
    held
      .get(session_id)
      .filter(|h| h.valid_until > Instant::now())
      .map(|h| Lease {
        session_id: session_id.to_owned(),
        token: h.token,
      })
  }

  /// The session ids this node holds.
  pub fn held_sessions(&self) -> Vec<String> {
    lock(&self.inner.held).keys().cloned().collect()
  }

  /// Gives the lease up: stops its keeper at once, then deletes the lease and the mirrored state
  /// in Redis if the token still matches. `Ok(false)` when Redis no longer had it under this
  /// token. If Redis is unreachable the lease is still given up here and expires there.
  pub async fn release(&self, session_id: &str) -> Result<bool, RegistryError> {
    let token = self.let_go(session_id)?;
    self.release_lease(session_id, token).await
  }

  /// The synchronous half of [`Cluster::release`]: forgets the lease here at once (no longer
  /// [`Cluster::holding`], keeper stopped, queued mirror write dropped) and returns its token
  /// for [`Cluster::release_lease`]. Redis keeps the lease until then, so no other node can
  /// claim the session while the binding ends its socket.
  pub fn let_go(&self, session_id: &str) -> Result<u64, RegistryError> {
    let inner = &self.inner;
    let held = lock(&inner.held).remove(session_id);
    let Some(held) = held else {
      return Err(RegistryError::ClusterNotHeld(session_id.to_owned()));
    };
    held.keeper.abort();
    lock(&inner.pending).remove(session_id);
    Ok(held.token)
  }

  /// The second half of [`Cluster::release`]: deletes the lease and the mirrored state in Redis
  /// if they still carry `token`. `Ok(false)` when Redis no longer had it under this token.
  pub async fn release_lease(&self, session_id: &str, token: u64) -> Result<bool, RegistryError> {
    self.inner.release_in_redis(session_id, token).await
  }

  /// Queues the session's plain state (JSON) for the mirror; written in the next batch with the
  /// lease's token. Cheap: no Redis call here.
  pub fn mirror_state(&self, session_id: &str, state_json: String) -> Result<(), RegistryError> {
    let inner = &self.inner;
    if inner.closed.load(Ordering::Acquire) {
      return Err(RegistryError::ClusterClosed);
    }
    if self.holding(session_id).is_none() {
      return Err(RegistryError::ClusterNotHeld(session_id.to_owned()));
    }
    lock(&inner.pending).insert(session_id.to_owned(), state_json);
    inner.mirror_wake.notify_one();
    Ok(())
  }

  /// Writes the queued mirror states now and waits for them.
  pub async fn flush(&self) {
    self.inner.flush_pending().await;
  }

  /// One mirror write with an explicit token, as the batches do: `Ok(false)` when the script
  /// refuses it because this node does not hold the lease under `token`.
  pub async fn write_state(
    &self,
    session_id: &str,
    token: u64,
    state_json: &str,
  ) -> Result<bool, RegistryError> {
    self.inner.write_state(session_id, token, state_json).await
  }

  /// What the mirror did so far.
  pub fn mirror_counters(&self) -> MirrorCounters {
    let i = &self.inner;
    MirrorCounters {
      written: i.written.load(Ordering::Relaxed),
      refused: i.refused.load(Ordering::Relaxed),
      failed: i.failed.load(Ordering::Relaxed),
    }
  }

  /// Where the session runs, with its mirrored state; `None` when no node holds it.
  pub async fn where_is(&self, session_id: &str) -> Result<Option<Placement>, RegistryError> {
    self.inner.where_is(session_id).await
  }

  /// Every live node and the sessions it holds (dead nodes' entries are pruned on the way).
  pub async fn fleet(&self) -> Result<Fleet, RegistryError> {
    self.inner.fleet().await
  }

  /// Cluster-wide events from every node, from now on.
  pub fn events(&self) -> broadcast::Receiver<ClusterEvent> {
    self.inner.events.subscribe()
  }

  /// Flushes the mirror, releases every lease, removes this node from the view and stops its
  /// tasks. Bounded by `opTimeoutMs` per step; Redis errors are returned after everything was
  /// stopped anyway.
  pub async fn close(&self) -> Result<(), RegistryError> {
    let inner = &self.inner;
    if inner.closed.swap(true, Ordering::AcqRel) {
      return Ok(());
    }
    inner.flush_pending().await;
    let held: Vec<(String, Held)> = lock(&inner.held).drain().collect();
    let releases = held.into_iter().map(|(id, h)| {
      h.keeper.abort();
      async move { inner.release_in_redis(&id, h.token).await }
    });
    let released = join_all(releases).await;
    let mut c = inner.conn.clone();
    let gone = inner
      .op(
        "node removal",
        redis::pipe()
          .del(inner.keys.node(&inner.node_id))
          .del(inner.keys.node_sessions(&inner.node_id))
          .zrem(inner.keys.nodes(), &inner.node_id)
          .query_async::<()>(&mut c),
      )
      .await;
    inner.shutdown.send_replace(true);
    released.into_iter().find_map(|r| r.err()).map_or(gone, Err)
  }
}

impl Drop for Cluster {
  fn drop(&mut self) {
    // Like a process that dies: no release; the leases expire in Redis after leaseMs.
    self.inner.closed.store(true, Ordering::Release);
    self.inner.shutdown.send_replace(true);
    for (_, h) in lock(&self.inner.held).drain() {
      h.keeper.abort();
    }
  }
}

impl Inner {
  /// One Redis call, bounded by `opTimeoutMs`; every failure is `ERR_CLUSTER_UNAVAILABLE`.
  async fn op<T>(
    &self,
    what: &str,
    fut: impl Future<Output = RedisResult<T>>,
  ) -> Result<T, RegistryError> {
    match timeout(self.timing.op_timeout, fut).await {
      Ok(Ok(v)) => Ok(v),
      Ok(Err(e)) => Err(RegistryError::ClusterUnavailable(format!(
        "{what} failed on Redis at {}: {e}",
        self.url
      ))),
      Err(_) => Err(RegistryError::ClusterUnavailable(format!(
        "Redis at {} did not answer {what} within {} ms",
        self.url,
        self.timing.op_timeout.as_millis()
      ))),
    }
  }

  fn check_open(&self) -> Result<(), RegistryError> {
    if self.closed.load(Ordering::Acquire) {
      return Err(RegistryError::ClusterClosed);
    }
    Ok(())
  }

  async fn claim_once(&self, id: &str) -> Result<(i64, String, String, i64), RegistryError> {
    self.check_open()?;
    let grace_until = self.grace_until().await?;
    let mut c = self.conn.clone();
    self
      .op(
        "claim",
        self
          .scripts
          .claim
          .key(self.keys.lease(id))
          .key(self.keys.fence(id))
          .key(self.keys.state(id))
          .arg(&self.node_id)
          .arg(self.timing.lease.as_millis() as u64)
          .arg(id)
          .arg(self.keys.channel())
          .arg(grace_until)
          .invoke_async(&mut c),
      )
      .await
  }

  /// Until when (server ms) sessions Redis does not know must not be claimed: one grace period
  /// after Redis first saw the cluster, which after a restart that lost the data is the first
  /// heartbeat or claim after it. 0 when that is past or the grace is off.
  async fn grace_until(&self) -> Result<u64, RegistryError> {
    let grace = self.timing.grace.as_millis() as u64;
    if grace == 0 {
      return Ok(0);
    }
    let mut c = self.conn.clone();
    let (epoch, now): (String, String) = self
      .op(
        "epoch",
        self
          .scripts
          .epoch
          .key(self.keys.epoch())
          .invoke_async(&mut c),
      )
      .await?;
    let (epoch, now) = (parse_token(&epoch)?, parse_token(&now)?);
    Ok(if now < epoch + grace {
      epoch + grace
    } else {
      0
    })
  }

  async fn ask_takeover(&self, id: &str) -> Result<(), RegistryError> {
    let mut c = self.conn.clone();
    self
      .op::<(i64, String)>(
        "takeover",
        self
          .scripts
          .takeover
          .key(self.keys.lease(id))
          .arg(&self.node_id)
          .arg(id)
          .arg(self.keys.channel())
          .invoke_async(&mut c),
      )
      .await
      .map(drop)
  }

  /// Records the lease and starts its keeper. `sent` is when the claim went out: Redis set the
  /// expiry after that instant, so the lease lives there at least until `sent + lease`.
  fn install(self: &Arc<Self>, id: &str, token: u64, sent: Instant) {
    let valid_until = sent + self.timing.lease - self.timing.margin;
    let keeper = tokio::spawn(keeper(self.clone(), id.to_owned(), token, valid_until));
    let old = lock(&self.held).insert(
      id.to_owned(),
      Held {
        token,
        valid_until,
        takeover_by: None,
        keeper,
      },
    );
    if let Some(old) = old {
      old.keeper.abort();
    }
  }

  async fn release_in_redis(&self, id: &str, token: u64) -> Result<bool, RegistryError> {
    let mut c = self.conn.clone();
    let released: i64 = self
      .op(
        "release",
        self
          .scripts
          .release
          .key(self.keys.lease(id))
          .key(self.keys.state(id))
          .arg(&self.node_id)
          .arg(token.to_string())
          .arg(id)
          .arg(self.keys.channel())
          .invoke_async(&mut c),
      )
      .await?;
    let _ = self
      .op(
        "SREM",
        redis::cmd("SREM")
          .arg(self.keys.node_sessions(&self.node_id))
          .arg(id)
          .query_async::<()>(&mut c),
      )
      .await;
    Ok(released == 1)
  }

  /// Forgets the lease if it is still the one with `token`, tells the binding, and frees it in
  /// Redis when that is still possible.
  fn lose(self: &Arc<Self>, id: &str, token: u64, reason: LostReason) {
    let mut held = lock(&self.held);
    if held.get(id).is_none_or(|h| h.token != token) {
      return;
    }
    held.remove(id);
    drop(held);
    lock(&self.pending).remove(id);
    let _ = self.notices.send(Notice::LeaseLost {
      session_id: id.to_owned(),
      token,
      reason,
    });
    let me = self.clone();
    let id = id.to_owned();
    tokio::spawn(async move {
      let _ = me.release_in_redis(&id, token).await;
    });
  }

  async fn write_state(&self, id: &str, token: u64, json: &str) -> Result<bool, RegistryError> {
    let mut c = self.conn.clone();
    let written: i64 = self
      .op(
        "state mirror write",
        self
          .scripts
          .mirror
          .key(self.keys.lease(id))
          .key(self.keys.state(id))
          .arg(&self.node_id)
          .arg(token.to_string())
          .arg(json)
          .arg(self.timing.lease.as_millis() as u64)
          .arg(id)
          .arg(self.keys.channel())
          .invoke_async(&mut c),
      )
      .await?;
    Ok(written == 1)
  }

  async fn flush_pending(&self) {
    let _one_batch = self.flushing.lock().await;
    let batch: Vec<(String, String)> = lock(&self.pending).drain().collect();
    if batch.is_empty() {
      return;
    }
    let writes = batch.into_iter().map(|(id, json)| async move {
      let token = {
        let held = lock(&self.held);
        held
          .get(&id)
          .filter(|h| h.valid_until > Instant::now())
          .map(|h| h.token)
      };
      let result = match token {
        Some(token) => self.write_state(&id, token, &json).await,
        None => Ok(false),
      };
      (id, json, result)
    });
    let mut retry = false;
    for (id, json, result) in join_all(writes).await {
      match result {
        Ok(true) => self.written.fetch_add(1, Ordering::Relaxed),
        Ok(false) => self.refused.fetch_add(1, Ordering::Relaxed),
        Err(_) => {
          // Keep it for the next batch unless a newer state is already queued.
          lock(&self.pending).entry(id).or_insert(json);
          retry = true;
          self.failed.fetch_add(1, Ordering::Relaxed)
        }
      };
    }
    if retry && !self.closed.load(Ordering::Acquire) {
      self.mirror_wake.notify_one();
    }
  }

  async fn where_is(&self, id: &str) -> Result<Option<Placement>, RegistryError> {
    self.check_open()?;
    let mut c = self.conn.clone();
    let row: Vec<redis::Value> = self
      .op(
        "whereIs",
        self
          .scripts
          .where_is
          .key(self.keys.lease(id))
          .key(self.keys.state(id))
          .invoke_async(&mut c),
      )
      .await?;
    if row.len() < 6 {
      return Ok(None);
    }
    let text = |v: &redis::Value| -> String { redis::from_redis_value_ref(v).unwrap_or_default() };
    let state = text(&row[4]);
    Ok(Some(Placement {
      node_id: text(&row[0]),
      token: parse_token(&text(&row[1]))?,
      lease_ttl_ms: redis::from_redis_value_ref(&row[2]).unwrap_or(0),
      takeover_by: non_empty(text(&row[3])),
      state: serde_json::from_str(&state).ok(),
      updated_ms: text(&row[5]).parse().ok(),
    }))
  }

  async fn fleet(&self) -> Result<Fleet, RegistryError> {
    self.check_open()?;
    let mut c = self.conn.clone();
    let listed: Vec<(String, f64)> = self
      .op(
        "node list",
        redis::cmd("ZRANGE")
          .arg(self.keys.nodes())
          .arg(0)
          .arg(-1)
          .arg("WITHSCORES")
          .query_async(&mut c),
      )
      .await?;
    let per_node = listed.into_iter().map(|(node, seen)| async move {
      let mut c = self.conn.clone();
      let (alive, members): (bool, Vec<String>) = self
        .op(
          "node read",
          redis::pipe()
            .exists(self.keys.node(&node))
            .smembers(self.keys.node_sessions(&node))
            .query_async(&mut c),
        )
        .await?;
      if !alive {
        let _ = self
          .op(
            "node prune",
            redis::cmd("ZREM")
              .arg(self.keys.nodes())
              .arg(&node)
              .query_async::<()>(&mut c),
          )
          .await;
        return Ok(None);
      }
      let places = join_all(members.iter().map(|id| self.where_is(id))).await;
      let mut rows = Vec::new();
      for (id, place) in members.into_iter().zip(places) {
        if let Some(p) = place? {
          if p.node_id == node {
            rows.push(SessionRow {
              session_id: id,
              placement: p,
            });
          }
        }
      }
      let connected = rows
        .iter()
        .filter(|r| {
          r.placement
            .state
            .as_ref()
            .and_then(|s| s.get("isConnected"))
            == Some(&Value::Bool(true))
        })
        .count();
      let info = NodeInfo {
        node_id: node,
        sessions: rows.len(),
        connected,
        last_seen_ms: seen as u64,
      };
      Ok::<_, RegistryError>(Some((info, rows)))
    });
    let mut fleet = Fleet::default();
    for entry in join_all(per_node).await {
      if let Some((info, rows)) = entry? {
        fleet.nodes.push(info);
        fleet.sessions.extend(rows);
      }
    }
    fleet.nodes.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    fleet
      .sessions
      .sort_by(|a, b| a.session_id.cmp(&b.session_id));
    Ok(fleet)
  }

  /// Announces the node (heartbeat with expiry) and re-adds its sessions to its set, which a
  /// Redis restart may have lost.
  async fn beat(&self) -> Result<(), RegistryError> {
    let ids: Vec<String> = lock(&self.held).keys().cloned().collect();
    let lease_ms = self.timing.lease.as_millis() as u64;
    let now = epoch_ms();
    let me =
      serde_json::json!({ "nodeId": self.node_id, "startedAt": self.started_ms, "lastSeen": now });
    let mut pipe = redis::pipe();
    pipe
      .cmd("SET")
      .arg(self.keys.node(&self.node_id))
      .arg(me.to_string())
      .arg("PX")
      .arg(lease_ms)
      .ignore()
      .zadd(self.keys.nodes(), &self.node_id, now)
      .ignore();
    if !ids.is_empty() {
      pipe
        .sadd(self.keys.node_sessions(&self.node_id), &ids)
        .ignore();
    }
    pipe
      .pexpire(self.keys.node_sessions(&self.node_id), lease_ms as i64)
      .ignore();
    let mut c = self.conn.clone();
    self.op("heartbeat", pipe.query_async::<()>(&mut c)).await?;
    // Starts the grace period soon after a restart that lost the data, not at the next claim.
    self.grace_until().await.map(drop)
  }

  fn takeover_asked(&self, id: &str, token: u64, by: String) {
    let mut held = lock(&self.held);
    let Some(h) = held.get_mut(id).filter(|h| h.token == token) else {
      return;
    };
    if h.takeover_by.is_some() {
      return;
    }
    h.takeover_by = Some(by.clone());
    drop(held);
    let _ = self.notices.send(Notice::TakeoverRequested {
      session_id: id.to_owned(),
      token,
      by,
    });
  }
}

/// Renews one lease every `renewEvery` until it is released or lost. The lease counts as held
/// until `sent + lease - margin`, where `sent` is the (monotonic) instant the last successful
/// renewal went out; when that passes without a renewal, it is reported lost.
async fn keeper(inner: Arc<Inner>, id: String, token: u64, mut valid_until: Instant) {
  let t = inner.timing.clone();
  let mut shutdown = inner.shutdown.subscribe();
  let retry = (t.renew_every / 4).clamp(Duration::from_millis(20), Duration::from_millis(250));
  let mut next = Instant::now() + t.renew_every;
  loop {
    if *shutdown.borrow() {
      return;
    }
    tokio::select! {
      _ = sleep_until(next.min(valid_until).into()) => {}
      _ = shutdown.changed() => return,
    }
    let sent = Instant::now();
    if sent >= valid_until {
      inner.lose(&id, token, LostReason::Unreachable);
      return;
    }
    let mut c = inner.conn.clone();
    let mut invocation = inner.scripts.renew.key(inner.keys.lease(&id));
    let renew = invocation
      .key(inner.keys.fence(&id))
      .key(inner.keys.state(&id))
      .arg(&inner.node_id)
      .arg(token.to_string())
      .arg(t.lease.as_millis() as u64)
      .arg(&id)
      .arg(inner.keys.channel())
      .invoke_async::<(i64, String, String)>(&mut c);
    // Never wait past the local deadline.
    let budget = (valid_until - sent).min(t.op_timeout);
    match timeout(budget, renew).await {
      Ok(Ok((code @ (1 | 2), _, by))) => {
        valid_until = sent + t.lease - t.margin;
        {
          let mut held = lock(&inner.held);
          match held.get_mut(&id).filter(|h| h.token == token) {
            Some(h) => h.valid_until = valid_until,
            None => return,
          }
        }
        if code == 2 {
          let _ = inner.notices.send(Notice::Reasserted {
            session_id: id.clone(),
            token,
          });
        }
        if !by.is_empty() {
          inner.takeover_asked(&id, token, by);
        }
        next = sent + t.renew_every;
      }
      Ok(Ok((_, now_token, owner))) => {
        let reason = LostReason::Superseded {
          node_id: non_empty(owner),
          token: now_token.parse().ok(),
        };
        inner.lose(&id, token, reason);
        return;
      }
      // Unreachable or slow: try again soon; the deadline check above ends it in time.
      Ok(Err(_)) | Err(_) => next = Instant::now() + retry,
    }
  }
}

/// Sends the node's heartbeat every `renewEvery`.
async fn heartbeat(inner: Arc<Inner>) {
  let mut shutdown = inner.shutdown.subscribe();
  loop {
    tokio::select! {
      _ = sleep(inner.timing.renew_every) => {}
      _ = shutdown.changed() => return,
    }
    if *shutdown.borrow() {
      return;
    }
    let _ = inner.beat().await;
  }
}

/// Writes the mirror in batches: wakes on the first queued state, gathers for `mirrorFlushMs`.
async fn mirror_loop(inner: Arc<Inner>) {
  let mut shutdown = inner.shutdown.subscribe();
  loop {
    tokio::select! {
      _ = inner.mirror_wake.notified() => {}
      _ = shutdown.changed() => return,
    }
    if *shutdown.borrow() {
      return;
    }
    sleep(inner.timing.mirror_flush).await;
    inner.flush_pending().await;
  }
}

/// Subscribes to the events channel, re-subscribing with backoff when the connection drops.
async fn events_loop(
  inner: Arc<Inner>,
  client: Client,
  subscribed: tokio::sync::oneshot::Sender<()>,
) {
  let mut shutdown = inner.shutdown.subscribe();
  let mut subscribed = Some(subscribed);
  let mut backoff = Duration::from_millis(50);
  loop {
    if *shutdown.borrow() {
      return;
    }
    let connect = async {
      let mut ps = client.get_async_pubsub().await?;
      ps.subscribe(inner.keys.channel()).await?;
      Ok::<_, RedisError>(ps)
    };
    if let Ok(Ok(mut ps)) = timeout(inner.timing.op_timeout, connect).await {
      backoff = Duration::from_millis(50);
      if let Some(tx) = subscribed.take() {
        let _ = tx.send(());
      }
      let mut stream = ps.on_message();
      loop {
        tokio::select! {
          msg = stream.next() => match msg {
            Some(msg) => handle_event(&inner, msg.get_payload_bytes()),
            None => break,
          },
          _ = shutdown.changed() => return,
        }
      }
    }
    tokio::select! {
      _ = sleep(backoff) => {}
      _ = shutdown.changed() => return,
    }
    backoff = (backoff * 2).min(Duration::from_secs(2));
  }
}

fn handle_event(inner: &Inner, payload: &[u8]) {
  let Ok(event) = serde_json::from_slice::<ClusterEvent>(payload) else {
    return;
  };
  if event.kind == "takeoverRequested" && event.node_id == inner.node_id {
    if let (Some(token), Some(by)) = (event.token.as_deref(), event.by.clone()) {
      if let Ok(token) = token.parse() {
        inner.takeover_asked(&event.session_id, token, by);
      }
    }
  }
  let _ = inner.events.send(event);
}
