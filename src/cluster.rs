//! The cluster, reachable from JavaScript: one process-wide connection to the Redis cluster
//! engine (crates/registry-cluster), used by index.js's "Cluster" section (names start with
//! `__` and stay out of the typings).
//!
//! Plain data only lives here (no JS handle in a static): the `Cluster` in an `Arc`, its tasks
//! on napi-rs's Tokio runtime. What it adds to the registry:
//! - the gate: while a cluster is connected, `registerSocket` (any thread) refuses an id this
//!   node does not hold ([`check_register`], one atomic load when no cluster is connected);
//! - `unregisterSocket` / `clearAll` release the lease in the background ([`on_unregistered`]);
//! - a lost lease (or a takeover request) ends the session's socket silently in the thread
//!   that owns it, marks the session `leaseLost` and tells `onStateChange` listeners;
//! - the state mirror: a task looks at the version counters of the held sessions (which every
//!   change bumps) and queues the changed states for the engine's batched writes, so the local
//!   hot paths (updateSessionState, tracking) do no extra work at all.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock};
use std::time::Duration;

use napi::Env;
use napi_derive::napi;
use serde_json::{json, Map, Value as Json};
use tokio::sync::{broadcast, mpsc};

use crate::api::{finish, JsAny};
use crate::channel::Channel;
use crate::events::{self, ChangeKind};
use crate::handles;
use crate::js::{self, JsResult, Value};
use crate::promise::{self, KeepAlive, Outcome};
use registry_cluster::{ClaimOptions, Cluster, ClusterEvent, ClusterOptions, Fleet, Notice};
use registry_core::errors::RegistryError;
use registry_core::state::{iso_string, Status};
use registry_core::{config, layout, table};

/// A connected cluster and what runs for it.
struct Node {
  /// Tells this connection from a later one: a closed `Cluster` object must not act on it.
  epoch: u64,
  cluster: Cluster,
  /// Events for `cluster.onStateChange`: the engine's (every node) and this node's `leaseLost`.
  events: broadcast::Sender<Arc<Json>>,
  tasks: Mutex<Vec<tokio::task::AbortHandle>>,
  /// Takeovers waiting for the local socket to end before the lease is released: id → token.
  handing_over: Mutex<HashMap<String, u64>>,
  /// The runtime the cluster's work runs on, held to spawn releases from outside it: an
  /// environment's teardown unregisters its sessions after napi-rs may have shut its runtime
  /// down, where `napi::bindgen_prelude::spawn` panics; a handle then drops the task instead.
  runtime: tokio::runtime::Handle,
}

enum Slot {
  Empty,
  Connecting,
  Connected(Arc<Node>),
}

static SLOT: RwLock<Slot> = RwLock::new(Slot::Empty);
/// Set while a cluster is connected: what the register gate reads first.
static CONNECTED: AtomicBool = AtomicBool::new(false);
static NEXT_EPOCH: AtomicU64 = AtomicU64::new(1);
/// Clusters between `__clusterClosing` and the end of `__clusterClose`, by epoch.
static CLOSING: LazyLock<Mutex<HashMap<u64, Arc<Node>>>> =
  LazyLock::new(|| Mutex::new(HashMap::new()));
/// `cluster.onStateChange` subscriptions: their channel and delivery task.
type Subscription = (Arc<Channel<Arc<Json>>>, tokio::task::AbortHandle);
static SUBSCRIPTIONS: LazyLock<Mutex<HashMap<u64, Subscription>>> =
  LazyLock::new(|| Mutex::new(HashMap::new()));
static NEXT_SUBSCRIPTION: AtomicU64 = AtomicU64::new(1);

/// How long a takeover waits for the owning thread to end the socket before releasing anyway
/// (a thread that is blocked must not keep the asking node waiting for its whole lease).
const HANDOVER_LIMIT: Duration = Duration::from_secs(2);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
  m.lock().unwrap_or_else(|p| p.into_inner())
}

fn current() -> Option<Arc<Node>> {
  match &*SLOT.read().unwrap_or_else(|p| p.into_inner()) {
    Slot::Connected(node) => Some(node.clone()),
    _ => None,
  }
}

/// The connected cluster of `epoch`, or `ERR_CLUSTER_CLOSED`.
fn node(epoch: f64) -> Result<Arc<Node>, RegistryError> {
  current()
    .filter(|n| n.epoch as f64 == epoch)
    .ok_or(RegistryError::ClusterClosed)
}

