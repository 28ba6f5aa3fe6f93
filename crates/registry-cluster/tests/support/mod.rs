//! A real `redis-server` per test, on a free loopback port, started and stopped here.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use registry_cluster::{ClusterOptions, Notice};
use tokio::sync::mpsc::UnboundedReceiver;

/// Whether `redis-server` is on PATH; when it is not, says how to install it.
pub fn redis_available(test: &str) -> bool {
  let ok = Command::new("redis-server")
    .arg("--version")
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .status()
    .is_ok_and(|s| s.success());
  if !ok {
    // Straight to stderr: the test harness captures eprintln! of passing tests.
    let _ = writeln!(
      std::io::stderr(),
      "SKIPPED {test}: redis-server is not on PATH; install it with `apt-get install -y redis-server`"
    );
  }
  ok
}

/// Returns from the test (passing) when there is no redis-server.
#[macro_export]
macro_rules! require_redis {
  ($name:expr) => {
    if !support::redis_available($name) {
      return;
    }
  };
}

pub fn free_port() -> u16 {
  TcpListener::bind("127.0.0.1:0")
    .unwrap()
    .local_addr()
    .unwrap()
    .port()
}

/// A redis-server child process.
pub struct Redis {
  pub port: u16,
  dir: PathBuf,
  persist: bool,
  password: Option<String>,
  child: Option<Child>,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl Redis {
  /// Without persistence: a restart comes back empty.
  pub fn start() -> Redis {
    Self::spawn(false, None)
  }
  /// With an append-only file fsynced on every write: a restart keeps everything.
  pub fn start_persistent() -> Redis {
    Self::spawn(true, None)
  }
  /// Requiring a password.
  pub fn start_with_password(pw: &str) -> Redis {
    Self::spawn(false, Some(pw.to_owned()))
  }

  fn spawn(persist: bool, password: Option<String>) -> Redis {
    let dir = std::env::temp_dir().join(format!(
      "bsr-redis-{}-{}",
      std::process::id(),
      SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut r = Redis {
      port: free_port(),
      dir,
      persist,
      password,
      child: None,
    };
    r.launch();
    r
  }

  fn launch(&mut self) {
    let mut cmd = Command::new("redis-server");
    cmd
      .arg("--port")
      .arg(self.port.to_string())
      .arg("--bind")
      .arg("127.0.0.1")
      .arg("--dir")
      .arg(&self.dir)
      .arg("--save")
      .arg("");
    if self.persist {
      cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
    } else {
      cmd.args(["--appendonly", "no"]);
    }
    if let Some(pw) = &self.password {
      cmd.arg("--requirepass").arg(pw);
    }
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    self.child = Some(cmd.spawn().expect("spawn redis-server"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
      if self.ping() {
        return;
      }
      std::thread::sleep(Duration::from_millis(20));
    }
    panic!("redis-server on port {} did not start", self.port);
  }

  fn ping(&self) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
      return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let cmd = match &self.password {
      Some(pw) => format!("AUTH {pw}\r\nPING\r\n"),
      None => "PING\r\n".into(),
    };
    if s.write_all(cmd.as_bytes()).is_err() {
      return false;
    }
    let mut buf = [0u8; 64];
    let mut got = String::new();
    let deadline = Instant::now() + Duration::from_millis(500);
    while Instant::now() < deadline && !got.contains("PONG") && !got.contains("LOADING") {
      match s.read(&mut buf) {
        Ok(0) | Err(_) => break,
        Ok(n) => got.push_str(&String::from_utf8_lossy(&buf[..n])),
      }
    }
    got.contains("PONG")
  }

  pub fn url(&self) -> String {
    format!("redis://127.0.0.1:{}", self.port)
  }

  fn pid(&self) -> i32 {
    self.child.as_ref().unwrap().id() as i32
  }

  /// SIGSTOP: the server keeps its sockets open and answers nothing.
  pub fn pause(&self) {
    #[cfg(unix)]
    unsafe {
      libc::kill(self.pid(), libc::SIGSTOP);
    }
    #[cfg(not(unix))]
    panic!("pausing redis-server needs SIGSTOP (unix only)");
  }
  /// SIGCONT.
  pub fn resume(&self) {
    #[cfg(unix)]
    unsafe {
      libc::kill(self.pid(), libc::SIGCONT);
    }
  }

  /// `kill -9`, then start again on the same port and directory.
  pub fn restart(&mut self) {
    self.kill();
    self.launch();
  }

  fn kill(&mut self) {
    if let Some(mut c) = self.child.take() {
      let _ = c.kill();
      let _ = c.wait();
    }
  }
}

impl Drop for Redis {
  fn drop(&mut self) {
    self.kill();
    let _ = std::fs::remove_dir_all(&self.dir);
  }
}

/// Options for a test node: a unique prefix per test, short timings.
pub fn opts(url: &str, prefix: &str, node: &str, lease_ms: u64) -> ClusterOptions {
  ClusterOptions {
    url: url.to_owned(),
    node_id: node.to_owned(),
    lease_ms,
    prefix: prefix.to_owned(),
    op_timeout_ms: 500,
    // A fresh server looks like one that lost its data: most tests do not want the wait.
    data_loss_grace_ms: Some(0),
    ..Default::default()
  }
}

/// The next notice within `ms`, if any.
pub async fn next_notice(rx: &mut UnboundedReceiver<Notice>, ms: u64) -> Option<Notice> {
  tokio::time::timeout(Duration::from_millis(ms), rx.recv())
    .await
    .ok()
    .flatten()
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
  let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
  sorted[i]
}
