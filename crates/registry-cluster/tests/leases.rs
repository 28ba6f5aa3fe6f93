//! Leases, fencing and the keeper against a real redis-server (see `support`).

mod support;

use std::time::{Duration, Instant};

use registry_cluster::{ClaimOptions, Cluster, LostReason, Notice};
use support::{next_notice, opts, percentile, Redis};

/// Every test runs under this bound.
async fn bounded<F: std::future::Future<Output = ()>>(secs: u64, f: F) {
  tokio::time::timeout(Duration::from_secs(secs), f)
    .await
    .expect("test ran out of time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_claimers_race_100_times_and_exactly_one_wins_each_round() {
  require_redis!("race");
  let redis = Redis::start();
  bounded(60, async {
    let (a, _na) = Cluster::connect(opts(&redis.url(), "race", "a", 5_000))
      .await
      .unwrap();
    let (b, _nb) = Cluster::connect(opts(&redis.url(), "race", "b", 5_000))
      .await
      .unwrap();
    let mut last = 0u64;
    let mut wins = [0u32; 2];
    for round in 0..100 {
      let (ra, rb) = tokio::join!(
        a.claim("user_42", ClaimOptions::default()),
        b.claim("user_42", ClaimOptions::default())
      );
      let (winner, lease, loser_err) = match (ra, rb) {
        (Ok(l), Err(e)) => (0, l, e),
        (Err(e), Ok(l)) => (1, l, e),
        other => panic!("round {round}: not exactly one owner: {other:?}"),
      };
      wins[winner] += 1;
      assert_eq!(loser_err.code(), "ERR_CLUSTER_HELD");
      assert!(loser_err.to_string().contains(["'a'", "'b'"][winner]));
      assert!(
        lease.token > last,
        "round {round}: token {} <= {last}",
        lease.token
      );
      last = lease.token;
      let owner = [&a, &b][winner];
      let placed = a.where_is("user_42").await.unwrap().unwrap();
      assert_eq!(
        (placed.node_id.as_str(), placed.token),
        (owner.node_id(), lease.token)
      );
      assert!(owner.release("user_42").await.unwrap());
    }
    eprintln!("race: a won {} rounds, b won {}", wins[0], wins[1]);
    // A second process under the same node id does not get the first one's session.
    a.claim("user_42", ClaimOptions::default()).await.unwrap();
    let (twin, _nt) = Cluster::connect(opts(&redis.url(), "race", "a", 5_000))
      .await
      .unwrap();
    let err = twin
      .claim("user_42", ClaimOptions::default())
      .await
      .unwrap_err();
    assert_eq!(err.code(), "ERR_CLUSTER_HELD");
    twin.close().await.unwrap();
    a.close().await.unwrap();
    b.close().await.unwrap();
  })
  .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_latency_and_repeat_claims() {
  require_redis!("latency");
  let redis = Redis::start();
  bounded(60, async {
    let (a, _n) = Cluster::connect(opts(&redis.url(), "lat", "a", 15_000))
      .await
      .unwrap();
    let mut times = Vec::new();
    for i in 0..1000 {
      let id = format!("s{i}");
      let t = Instant::now();
      a.claim(&id, ClaimOptions::default()).await.unwrap();
      times.push(t.elapsed());
    }
    times.sort();
    eprintln!(
      "claim latency over 1000 claims (loopback, debug build): p50 {:?}, p99 {:?}, max {:?}",
      percentile(&times, 0.5),
      percentile(&times, 0.99),
      times[times.len() - 1]
    );
    // With the data-loss grace on (the default), each claim first reads the epoch key.
    let (g, _ng) = Cluster::connect(registry_cluster::ClusterOptions {
      data_loss_grace_ms: Some(1),
      ..opts(&redis.url(), "lat", "g", 15_000)
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let mut times = Vec::new();
    for i in 0..1000 {
      let id = format!("g{i}");
      let t = Instant::now();
      g.claim(&id, ClaimOptions::default()).await.unwrap();
      times.push(t.elapsed());
    }
    times.sort();
    eprintln!(
      "claim latency with the epoch check: p50 {:?}, p99 {:?}",
      percentile(&times, 0.5),
      percentile(&times, 0.99)
    );
    g.close().await.unwrap();
    // Claiming what this node holds returns the same lease without a new token.
    let first = a.holding("s1").unwrap();
    assert_eq!(a.claim("s1", ClaimOptions::default()).await.unwrap(), first);
    assert_eq!(a.held_sessions().len(), 1000);
    let err = a.claim("", ClaimOptions::default()).await.unwrap_err();
    assert_eq!(err.code(), "ERR_INVALID_SESSION_ID");
    a.close().await.unwrap();
    assert_eq!(
      a.claim("x", ClaimOptions::default())
        .await
        .unwrap_err()
        .code(),
      "ERR_CLUSTER_CLOSED"
    );
  })
  .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_lease_expires_and_another_node_claims_it() {
  require_redis!("expiry");
  let redis = Redis::start();
  bounded(30, async {
    let lease_ms = 1_000;
    let (a, _na) = Cluster::connect(opts(&redis.url(), "exp", "a", lease_ms))
      .await
      .unwrap();
    let (b, _nb) = Cluster::connect(opts(&redis.url(), "exp", "b", lease_ms))
      .await
      .unwrap();
    let la = a.claim("user_1", ClaimOptions::default()).await.unwrap();
    let fleet = b.fleet().await.unwrap();
    assert_eq!(
      fleet
        .nodes
        .iter()
        .map(|n| (n.node_id.as_str(), n.sessions))
        .collect::<Vec<_>>(),
      [("a", 1), ("b", 0)]
    );
    // Renewed past several lease lengths while alive.
    tokio::time::sleep(Duration::from_millis(2 * lease_ms)).await;
    assert_eq!(
      b.claim("user_1", ClaimOptions::default())
        .await
        .unwrap_err()
        .code(),
      "ERR_CLUSTER_HELD"
    );
    let died = Instant::now();
    drop(a); // like kill -9: no release
    let lb = b
      .claim(
        "user_1",
        ClaimOptions {
          wait_ms: Some(lease_ms + 1_000),
          takeover: false,
        },
      )
      .await
      .unwrap();
    let took = died.elapsed();
    eprintln!("takeover after the owner died: {took:?} (leaseMs {lease_ms})");
    assert!(lb.token > la.token);
    assert!(took <= Duration::from_millis(lease_ms + 1_000), "{took:?}");
    // Its heartbeat expires within leaseMs of its last beat, on its own schedule.
    let fleet = loop {
      let fleet = b.fleet().await.unwrap();
      if fleet.nodes.len() == 1 || died.elapsed() > Duration::from_millis(lease_ms + 300) {
        break fleet;
      }
      tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!(
      "the dead node left the view {:?} after it died",
      died.elapsed()
    );
    assert_eq!(
      fleet
        .nodes
        .iter()
        .map(|n| (n.node_id.as_str(), n.sessions))
        .collect::<Vec<_>>(),
      [("b", 1)],
      "the dead node left the view"
    );
    b.close().await.unwrap();
  })
  .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_that_waits_times_out_with_the_owner_named() {
  require_redis!("wait");
  let redis = Redis::start();
  bounded(30, async {
    let (a, _na) = Cluster::connect(opts(&redis.url(), "wait", "a", 3_000))
      .await
      .unwrap();
    let (b, _nb) = Cluster::connect(opts(&redis.url(), "wait", "b", 3_000))
      .await
      .unwrap();
    a.claim("s", ClaimOptions::default()).await.unwrap();
    let t = Instant::now();
    let err = b
      .claim(
        "s",
        ClaimOptions {
          wait_ms: Some(300),
          takeover: false,
        },
      )
      .await
      .unwrap_err();
    assert_eq!(err.code(), "ERR_CLUSTER_CLAIM_TIMEOUT");
    assert!(err.to_string().contains("'a'"));
    assert!(
      t.elapsed() >= Duration::from_millis(300) && t.elapsed() < Duration::from_millis(1_500)
    );
    // A release during the wait lets the waiter in at once.
    let waiter = tokio::spawn(async move {
      let lease = b
        .claim(
          "s",
          ClaimOptions {
            wait_ms: Some(2_000),
            takeover: false,
          },
        )
        .await;
      (b, lease)
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(a.release("s").await.unwrap());
    let (b, lease) = waiter.await.unwrap();
    lease.unwrap();
    assert_eq!(
      a.release("s").await.unwrap_err().code(),
      "ERR_CLUSTER_NOT_HELD"
    );
    a.close().await.unwrap();
    b.close().await.unwrap();
  })
  .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_asks_the_owner_which_releases() {
  require_redis!("takeover");
  let redis = Redis::start();
  bounded(30, async {
    let (a, mut na) = Cluster::connect(opts(&redis.url(), "tk", "a", 15_000))
      .await
      .unwrap();
    let (b, _nb) = Cluster::connect(opts(&redis.url(), "tk", "b", 15_000))
      .await
      .unwrap();
    let la = a.claim("s", ClaimOptions::default()).await.unwrap();
    let t = Instant::now();
    let claimer = tokio::spawn(async move {
      let lease = b
        .claim(
          "s",
          ClaimOptions {
            wait_ms: Some(5_000),
            takeover: true,
          },
        )
        .await;
      (b, lease)
    });
    // The binding's part: end the socket, then release.
    let notice = next_notice(&mut na, 3_000).await;
    assert_eq!(
      notice,
      Some(Notice::TakeoverRequested {
        session_id: "s".into(),
        token: la.token,
        by: "b".into()
      })
    );
    assert!(a.release("s").await.unwrap());
    let (b, lb) = claimer.await.unwrap();
    let lb = lb.unwrap();
    eprintln!(
      "takeover on request (owner releases on the notice): {:?}",
      t.elapsed()
    );
    assert!(lb.token > la.token);
    assert_eq!(next_notice(&mut na, 200).await, None, "told once");
    a.close().await.unwrap();
    b.close().await.unwrap();
  })
  .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keeper_that_loses_redis_reports_the_loss_before_the_lease_expires() {
  require_redis!("partition");
  let redis = Redis::start();
  bounded(30, async {
    let lease_ms = 1_500;
    // The margin is what makes the loss come first; it also absorbs a loaded test machine.
    let a_opts = registry_cluster::ClusterOptions {
      renew_every_ms: Some(300),
      safety_margin_ms: Some(500),
      ..opts(&redis.url(), "part", "a", lease_ms)
    };
    let (a, mut na) = Cluster::connect(a_opts).await.unwrap();
    let la = a.claim("s", ClaimOptions::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    // A lower bound of when the lease expires in Redis: read its TTL just before the pause.
    let asked = Instant::now();
    let ttl = a.where_is("s").await.unwrap().unwrap().lease_ttl_ms;
    let expires_no_sooner_than = asked + Duration::from_millis(ttl as u64);
    redis.pause();
    let paused = Instant::now();
    // Calls fail fast while Redis does not answer.
    let t = Instant::now();
    assert_eq!(
      a.where_is("s").await.unwrap_err().code(),
      "ERR_CLUSTER_UNAVAILABLE"
    );
    assert!(t.elapsed() < Duration::from_millis(1_000));
    let notice = next_notice(&mut na, 3 * lease_ms).await;
    let lost_at = Instant::now();
    assert_eq!(
      notice,
      Some(Notice::LeaseLost {
        session_id: "s".into(),
        token: la.token,
        reason: LostReason::Unreachable
      })
    );
    assert!(a.holding("s").is_none());
    assert!(
      lost_at < expires_no_sooner_than,
      "lost {:?} after the pause, the lease expires no sooner than {:?} after it",
      lost_at - paused,
      expires_no_sooner_than - paused
    );
    eprintln!(
      "partition: LeaseLost {:?} after SIGSTOP, {:?} before the lease could expire",
      lost_at - paused,
      expires_no_sooner_than - lost_at
    );
    // Past the expiry, Redis comes back: another node claims; the old owner's writes are refused
    // and its keeper never comes back to life.
    tokio::time::sleep_until((expires_no_sooner_than + Duration::from_millis(300)).into()).await;
    redis.resume();
    let (b, _nb) = Cluster::connect(opts(&redis.url(), "part", "b", lease_ms))
      .await
      .unwrap();
    let lb = b.claim("s", ClaimOptions::default()).await.unwrap();
    let b_owns_from = Instant::now();
    assert!(lb.token > la.token);
    assert!(lost_at < b_owns_from, "ownership intervals do not overlap");
    assert!(!a
      .write_state("s", la.token, r#"{"stale":true}"#)
      .await
      .unwrap());
    assert!(b
      .write_state("s", lb.token, r#"{"fresh":true}"#)
      .await
      .unwrap());
    tokio::time::sleep(Duration::from_millis(lease_ms)).await;
    let place = b.where_is("s").await.unwrap().unwrap();
    assert_eq!((place.node_id.as_str(), place.token), ("b", lb.token));
    assert_eq!(place.state, Some(serde_json::json!({ "fresh": true })));
    assert!(a.holding("s").is_none());
    assert_eq!(next_notice(&mut na, 100).await, None);
    a.close().await.unwrap();
    b.close().await.unwrap();
  })
  .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_token_mirror_writes_are_refused() {
  require_redis!("fencing");
  let redis = Redis::start();
  bounded(30, async {
    let lease_ms = 600;
    let (a, _na) = Cluster::connect(opts(&redis.url(), "fence", "a", lease_ms))
      .await
      .unwrap();
    let la = a.claim("s", ClaimOptions::default()).await.unwrap();
    assert!(a.write_state("s", la.token, r#"{"v":1}"#).await.unwrap());
    assert!(
      !a.write_state("s", la.token - 1, r#"{"v":0}"#)
        .await
        .unwrap(),
      "older token"
    );
    drop(a);
    // The same node id, restarted: its old token is stale once another owner came in between.
    let (b, _nb) = Cluster::connect(opts(&redis.url(), "fence", "b", lease_ms))
      .await
      .unwrap();
    let lb = b
      .claim(
        "s",
        ClaimOptions {
          wait_ms: Some(3_000),
          takeover: false,
        },
      )
      .await
      .unwrap();
    let (a2, _na2) = Cluster::connect(opts(&redis.url(), "fence", "a", lease_ms))
      .await
      .unwrap();
    assert!(!a2.write_state("s", la.token, r#"{"v":2}"#).await.unwrap());
    assert!(
      !a2.write_state("s", lb.token, r#"{"v":2}"#).await.unwrap(),
      "not the owner"
    );
    assert_eq!(
      a2.mirror_state("s", "{}".into()).unwrap_err().code(),
      "ERR_CLUSTER_NOT_HELD"
    );
    // The batched path: the latest state wins, one write per batch.
    for v in 0..100 {
      b.mirror_state("s", format!(r#"{{"v":{v},"isConnected":true}}"#))
        .unwrap();
    }
    b.flush().await;
    let place = b.where_is("s").await.unwrap().unwrap();
    assert_eq!(
      place.state,
      Some(serde_json::json!({ "v": 99, "isConnected": true }))
    );
    let c = b.mirror_counters();
    assert!(c.written >= 1 && c.written <= 2 && c.failed == 0, "{c:?}");
    a2.close().await.unwrap();
    b.close().await.unwrap();
  })
  .await;
}