/// The register gate: while a cluster is connected, only ids this node holds may be registered.
#[inline]
pub fn check_register(id: &str) -> Result<(), RegistryError> {
  if !CONNECTED.load(Ordering::Acquire) {
    return Ok(());
  }
  match current() {
    Some(node) if node.cluster.holding(id).is_none() => {
      Err(RegistryError::ClusterNotHeld(id.to_owned()))
    }
    _ => Ok(()),
  }
}

/// The gate alone, for `createSocketWrapper`'s function: checked before `makeWASocket` runs, so
/// no socket is made for a session this node may not register.
#[napi(js_name = "__clusterGate", skip_typescript)]
pub fn cluster_gate(env: Env, id: String) -> napi::Result<()> {
  finish(&env, check_register(&id).map_err(Into::into))
}

/// `unregisterSocket` / `clearAll` removed `id`: give its lease up here now (a new socket for
/// it then needs a new claim) and in Redis in the background; a failure there becomes a
/// `releaseFailed` event, and the lease expires anyway.
pub fn on_unregistered(id: &str) {
  if !CONNECTED.load(Ordering::Acquire) {
    return;
  }
  let Some(node) = current() else { return };
  let Ok(token) = node.cluster.let_go(id) else {
    return;
  };
  release_in_background(&node, id, token);
}

/// Releases the lease of `id` in Redis without waiting (a failure is a `releaseFailed` event,
/// and the lease expires anyway). Spawned through the node's runtime handle, which also works
/// from an environment's teardown (see `Node::runtime`).
fn release_in_background(node: &Arc<Node>, id: &str, token: u64) {
  let task_node = node.clone();
  let id = id.to_owned();
  node.runtime.spawn(async move {
    let _ = release_lease(&task_node, &id, token).await;
  });
}

async fn release_lease(node: &Node, id: &str, token: u64) -> Result<bool, RegistryError> {
  let released = node.cluster.release_lease(id, token).await;
  if let Err(e) = &released {
    publish(
      node,
      json!({
        "type": "releaseFailed",
        "sessionId": id,
        "nodeId": node.cluster.node_id(),
        "token": token.to_string(),
        "code": e.code(),
        "message": e.to_string(),
      }),
    );
  }
  released
}

fn publish(node: &Node, event: Json) {
  let _ = node.events.send(Arc::new(event));
}

