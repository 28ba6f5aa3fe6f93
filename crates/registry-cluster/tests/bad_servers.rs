//! Wrong URLs, wrong passwords and servers that are not Redis: clear errors, fast, no panic.

mod support;

use std::time::{Duration, Instant};

use registry_cluster::{Cluster, ClusterOptions};
use support::{free_port, opts, Redis};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

async fn connect_err(o: ClusterOptions) -> (String, String, Duration) {
  let t = Instant::now();
  let err = tokio::time::timeout(Duration::from_secs(5), Cluster::connect(o))
    .await
    .expect("connect hung")
    .err()
    .expect("connect succeeded");
  (err.code().to_owned(), err.to_string(), t.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_urls_and_options_are_option_errors() {
  for url in ["not a url", "http://127.0.0.1:6379", ""] {
    let (code, _, _) = connect_err(opts(url, "bad", "a", 3_000)).await;
    assert_eq!(code, "ERR_CLUSTER_OPTIONS", "{url}");
  }
  let (code, msg, _) = connect_err(opts("redis://127.0.0.1:1", "bad", "", 3_000)).await;
  assert_eq!(code, "ERR_CLUSTER_OPTIONS");
  assert!(msg.contains("nodeId"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_listening_is_a_connect_error_at_once() {
  let url = format!("redis://127.0.0.1:{}", free_port());
  let (code, msg, took) = connect_err(opts(&url, "bad", "a", 3_000)).await;
  assert_eq!(code, "ERR_CLUSTER_CONNECT");
  assert!(msg.contains("cannot connect"), "{msg}");
  assert!(took < Duration::from_millis(700), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_not_redis_is_a_connect_error() {
  // One that answers like a web server, and one that never answers.
  let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
  let http_port = http.local_addr().unwrap().port();
  tokio::spawn(async move {
    while let Ok((mut s, _)) = http.accept().await {
      tokio::spawn(async move {
        let mut buf = [0u8; 512];
        let _ = s.read(&mut buf).await;
        let _ = s
          .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
          .await;
      });
    }
  });
  let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
  let silent_port = silent.local_addr().unwrap().port();
  tokio::spawn(async move {
    let mut open = Vec::new();
    while let Ok((s, _)) = silent.accept().await {
      open.push(s);
    }
  });
  let (code, msg, took) = connect_err(opts(
    &format!("redis://127.0.0.1:{http_port}"),
    "bad",
    "a",
    3_000,
  ))
  .await;
  assert_eq!(code, "ERR_CLUSTER_CONNECT", "{msg}");
  assert!(took < Duration::from_millis(1_000), "{took:?}");
  eprintln!("not Redis: {msg}");
  let (code, msg, took) = connect_err(opts(
    &format!("redis://127.0.0.1:{silent_port}"),
    "bad",
    "a",
    3_000,
  ))
  .await;
  assert_eq!(code, "ERR_CLUSTER_CONNECT");
  assert!(msg.contains("no Redis answer"), "{msg}");
  assert!(took < Duration::from_millis(1_000), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_a_connect_error_that_does_not_echo_it() {
  require_redis!("password");
  let redis = Redis::start_with_password("s3cret-pw");
  let base = format!("127.0.0.1:{}", redis.port);
  for url in [
    format!("redis://:not-it@{base}"),
    format!("redis://{base}"),
    format!("redis://someone:s3cret-pw@{base}"),
  ] {
    let (code, msg, took) = connect_err(opts(&url, "pw", "a", 3_000)).await;
    assert_eq!(code, "ERR_CLUSTER_CONNECT", "{url}: {msg}");
    assert!(msg.contains("credentials"), "{msg}");
    assert!(!msg.contains("not-it") && !msg.contains("s3cret"), "{msg}");
    assert!(took < Duration::from_millis(1_000), "{took:?}");
  }
  let (ok, _n) = Cluster::connect(opts(
    &format!("redis://:s3cret-pw@{base}"),
    "pw",
    "a",
    3_000,
  ))
  .await
  .unwrap();
  ok.close().await.unwrap();
}
