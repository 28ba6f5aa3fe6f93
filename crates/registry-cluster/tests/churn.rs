//! Churn: three nodes, random claims, takeovers, releases, node deaths and Redis restarts.
//! Every node logs its ownership intervals with their tokens; no two intervals of one session
//! may overlap, and tokens grow from one interval to the next.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use registry_cluster::{ClaimOptions, Cluster, ClusterOptions, Notice};
use support::{opts, Redis};

#[derive(Debug, Clone)]
struct Interval {
  node: String,
  id: String,
  token: u64,
  start: Instant,
  end: Option<Instant>,
}

type Log = Arc<Mutex<Vec<Interval>>>;

fn close_interval(log: &Log, node: &str, id: &str, token: u64) {
  let now = Instant::now();
  let mut log = log.lock().unwrap();
  let open = log
    .iter_mut()
    .rev()
    .find(|i| i.node == node && i.id == id && i.token == token && i.end.is_none())
    .expect("an open interval");
  open.end = Some(now);
}

/// A tiny xorshift: no dependency for randomness.
struct Rng(u64);
impl Rng {
  fn below(&mut self, n: u64) -> u64 {
    self.0 ^= self.0 << 13;
    self.0 ^= self.0 >> 7;
    self.0 ^= self.0 << 17;
    self.0 % n
  }
}

fn node_opts(url: &str, node: &str) -> ClusterOptions {
  ClusterOptions {
    // The default grace: Redis restarts during the run lose the data.
    data_loss_grace_ms: None,
    ..opts(url, "churn", node, 1_000)
  }
}

async fn run_node(url: String, node: String, seed: u64, log: Log, until: Instant) -> u32 {
  let mut rng = Rng(seed);
  let mut claims = 0;
  'life: while Instant::now() < until {
    let Ok((cluster, mut notices)) = Cluster::connect(node_opts(&url, &node)).await else {
      tokio::time::sleep(Duration::from_millis(100)).await;
      continue;
    };
    let life_end = Instant::now() + Duration::from_millis(2_000 + rng.below(3_000));
    loop {
      // The binding's part: act on notices first.
      while let Ok(notice) = notices.try_recv() {
        match notice {
          Notice::LeaseLost {
            session_id, token, ..
          } => close_interval(&log, &node, &session_id, token),
          Notice::TakeoverRequested {
            session_id, token, ..
          } => {
            if cluster
              .holding(&session_id)
              .is_some_and(|l| l.token == token)
            {
              close_interval(&log, &node, &session_id, token);
              let _ = cluster.release(&session_id).await;
            }
          }
          Notice::Reasserted { .. } => {}
        }
      }
      let now = Instant::now();
      if now >= until || now >= life_end {
        // Half the time a clean close, half the time a death (no release). Either way the
        // node stops running its sessions now, including leases lost but not yet told.
        let all: Vec<_> = {
          let log = log.lock().unwrap();
          log
            .iter()
            .filter(|i| i.node == node && i.end.is_none())
            .map(|i| (i.id.clone(), i.token))
            .collect()
        };
        for (id, token) in all {
          close_interval(&log, &node, &id, token);
        }
        if rng.below(2) == 0 {
          let _ = cluster.close().await;
        } else {
          drop(cluster);
        }
        if now >= until {
          break 'life;
        }
        tokio::time::sleep(Duration::from_millis(rng.below(300))).await;
        continue 'life;
      }
      let id = format!("s{}", rng.below(12));
      if let Some(lease) = cluster.holding(&id) {
        if rng.below(3) == 0 {
          close_interval(&log, &node, &id, lease.token);
          let _ = cluster.release(&id).await;
        }
      } else {
        let opts = match rng.below(4) {
          0 => ClaimOptions {
            wait_ms: Some(300),
            takeover: true,
          },
          1 => ClaimOptions {
            wait_ms: Some(200),
            takeover: false,
          },
          _ => ClaimOptions::default(),
        };
        if let Ok(lease) = cluster.claim(&id, opts).await {
          claims += 1;
          log.lock().unwrap().push(Interval {
            node: node.clone(),
            id,
            token: lease.token,
            start: Instant::now(),
            end: None,
          });
        }
      }
      tokio::time::sleep(Duration::from_millis(5 + rng.below(30))).await;
    }
  }
  claims
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_never_gives_a_session_two_owners() {
  require_redis!("churn");
  let mut redis = Redis::start();
  let url = redis.url();
  let log: Log = Arc::new(Mutex::new(Vec::new()));
  let start = Instant::now();
  let until = start + Duration::from_secs(12);
  let nodes: Vec<_> = ["a", "b", "c"]
    .iter()
    .enumerate()
    .map(|(i, n)| {
      tokio::spawn(run_node(
        url.clone(),
        n.to_string(),
        0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1),
        log.clone(),
        until,
      ))
    })
    .collect();
  // Two Redis restarts without persistence during the run.
  for at in [4_000, 8_000] {
    tokio::time::sleep_until((start + Duration::from_millis(at)).into()).await;
    redis.restart();
  }
  let mut claims = 0;
  for n in nodes {
    claims += tokio::time::timeout(Duration::from_secs(30), n)
      .await
      .expect("a node did not stop")
      .unwrap();
  }
  let log = log.lock().unwrap().clone();
  assert!(log.iter().all(|i| i.end.is_some()), "every interval closed");
  let mut by_id: HashMap<&str, Vec<&Interval>> = HashMap::new();
  for i in &log {
    by_id.entry(&i.id).or_default().push(i);
  }
  for (id, mut list) in by_id {
    list.sort_by_key(|i| i.start);
    for pair in list.windows(2) {
      let (a, b) = (pair[0], pair[1]);
      assert!(
        a.end.unwrap() <= b.start,
        "{id}: {}#{} until {:?} overlaps {}#{} from {:?}",
        a.node,
        a.token,
        a.end.unwrap() - start,
        b.node,
        b.token,
        b.start - start
      );
      assert!(
        b.token > a.token,
        "{id}: token {} after {}",
        b.token,
        a.token
      );
    }
  }
  eprintln!(
    "churn: {claims} successful claims, {} intervals over 12 s, 3 nodes, 12 ids, 2 Redis restarts, no overlap",
    log.len()
  );
  assert!(claims > 50, "the churn did churn: {claims}");
}