/// Ends the local socket of `id`, wherever it is registered, the way a takeover by another
/// thread does: the record goes, and its thread lets the socket go (this thread when
/// index.js applies its revocations right after the call).
fn remove_locally(id: &str) {
  let mut owner = None;
  table::for_one(id, |r| owner = Some(r.owner));
  if let Some(owner) = owner {
    if let Some(record) = table::remove_owned(id, owner) {
      handles::revoke(owner, id);
      events::emit(id, ChangeKind::Removed, Some(record.state), None);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// connect

fn get_opt_number(env: js::Env, o: Value, key: &std::ffi::CStr) -> JsResult<Option<f64>> {
  let v = js::get_named(env, o, key)?;
  Ok(js::get_number(env, v))
}

fn options_of(env: js::Env, o: Value) -> JsResult<(ClusterOptions, u64)> {
  let text = |key: &std::ffi::CStr| -> JsResult<Option<String>> {
    let v = js::get_named(env, o, key)?;
    Ok(js::get_string(env, v))
  };
  let ms = |key: &std::ffi::CStr| -> JsResult<Option<u64>> {
    // index.js checked these are whole numbers in range; the engine checks their relations.
    Ok(get_opt_number(env, o, key)?.map(|v| v as u64))
  };
  let mut opts = ClusterOptions {
    url: text(c"url")?.unwrap_or_default(),
    node_id: text(c"nodeId")?.unwrap_or_default(),
    // The engine's own mirror delay stays minimal: this module's scan already gathers a batch.
    mirror_flush_ms: 0,
    ..Default::default()
  };
  if let Some(v) = ms(c"leaseMs")? {
    opts.lease_ms = v;
  }
  if let Some(v) = text(c"prefix")? {
    opts.prefix = v;
  }
  if let Some(v) = ms(c"opTimeoutMs")? {
    opts.op_timeout_ms = v;
  }
  opts.safety_margin_ms = ms(c"marginMs")?;
  opts.renew_every_ms = ms(c"renewEveryMs")?;
  opts.data_loss_grace_ms = ms(c"dataLossGraceMs")?;
  let mirror_every = ms(c"mirrorFlushMs")?.unwrap_or(250);
  Ok((opts, mirror_every))
}

/// Resets the slot when a connection attempt ends without a cluster (failed, or dropped with
/// its environment).
struct Connecting;
impl Drop for Connecting {
  fn drop(&mut self) {
    let mut slot = SLOT.write().unwrap_or_else(|p| p.into_inner());
    if matches!(*slot, Slot::Connecting) {
      *slot = Slot::Empty;
    }
  }
}

/// `connectCluster(options)`: resolves with `{ epoch, nodeId }` once connected. index.js has
/// checked the option types and filled in the defaults.
#[napi(js_name = "__clusterConnect", skip_typescript)]
pub fn cluster_connect(env: Env, options: JsAny) -> napi::Result<JsAny> {
  let raw = env.raw();
  finish(&env, connect_js(raw, options.0).map(JsAny))
}

fn connect_js(env: js::Env, options: Value) -> JsResult<Value> {
  let (opts, mirror_every) = options_of(env, options)?;
  {
    let mut slot = SLOT.write().unwrap_or_else(|p| p.into_inner());
    if !matches!(*slot, Slot::Empty) {
      return promise::settled(env, Err(RegistryError::ClusterAlreadyConnected));
    }
    *slot = Slot::Connecting;
  }
  let guard = Connecting;
  promise::spawn(env, KeepAlive::Yes, async move {
    let (cluster, notices) = Cluster::connect(opts).await?;
    let (events, _) = broadcast::channel(4096);
    let node = Arc::new(Node {
      epoch: NEXT_EPOCH.fetch_add(1, Ordering::Relaxed),
      cluster,
      events,
      tasks: Mutex::new(Vec::new()),
      handing_over: Mutex::new(HashMap::new()),
      runtime: tokio::runtime::Handle::current(),
    });
    let engine_events = node.cluster.events();
    let tasks = vec![
      tokio::spawn(forward_events(node.clone(), engine_events)).abort_handle(),
      tokio::spawn(act_on_notices(node.clone(), notices)).abort_handle(),
      tokio::spawn(mirror(
        node.clone(),
        Duration::from_millis(mirror_every.max(1)),
      ))
      .abort_handle(),
    ];
    *lock(&node.tasks) = tasks;
    {
      let mut slot = SLOT.write().unwrap_or_else(|p| p.into_inner());
      *slot = Slot::Connected(node.clone());
      CONNECTED.store(true, Ordering::Release);
    }
    // Connected: the slot is no longer the guard's to reset.
    std::mem::forget(guard);
    Ok(Outcome::Json(json!({
      "epoch": node.epoch,
      "nodeId": node.cluster.node_id(),
    })))
  })
}

/// The engine's events, as the JSON objects `cluster.onStateChange` listeners receive.
fn event_json(e: &ClusterEvent) -> Json {
  let mut o = Map::new();
  o.insert("type".into(), Json::String(e.kind.clone()));
  o.insert("sessionId".into(), Json::String(e.session_id.clone()));
  o.insert("nodeId".into(), Json::String(e.node_id.clone()));
  if let Some(t) = &e.token {
    o.insert("token".into(), Json::String(t.clone()));
  }
  if let Some(by) = &e.by {
    o.insert("by".into(), Json::String(by.clone()));
  }
  if e.kind == "state" {
    o.insert("state".into(), e.state.clone().unwrap_or(Json::Null));
  }
  Json::Object(o)
}

async fn forward_events(node: Arc<Node>, mut rx: broadcast::Receiver<ClusterEvent>) {
  loop {
    match rx.recv().await {
      Ok(e) => publish(&node, event_json(&e)),
      Err(broadcast::error::RecvError::Lagged(_)) => continue,
      Err(broadcast::error::RecvError::Closed) => return,
    }
  }
}

// ---------------------------------------------------------------------------------------------
// lost leases and takeovers

async fn act_on_notices(node: Arc<Node>, mut rx: mpsc::UnboundedReceiver<Notice>) {
  while let Some(notice) = rx.recv().await {
    // A notice about an older lease of a session claimed again since: the new one stands.
    let (id, token) = match &notice {
      Notice::LeaseLost {
        session_id, token, ..
      }
      | Notice::TakeoverRequested {
        session_id, token, ..
      }
      | Notice::Reasserted { session_id, token } => (session_id, *token),
    };
    if node
      .cluster
      .holding(id)
      .is_some_and(|lease| lease.token != token)
    {
      continue;
    }
    match notice {
      Notice::LeaseLost {
        session_id,
        token,
        reason,
      } => {
        let message = match &reason {
          registry_cluster::LostReason::Unreachable => {
            "the cluster lease could not be renewed in time (Redis unreachable): the socket was ended before the lease could expire".to_owned()
          }
          registry_cluster::LostReason::Superseded { node_id, .. } => format!(
            "another node ({}) holds the session's cluster lease now",
            node_id.as_deref().unwrap_or("unknown")
          ),
        };
        lost_locally(&node, &session_id, token, reason.as_str(), message, None);
      }
      Notice::TakeoverRequested {
        session_id,
        token,
        by,
      } => {
        lock(&node.handing_over).insert(session_id.clone(), token);
        let message = format!("node '{by}' took the session over (cluster takeover)");
        let delivered = lost_locally(&node, &session_id, token, "takeover", message, Some(by));
        if !delivered {
          hand_over(&node, &session_id);
        } else {
          // Released anyway if the owning thread does not get to it in time.
          let node = node.clone();
          tokio::spawn(async move {
            tokio::time::sleep(HANDOVER_LIMIT).await;
            hand_over(&node, &session_id);
          });
        }
      }
      Notice::Reasserted { session_id, .. } => {
        // Redis lost the mirrored state with the lease: send it again now rather than at the
        // session's next change, so the fleet view is whole again.
        if let Some(json) = table::with_state(&session_id, |s, _, _| layout::to_json(s).to_string())
        {
          let _ = node.cluster.mirror_state(&session_id, json);
        }
      }
    }
  }
}

/// Marks the session `leaseLost`, tells listeners, and asks the owning thread to end its
/// socket. Returns whether a thread was asked.
fn lost_locally(
  node: &Node,
  id: &str,
  token: u64,
  reason: &'static str,
  message: String,
  by: Option<String>,
) -> bool {
  let now = js::now_ms();
  let mut target = None;
  let applied = table::update(id, None, events::wanted, |r| {
    target = Some((r.owner, r.generation));
    ((), Some(r.state.mark_lease_lost(message, now)))
  });
  if events::wanted() {
    let (previous, current) = match applied.and_then(|a| a.change) {
      Some((before, after)) => (Some(before), Some(after)),
      None => {
        let now = table::get(id);
        (now.clone(), now)
      }
    };
    events::emit_with(
      id,
      ChangeKind::LeaseLost,
      previous,
      current,
      Some(events::Detail::LeaseLost { reason, token }),
    );
  }
  let mut event = json!({
    "type": "leaseLost",
    "sessionId": id,
    "nodeId": node.cluster.node_id(),
    "token": token.to_string(),
    "reason": reason,
  });
  if let Some(by) = by {
    event["by"] = Json::String(by);
  }
  publish(node, event);
  target.is_some_and(|(owner, generation)| handles::lease_lost(owner, id, generation))
}

/// Releases a lease whose takeover was asked for, once (the socket has ended, or the wait is
/// over), if this node still holds it under the token the request was for.
fn hand_over(node: &Arc<Node>, id: &str) {
  let Some(token) = lock(&node.handing_over).remove(id) else {
    return;
  };
  if node.cluster.holding(id).map(|l| l.token) != Some(token) {
    return;
  }
  if node.cluster.let_go(id).is_ok() {
    release_in_background(node, id, token);
  }
}

/// The sessions of this environment whose lease was lost, to end now: ids whose record is
/// still the one registered when the lease was lost (a socket registered since is left alone).
#[napi(js_name = "__takeLost", skip_typescript)]
pub fn take_lost(env: Env) -> napi::Result<JsAny> {
  let raw = env.raw();
  let owner = handles::current().map(|c| c.0);
  let mut ids = Vec::new();
  for (id, generation) in handles::take_lost() {
    let mut same = false;
    table::for_one(&id, |r| {
      same = Some(r.owner) == owner && r.generation == generation;
    });
    if same {
      ids.push(id);
    } else {
      lost_done(&id);
    }
  }
  finish(
    &env,
    (|| {
      let out = js::array(raw, ids.len())?;
      for (i, id) in ids.iter().enumerate() {
        js::set_element(raw, out, i as u32, js::string(raw, id)?)?;
      }
      Ok(JsAny(out))
    })(),
  )
}

fn lost_done(id: &str) {
  if let Some(node) = current() {
    hand_over(&node, id);
  }
}

/// index.js ended the socket of a session whose lease was lost: a takeover can release now.
#[napi(js_name = "__clusterLostDone", skip_typescript)]
pub fn cluster_lost_done(id: String) {
  lost_done(&id);
}

// ---------------------------------------------------------------------------------------------
// the state mirror

/// Every `every`, queues the state of each held session whose version moved since the last
/// look (one read of its version under the record's lock; the JSON only for changed ones).
async fn mirror(node: Arc<Node>, every: Duration) {
  let mut seen: HashMap<String, (u32, u32)> = HashMap::new();
  loop {
    tokio::time::sleep(every).await;
    let held = node.cluster.held_sessions();
    let mut next = HashMap::with_capacity(held.len());
    for id in held {
      let last = seen.remove(&id);
      let looked = table::with_state(&id, |s, slot, version| {
        let json = (last != Some((slot, version))).then(|| layout::to_json(s).to_string());
        ((slot, version), json)
      });
      if let Some((at, json)) = looked {
        if let Some(json) = json {
          // Refused when the lease was lost meanwhile: nothing to write then.
          let _ = node.cluster.mirror_state(&id, json);
        }
        next.insert(id, at);
      }
    }
    seen = next;
  }
}

// ---------------------------------------------------------------------------------------------
// claim, holds, release

/// `cluster.claim(id, { waitMs, takeover })`: resolves with `{ sessionId, nodeId, token }`.
#[napi(js_name = "__clusterClaim", skip_typescript)]
pub fn cluster_claim(
  env: Env,
  epoch: f64,
  id: String,
  wait_ms: Option<f64>,
  takeover: bool,
) -> napi::Result<JsAny> {
  let raw = env.raw();
  let work = async move {
    let node = node(epoch)?;
    let opts = ClaimOptions {
      wait_ms: wait_ms.map(|v| v as u64),
      takeover,
    };
    let lease = node.cluster.claim(&id, opts).await?;
    Ok(Outcome::Json(json!({
      "sessionId": lease.session_id,
      "nodeId": node.cluster.node_id(),
      "token": lease.token.to_string(),
    })))
  };
  finish(&env, promise::spawn(raw, KeepAlive::Yes, work).map(JsAny))
}

/// `cluster.holds(id)`: whether this node holds the lease now (local knowledge).
#[napi(js_name = "__clusterHolds", skip_typescript)]
pub fn cluster_holds(epoch: f64, id: String) -> bool {
  node(epoch).is_ok_and(|n| n.cluster.holding(&id).is_some())
}

/// The first half of `cluster.release(id)`: gives the lease up here (Redis keeps it until the
/// second half) and ends the session's socket wherever it is registered (index.js applies
/// this thread's share right after). Returns the lease's token for `__clusterReleaseLease`.
#[napi(js_name = "__clusterLetGo", skip_typescript)]
pub fn cluster_let_go(env: Env, epoch: f64, id: String) -> napi::Result<String> {
  let token = node(epoch).and_then(|n| n.cluster.let_go(&id));
  match token {
    Ok(token) => {
      remove_locally(&id);
      Ok(token.to_string())
    }
    Err(e) => finish(&env, Err(e.into())),
  }
}

/// The second half of `cluster.release(id)`: resolves with whether Redis still had the lease.
#[napi(js_name = "__clusterReleaseLease", skip_typescript)]
pub fn cluster_release_lease(
  env: Env,
  epoch: f64,
  id: String,
  token: String,
) -> napi::Result<JsAny> {
  let raw = env.raw();
  let work = async move {
    let node = node(epoch)?;
    let token = token
      .parse()
      .map_err(|_| RegistryError::Internal(format!("malformed token {token:?}")))?;
    Ok(Outcome::Json(Json::Bool(
      release_lease(&node, &id, token).await?,
    )))
  };
  finish(&env, promise::spawn(raw, KeepAlive::Yes, work).map(JsAny))
}

// ---------------------------------------------------------------------------------------------
// the fleet view

/// `cluster.whereIs(id)`: where the session runs, or `null`.
#[napi(js_name = "__clusterWhereIs", skip_typescript)]
pub fn cluster_where_is(env: Env, epoch: f64, id: String) -> napi::Result<JsAny> {
  let raw = env.raw();
  let work = async move {
    let node = node(epoch)?;
    let placed = node.cluster.where_is(&id).await?;
    Ok(Outcome::Json(placed.map_or(Json::Null, |p| {
      json!({
        "sessionId": id,
        "nodeId": p.node_id,
        "token": p.token.to_string(),
        "leaseTtlMs": p.lease_ttl_ms,
        "state": p.state,
        "updatedAt": p.updated_ms,
      })
    })))
  };
  finish(&env, promise::spawn(raw, KeepAlive::Yes, work).map(JsAny))
}

/// `cluster.getStats()`: `getStats()`'s shape for the whole fleet.
#[napi(js_name = "__clusterStats", skip_typescript)]
pub fn cluster_stats(env: Env, epoch: f64) -> napi::Result<JsAny> {
  let raw = env.raw();
  let work = async move {
    let node = node(epoch)?;
    let fleet = node.cluster.fleet().await?;
    Ok(Outcome::Json(fleet_stats(
      &fleet,
      js::now_ms(),
      config::idle_after_ms() as f64,
    )))
  };
  finish(&env, promise::spawn(raw, KeepAlive::Yes, work).map(JsAny))
}

/// The fleet as `getStats()` shapes the sessions of one process (each row with its `nodeId`),
/// plus `sessions` (every mirrored state) and `nodes`. A session claimed but with no state
/// mirrored yet (not registered) counts in its node's `sessions` only.
fn fleet_stats(fleet: &Fleet, now: f64, idle_after_ms: f64) -> Json {
  let mut active = Vec::new();
  let mut sessions = Vec::new();
  let (mut inactive, mut errors, mut connected, mut disconnected) =
    (Vec::new(), Vec::new(), Vec::new(), Vec::new());
  let mut by_status = Map::new();
  for s in Status::ALL {
    by_status.insert(s.as_str().into(), json!(0));
  }
  by_status.insert("untracked".into(), json!(0));
  for row in &fleet.sessions {
    let Some(Json::Object(state)) = &row.placement.state else {
      continue;
    };
    let id = &row.session_id;
    let num = |k: &str| state.get(k).and_then(Json::as_f64).unwrap_or(0.0);
    let is_connected = state.get("isConnected") == Some(&Json::Bool(true));
    let error = state.get("error").cloned().unwrap_or(Json::Null);
    let status = state.get("status").cloned().unwrap_or(Json::Null);
    let key = status.as_str().unwrap_or("untracked").to_owned();
    if let Some(n) = by_status.get_mut(&key) {
      *n = json!(n.as_u64().unwrap_or(0) + 1);
    }
    let last_activity = num("lastActivity");
    active.push(json!({
      "sessionId": id,
      "createdAt": iso_string(num("createdAt")),
      "lastActivity": iso_string(last_activity),
      "isConnected": is_connected,
      "error": error,
      "status": status,
      "nodeId": row.placement.node_id,
    }));
    if now - last_activity > idle_after_ms {
      inactive.push(json!(id));
    }
    if let Some(e) = error.as_str().filter(|e| !e.is_empty()) {
      errors.push(json!({ "sessionId": id, "error": e }));
    }
    if is_connected {
      connected.push(json!(id));
    } else {
      disconnected.push(json!(id));
    }
    let mut full = Map::new();
    full.insert("sessionId".into(), json!(id));
    full.insert("nodeId".into(), json!(row.placement.node_id));
    for (k, v) in state {
      if k != "sessionId" && k != "nodeId" {
        full.insert(k.clone(), v.clone());
      }
    }
    sessions.push(Json::Object(full));
  }
  let (fault_count, fault_last) = crate::tracking::faults();
  let nodes: Vec<Json> = fleet
    .nodes
    .iter()
    .map(|n| {
      json!({
        "nodeId": n.node_id,
        "sessions": n.sessions,
        "connected": n.connected,
        "lastSeen": n.last_seen_ms,
      })
    })
    .collect();
  json!({
    "totalSessions": active.len(),
    "activeSessions": active,
    "inactiveSessions": inactive,
    "errorSessions": errors,
    "connectedSessions": connected,
    "disconnectedSessions": disconnected,
    "byStatus": by_status,
    "idleAfterMs": idle_after_ms,
    "socketFaults": { "count": fault_count, "last": fault_last },
    "sessions": sessions,
    "nodes": nodes,
  })
}

// ---------------------------------------------------------------------------------------------
// cluster.onStateChange

fn deliver_event(env: js::Env, listener: Value, event: Arc<Json>) {
  let value = match crate::convert::json_to_js(env, &event) {
    Ok(v) => v,
    Err(_) => {
      js::take_exception(env);
      return;
    }
  };
  if js::call(env, js::undefined(env), listener, &[value]).is_err() {
    if let Some(message) = js::take_exception(env) {
      events::warn(
        env,
        &format!("a cluster.onStateChange listener threw: {message}"),
      );
    }
  }
}

/// Subscribes `listener` (a function, checked by index.js) in this thread to the cluster's
/// events. Returns the subscription id. The subscription does not keep the process alive.
#[napi(js_name = "__clusterSubscribe", skip_typescript)]
pub fn cluster_subscribe(env: Env, epoch: f64, listener: JsAny) -> napi::Result<f64> {
  let raw = env.raw();
  let subscribed = (|| -> JsResult<f64> {
    let node = node(epoch)?;
    let channel = Channel::new(raw, Some(listener.0), deliver_event, true)?;
    let mut rx = node.events.subscribe();
    let sending = channel.clone();
    let id = NEXT_SUBSCRIPTION.fetch_add(1, Ordering::Relaxed);
    // The map entry goes with the delivery: the cluster closed, or the thread went away.
    let mut subscriptions = lock(&SUBSCRIPTIONS);
    let task = napi::bindgen_prelude::spawn(async move {
      loop {
        let delivered = match rx.recv().await {
          Ok(event) => sending.send(event),
          Err(broadcast::error::RecvError::Lagged(_)) => true,
          Err(broadcast::error::RecvError::Closed) => false,
        };
        if !delivered {
          break;
        }
      }
      sending.close();
      lock(&SUBSCRIPTIONS).remove(&id);
    });
    subscriptions.insert(id, (channel, task.abort_handle()));
    Ok(id as f64)
  })();
  finish(&env, subscribed)
}

/// Ends a `cluster.onStateChange` subscription. Returns whether it existed.
#[napi(js_name = "__clusterUnsubscribe", skip_typescript)]
pub fn cluster_unsubscribe(id: f64) -> bool {
  match lock(&SUBSCRIPTIONS).remove(&(id as u64)) {
    Some((channel, task)) => {
      task.abort();
      channel.close();
      true
    }
    None => false,
  }
}

// ---------------------------------------------------------------------------------------------
// close

/// The first half of `cluster.close()`: the cluster stops counting as connected (the gate
/// opens), and the socket of every session it holds is let go wherever it is registered
/// (index.js applies this thread's share right after). Returns whether it was open.
#[napi(js_name = "__clusterClosing", skip_typescript)]
pub fn cluster_closing(epoch: f64) -> bool {
  let node = {
    let mut slot = SLOT.write().unwrap_or_else(|p| p.into_inner());
    match &*slot {
      Slot::Connected(n) if n.epoch as f64 == epoch => {
        let n = n.clone();
        *slot = Slot::Empty;
        CONNECTED.store(false, Ordering::Release);
        n
      }
      _ => return false,
    }
  };
  for id in node.cluster.held_sessions() {
    remove_locally(&id);
  }
  lock(&CLOSING).insert(node.epoch, node);
  true
}

/// The second half of `cluster.close()`: releases every lease, removes the node from the view
/// and stops every task. Rejects with the first Redis error, after stopping everything anyway.
#[napi(js_name = "__clusterClose", skip_typescript)]
pub fn cluster_close(env: Env, epoch: f64) -> napi::Result<JsAny> {
  let raw = env.raw();
  let node = lock(&CLOSING).remove(&(epoch as u64));
  let work = async move {
    let Some(node) = node else {
      return Ok(Outcome::Json(Json::Null));
    };
    let closed = node.cluster.close().await;
    for task in lock(&node.tasks).drain(..) {
      task.abort();
    }
    closed.map(|_| Outcome::Json(Json::Null))
  };
  finish(&env, promise::spawn(raw, KeepAlive::Yes, work).map(JsAny))
}
