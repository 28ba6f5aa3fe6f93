//! The fleet view, the state mirror and cluster events against a real redis-server.

mod support;

use std::time::{Duration, Instant};

use registry_cluster::{ClaimOptions, Cluster};
use support::{opts, percentile, Redis};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_view_events_and_mirror_numbers() {
  require_redis!("view");
  let redis = Redis::start();
  tokio::time::timeout(Duration::from_secs(60), async {
    let (a, _na) = Cluster::connect(opts(&redis.url(), "view", "a", 5_000))
      .await
      .unwrap();
    let (b, _nb) = Cluster::connect(opts(&redis.url(), "view", "b", 5_000))
      .await
      .unwrap();
    let mut events = b.events();
    let la = a.claim("s1", ClaimOptions::default()).await.unwrap();
    a.claim("s2", ClaimOptions::default()).await.unwrap();
    b.claim("s3", ClaimOptions::default()).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(2), events.recv())
      .await
      .unwrap()
      .unwrap();
    assert_eq!(
      (first.kind.as_str(), first.session_id.as_str(), first.node_id.as_str()),
      ("claimed", "s1", "a")
    );
    assert_eq!(first.token, Some(la.token.to_string()));
    a.mirror_state("s1", r#"{"status":"open","isConnected":true}"#.into())
      .unwrap();
    a.mirror_state("s2", r#"{"status":"qr","isConnected":false}"#.into())
      .unwrap();
    a.flush().await;
    let fleet = b.fleet().await.unwrap();
    let nodes: Vec<_> = fleet
      .nodes
      .iter()
      .map(|n| (n.node_id.as_str(), n.sessions, n.connected))
      .collect();
    assert_eq!(nodes, [("a", 2, 1), ("b", 1, 0)]);
    let rows: Vec<_> = fleet
      .sessions
      .iter()
      .map(|r| (r.session_id.as_str(), r.placement.node_id.as_str()))
      .collect();
    assert_eq!(rows, [("s1", "a"), ("s2", "a"), ("s3", "b")]);
    assert_eq!(
      fleet.sessions[0].placement.state,
      Some(serde_json::json!({ "status": "open", "isConnected": true }))
    );
    assert!(a.release("s2").await.unwrap());
    assert_eq!(b.where_is("s2").await.unwrap(), None);

    // Propagation: a state change on node a, seen as an event on node b (through the batch window).
    let mut events = b.events();
    let mut lat = Vec::new();
    for i in 0..200 {
      let t = Instant::now();
      a.mirror_state("s1", format!(r#"{{"n":{i}}}"#)).unwrap();
      loop {
        let e = tokio::time::timeout(Duration::from_secs(2), events.recv())
          .await
          .unwrap()
          .unwrap();
        if e.kind == "state" && e.state == Some(serde_json::json!({ "n": i })) {
          break;
        }
      }
      lat.push(t.elapsed());
    }
    lat.sort();
    eprintln!(
      "state change to another node's event (mirrorFlushMs 20): p50 {:?}, p99 {:?}",
      percentile(&lat, 0.5),
      percentile(&lat, 0.99)
    );

    // Throughput of the batched mirror: 100 sessions, 20 000 updates.
    for i in 0..100 {
      a.claim(&format!("m{i}"), ClaimOptions::default()).await.unwrap();
    }
    let before = a.mirror_counters();
    let t = Instant::now();
    for round in 0..200 {
      for i in 0..100 {
        a.mirror_state(&format!("m{i}"), format!(r#"{{"round":{round}}}"#))
          .unwrap();
      }
      if round % 20 == 0 {
        tokio::task::yield_now().await;
      }
    }
    let queued = t.elapsed();
    a.flush().await;
    let all = t.elapsed();
    let after = a.mirror_counters();
    eprintln!(
      "mirror: 20000 updates queued in {queued:?} ({:.0}/s), {} Redis writes, all flushed in {all:?}",
      20_000.0 / queued.as_secs_f64(),
      after.written - before.written
    );
    assert_eq!(after.failed, 0);
    // Redis writes per second: 2 000 sessions, one new state each, one batch.
    for i in 100..2_100 {
      a.claim(&format!("m{i}"), ClaimOptions::default()).await.unwrap();
    }
    let before = a.mirror_counters();
    let t = Instant::now();
    for i in 100..2_100 {
      a.mirror_state(&format!("m{i}"), r#"{"status":"open"}"#.into())
        .unwrap();
    }
    a.flush().await;
    let took = t.elapsed();
    let written = a.mirror_counters().written - before.written;
    assert_eq!(written, 2_000);
    eprintln!(
      "mirror: 2000 distinct sessions written in one batch in {took:?} ({:.0} writes/s)",
      2_000.0 / took.as_secs_f64()
    );
    let place = b.where_is("m7").await.unwrap().unwrap();
    assert_eq!(place.state, Some(serde_json::json!({ "round": 199 })));
    a.close().await.unwrap();
    let fleet = b.fleet().await.unwrap();
    assert_eq!(fleet.nodes.len(), 1, "a closed node leaves the view at once");
    b.close().await.unwrap();
  })
  .await
  .expect("test ran out of time");
}
