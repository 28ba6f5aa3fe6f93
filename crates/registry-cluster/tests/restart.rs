//! Redis restarts, with and without persistence, against a real redis-server.

mod support;

use std::time::{Duration, Instant};

use registry_cluster::{ClaimOptions, Cluster, ClusterOptions, LostReason, Notice};
use support::{next_notice, opts, Redis};

async fn bounded<F: std::future::Future<Output = ()>>(secs: u64, f: F) {
  tokio::time::timeout(Duration::from_secs(secs), f)
    .await
    .expect("test ran out of time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_that_lost_everything_gets_the_leases_reasserted() {
  require_redis!("restart-empty");
  let mut redis = Redis::start();
  bounded(30, async {
    let (a, mut na) = Cluster::connect(opts(&redis.url(), "rs", "a", 3_000))
      .await
      .unwrap();
    let mut tokens = Vec::new();
    for id in ["s1", "s2", "s3"] {
      tokens.push(a.claim(id, ClaimOptions::default()).await.unwrap().token);
    }
    redis.restart();
    let t = Instant::now();
    let mut back = Vec::new();
    while back.len() < 3 {
      match next_notice(&mut na, 3_000).await {
        Some(Notice::Reasserted { session_id, token }) => back.push((session_id, token)),
        other => panic!("expected Reasserted, got {other:?}"),
      }
    }
    eprintln!(
      "restart without persistence: 3 leases re-asserted {:?} after the restart",
      t.elapsed()
    );
    back.sort();
    let want: Vec<(String, u64)> = ["s1", "s2", "s3"]
      .iter()
      .map(|s| s.to_string())
      .zip(tokens.iter().copied())
      .collect();
    assert_eq!(back, want);
    for (id, token) in &want {
      let place = a.where_is(id).await.unwrap().unwrap();
      assert_eq!((place.node_id.as_str(), place.token), ("a", *token));
    }
    // The heartbeat puts the node and its sessions back in the view.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let fleet = a.fleet().await.unwrap();
    assert_eq!(fleet.nodes.len(), 1);
    assert_eq!(fleet.nodes[0].sessions, 3);
    // Another node cannot take them.
    let (b, _nb) = Cluster::connect(opts(&redis.url(), "rs", "b", 3_000))
      .await
      .unwrap();
    assert_eq!(
      b.claim("s1", ClaimOptions::default())
        .await
        .unwrap_err()
        .code(),
      "ERR_CLUSTER_HELD"
    );
    assert_eq!(next_notice(&mut na, 200).await, None);
    a.close().await.unwrap();
    b.close().await.unwrap();
  })
  .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_that_lost_the_data_others_wait_for_the_owner_to_reassert() {
  require_redis!("restart-grace");
  let mut redis = Redis::start();
  bounded(30, async {
    let (a, mut na) = Cluster::connect(opts(&redis.url(), "rg", "a", 6_000))
      .await
      .unwrap();
    let la = a.claim("s", ClaimOptions::default()).await.unwrap();
    let ld = a.claim("dead", ClaimOptions::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    redis.restart();
    let restarted = Instant::now();
    // The other node keeps the default grace (one lease).
    let b_opts = ClusterOptions {
      data_loss_grace_ms: None,
      ..opts(&redis.url(), "rg", "b", 6_000)
    };
    let (b, _nb) = Cluster::connect(b_opts).await.unwrap();
    let err = b.claim("s", ClaimOptions::default()).await.unwrap_err();
    assert_eq!(err.code(), "ERR_CLUSTER_RECOVERING", "{err}");
    // a re-asserts "s" at its next renewal; "dead" too, unless a stops first: drop it to see the
    // other case, a session whose owner is gone, claimable once the grace is over.
    assert_eq!(
      next_notice(&mut na, 3_000).await.map(|n| match n {
        Notice::Reasserted { .. } => "reasserted",
        _ => "other",
      }),
      Some("reasserted")
    );
    let err = b
      .claim(
        "s",
        ClaimOptions {
          wait_ms: Some(500),
          takeover: false,
        },
      )
      .await
      .unwrap_err();
    assert_eq!(err.code(), "ERR_CLUSTER_CLAIM_TIMEOUT", "{err}");
    assert!(err.to_string().contains("'a'"));
    assert_eq!(a.holding("s").unwrap().token, la.token);
    b.close().await.unwrap();
    drop(a);
    redis.restart();
    let restarted_again = Instant::now();
    let b_opts = ClusterOptions {
      data_loss_grace_ms: None,
      ..opts(&redis.url(), "rg", "b", 6_000)
    };
    let (b, _nb) = Cluster::connect(b_opts).await.unwrap();
    let lb = b
      .claim(
        "dead",
        ClaimOptions {
          wait_ms: Some(8_000),
          takeover: false,
        },
      )
      .await
      .unwrap();
    let waited = restarted_again.elapsed();
    eprintln!(
      "restart without data, owner dead: claimable {waited:?} after the restart (grace 6 s); first restart at {:?}",
      restarted.elapsed()
    );
    assert!(waited >= Duration::from_millis(5_900), "{waited:?}");
    assert!(lb.token > ld.token);
    b.close().await.unwrap();
  })
  .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_grace_off_a_lease_another_node_claimed_first_is_reported_lost() {
  require_redis!("restart-lost");
  let mut redis = Redis::start();
  bounded(30, async {
    // Renewals every 2 s: the restart and the other node's claim fit before the next one.
    let (a, mut na) = Cluster::connect(opts(&redis.url(), "rl", "a", 6_000))
      .await
      .unwrap();
    let la = a.claim("s", ClaimOptions::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    redis.restart();
    let (b, _nb) = Cluster::connect(opts(&redis.url(), "rl", "b", 6_000))
      .await
      .unwrap();
    let lb = b.claim("s", ClaimOptions::default()).await.unwrap();
    let b_from = Instant::now();
    assert!(lb.token > la.token, "the time floor keeps tokens growing after data loss");
    let notice = next_notice(&mut na, 4_000).await;
    assert_eq!(
      notice,
      Some(Notice::LeaseLost {
        session_id: "s".into(),
        token: la.token,
        reason: LostReason::Superseded {
          node_id: Some("b".into()),
          token: Some(lb.token)
        }
      })
    );
    eprintln!(
      "restart, another node claimed first: the old owner learnt it {:?} later (renewal period 2 s)",
      b_from.elapsed()
    );
    assert!(a.holding("s").is_none());
    let place = b.where_is("s").await.unwrap().unwrap();
    assert_eq!((place.node_id.as_str(), place.token), ("b", lb.token));
    a.close().await.unwrap();
    b.close().await.unwrap();
  })
  .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_persistence_keeps_leases_tokens_and_state() {
  require_redis!("restart-persistent");
  let mut redis = Redis::start_persistent();
  bounded(30, async {
    let (a, mut na) = Cluster::connect(opts(&redis.url(), "rp", "a", 3_000))
      .await
      .unwrap();
    let la = a.claim("s", ClaimOptions::default()).await.unwrap();
    assert!(a
      .write_state("s", la.token, r#"{"status":"open"}"#)
      .await
      .unwrap());
    redis.restart();
    // Renewals go on as before: neither lost nor re-asserted.
    assert_eq!(next_notice(&mut na, 2_500).await, None);
    let place = a.where_is("s").await.unwrap().unwrap();
    assert_eq!((place.node_id.as_str(), place.token), ("a", la.token));
    assert_eq!(place.state, Some(serde_json::json!({ "status": "open" })));
    assert!(place.lease_ttl_ms > 1_000);
    let (b, _nb) = Cluster::connect(opts(&redis.url(), "rp", "b", 3_000))
      .await
      .unwrap();
    assert_eq!(
      b.claim("s", ClaimOptions::default())
        .await
        .unwrap_err()
        .code(),
      "ERR_CLUSTER_HELD"
    );
    assert!(a.release("s").await.unwrap());
    assert!(b.claim("s", ClaimOptions::default()).await.unwrap().token > la.token);
    a.close().await.unwrap();
    b.close().await.unwrap();
  })
  .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_fail_fast_while_redis_is_down_and_work_again_after() {
  require_redis!("down");
  let mut redis = Redis::start();
  bounded(30, async {
    let (a, _na) = Cluster::connect(opts(&redis.url(), "dn", "a", 3_000))
      .await
      .unwrap();
    redis.pause();
    let t = Instant::now();
    let err = a
      .claim(
        "s",
        ClaimOptions {
          wait_ms: Some(5_000),
          takeover: true,
        },
      )
      .await
      .unwrap_err();
    assert_eq!(err.code(), "ERR_CLUSTER_UNAVAILABLE");
    assert!(
      t.elapsed() < Duration::from_millis(1_000),
      "{:?}",
      t.elapsed()
    );
    redis.resume();
    redis.restart();
    // The connection manager reconnects in the background; the first call after may still see
    // the dropped connection.
    let deadline = Instant::now() + Duration::from_secs(5);
    let lease = loop {
      match a.claim("s", ClaimOptions::default()).await {
        Ok(lease) => break lease,
        Err(e) if Instant::now() < deadline => {
          assert_eq!(e.code(), "ERR_CLUSTER_UNAVAILABLE");
          tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(e) => panic!("no reconnect: {e}"),
      }
    };
    assert_eq!(a.where_is("s").await.unwrap().unwrap().token, lease.token);
    a.close().await.unwrap();
  })
  .await;
}
