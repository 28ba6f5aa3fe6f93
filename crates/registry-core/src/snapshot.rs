//! Snapshots: the list of sessions written to disk as JSON, so a bot can re-create its
//! sessions after a restart. Never a socket, never a QR code.
//!
//! Writes are atomic: a temporary file in the same directory (mode 0600), flushed to disk,
//! then renamed over the target, then the directory flushed. A failure at any point leaves the
//! previous snapshot as it was. A symbolic link is followed to the file it names (that file
//! is replaced, the link stays); anything else that is not a regular file is refused
//! untouched. Each save first sweeps the temporary files that killed writers left behind.
//!
//! Reads refuse anything but a regular file (without opening it, so a FIFO cannot block) and
//! stop at [`MAX_SNAPSHOT_BYTES`].

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::errors::RegistryError;
use crate::state::{LastDisconnect, Me, SessionState, Status, FORBIDDEN_KEYS, READ_ONLY_KEYS};

/// The format version this build writes and reads.
pub const SNAPSHOT_VERSION: u32 = 1;

/// One saved session: what a bot needs to re-create it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SavedSession {
  pub session_id: String,
  pub created_at: f64,
  pub last_activity: f64,
  pub is_connected: bool,
  pub error: Option<String>,
  pub status: Option<Status>,
  pub last_disconnect: Option<LastDisconnect>,
  pub me: Option<Me>,
  pub connects: u32,
  pub disconnects: u32,
  pub connected_at: Option<f64>,
  pub disconnected_at: Option<f64>,
  pub last_inbound_at: Option<f64>,
  pub last_outbound_at: Option<f64>,
  pub messages_in: u64,
  pub messages_out: u64,
  /// Keys the bot set with `updateSessionState`.
  pub custom: Map<String, Value>,
}

impl SavedSession {
  pub fn from_state(session_id: &str, s: &SessionState) -> Self {
    SavedSession {
      session_id: session_id.to_owned(),
      created_at: s.created_at,
      last_activity: s.last_activity(),
      is_connected: s.is_connected,
      error: s.error().map(str::to_owned),
      status: s.status,
      last_disconnect: s.last_disconnect().cloned(),
      me: s.me().cloned(),
      connects: s.connects(),
      disconnects: s.disconnects(),
      connected_at: s.connected_at(),
      disconnected_at: s.disconnected_at(),
      last_inbound_at: s.last_inbound_at(),
      last_outbound_at: s.last_outbound_at(),
      messages_in: s.messages_in(),
      messages_out: s.messages_out(),
      custom: s.custom().clone(),
    }
  }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotFile {
  pub version: u32,
  /// Epoch milliseconds.
  pub saved_at: f64,
  pub sessions: Vec<SavedSession>,
}

/// The snapshot's bytes. Their size is checked against [`MAX_SNAPSHOT_BYTES`] when written.
pub fn encode(saved_at: f64, sessions: Vec<SavedSession>) -> Result<Vec<u8>, RegistryError> {
  let file = SnapshotFile {
    version: SNAPSHOT_VERSION,
    saved_at,
    sessions,
  };
  serde_json::to_vec_pretty(&file)
    .map_err(|e| RegistryError::Internal(format!("cannot encode snapshot: {e}")))
}

pub fn decode(path: &Path, bytes: &[u8]) -> Result<SnapshotFile, RegistryError> {
  let shown = path.display();
  let value: Value = serde_json::from_slice(bytes).map_err(|e| {
    RegistryError::SnapshotCorrupt(format!("snapshot {shown} is not valid JSON: {e}"))
  })?;
  match value.get("version") {
    Some(Value::Number(n)) if n.as_u64() == Some(u64::from(SNAPSHOT_VERSION)) => {}
    Some(Value::Number(n)) => {
      return Err(RegistryError::SnapshotVersion(format!(
        "snapshot {shown} has version {n}; this build reads version {SNAPSHOT_VERSION}"
      )))
    }
    _ => {
      return Err(RegistryError::SnapshotCorrupt(format!(
        "snapshot {shown} has no numeric `version` field"
      )))
    }
  }
  let file: SnapshotFile = serde_json::from_value(value).map_err(|e| {
    RegistryError::SnapshotCorrupt(format!(
      "snapshot {shown} does not have the expected shape: {e}"
    ))
  })?;
  for session in &file.sessions {
    if let Some(problem) = custom_key_problem(&session.custom) {
      return Err(RegistryError::SnapshotCorrupt(format!(
        "snapshot {shown}: session '{}' has {problem}, which updateSessionState never stores",
        session.session_id
      )));
    }
  }
  Ok(file)
}

/// State keys `updateSessionState` keeps in their own fields (or ignores), so they never
/// appear among the custom keys of a state the registry saved.
const FIELD_KEYS: [&str; 5] = [
  "createdAt",
  "lastActivity",
  "isConnected",
  "error",
  "status",
];

/// Custom keys that no snapshot written by the registry can hold: a key that could reach a
/// prototype (at any depth), a key only the registry sets, or a key with its own field. A file
/// holding one was not written by `saveSnapshot`; refusing it keeps such keys away from a bot
/// that would copy `custom` with `Object.assign` or hand it back to `updateSessionState`.
fn custom_key_problem(custom: &Map<String, Value>) -> Option<String> {
  fn forbidden_in(v: &Value, path: &str) -> Option<String> {
    match v {
      Value::Object(map) => map.iter().find_map(|(k, v)| {
        let here = format!("{path}.{k}");
        if FORBIDDEN_KEYS.contains(&k.as_str()) {
          Some(format!("the key '{here}'"))
        } else {
          forbidden_in(v, &here)
        }
      }),
      Value::Array(items) => items
        .iter()
        .enumerate()
        .find_map(|(i, v)| forbidden_in(v, &format!("{path}[{i}]"))),
      _ => None,
    }
  }
  custom.iter().find_map(|(k, v)| {
    let key = k.as_str();
    if FORBIDDEN_KEYS.contains(&key) || READ_ONLY_KEYS.contains(&key) || FIELD_KEYS.contains(&key) {
      Some(format!("the custom key '{key}'"))
    } else {
      forbidden_in(v, key)
    }
  })
}

fn io_error(action: &str, path: &Path, e: std::io::Error) -> RegistryError {
  let text = format!("cannot {action} {}: {e}", path.display());
  if e.kind() == ErrorKind::NotFound && action == "read snapshot" {
    RegistryError::SnapshotNotFound(text)
  } else {
    RegistryError::SnapshotIo(text)
  }
}

/// The largest snapshot `saveSnapshot` writes and `loadSnapshot` reads: 256 MiB. A session
/// takes about 600 bytes plus its custom keys (measured: 100,000 sessions with four short
/// custom keys, 59 MB), so 100,000 sessions fit with about 2 KB of custom keys each. The cap keeps a wrong path (a huge file, a device) from using up memory.
pub const MAX_SNAPSHOT_BYTES: u64 = 256 * 1024 * 1024;

/// Symbolic links followed before a path counts as a loop (Linux's own limit).
const MAX_SYMLINK_HOPS: usize = 40;

/// A temporary file is only swept once it has not changed for this long, even when its
/// writer's pid is not running: a pid means nothing across pid namespaces (containers) or
/// hosts sharing the directory, and a live writer there keeps its file fresh.
const SWEEP_GRACE: Duration = Duration::from_secs(60);

/// Without a pid to check, only temporary files this old are taken for abandoned.
#[cfg(not(unix))]
const SWEEP_AGE_WITHOUT_PID: Duration = Duration::from_secs(3600);

fn too_large(path: &Path, what: String) -> RegistryError {
  RegistryError::SnapshotTooLarge(format!(
    "snapshot {} {what}, more than the {MAX_SNAPSHOT_BYTES}-byte (256 MiB) limit",
    path.display()
  ))
}

/// What a file that is not a regular file is, for a message.
fn kind_of(ft: &fs::FileType) -> &'static str {
  #[cfg(unix)]
  {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_fifo() {
      return "a FIFO";
    }
    if ft.is_socket() {
      return "a socket";
    }
    if ft.is_char_device() {
      return "a character device";
    }
    if ft.is_block_device() {
      return "a block device";
    }
  }
  if ft.is_dir() {
    "a directory"
  } else if ft.is_symlink() {
    "a symbolic link"
  } else {
    "not a regular file"
  }
}

fn not_regular(action: &str, given: &Path, real: &Path, ft: &fs::FileType) -> RegistryError {
  let via = if given == real {
    String::new()
  } else {
    format!(" (the symbolic link leads to {})", real.display())
  };
  RegistryError::SnapshotIo(format!(
    "cannot {action} {}{via}: it is {}, not a regular file; left untouched",
    given.display(),
    kind_of(ft)
  ))
}

/// Follows `path` through symbolic links (chains, relative targets) to the path that names
/// the file itself, as `rename` would otherwise replace the link. A path that does not exist
/// yet (also the target of a dangling link) is where the new file goes. Anything but a
/// regular file or a new path is refused.
fn resolve_target(path: &Path) -> Result<PathBuf, RegistryError> {
  let mut current = path.to_path_buf();
  for _ in 0..=MAX_SYMLINK_HOPS {
    let meta = match fs::symlink_metadata(&current) {
      Ok(meta) => meta,
      Err(e) if e.kind() == ErrorKind::NotFound => return Ok(current),
      Err(e) => return Err(io_error("write snapshot", &current, e)),
    };
    let ft = meta.file_type();
    if ft.is_file() {
      return Ok(current);
    }
    if !ft.is_symlink() {
      return Err(not_regular("write snapshot", path, &current, &ft));
    }
    let target = fs::read_link(&current).map_err(|e| io_error("follow", &current, e))?;
    // A relative target is relative to the link's own directory.
    current = match current.parent() {
      Some(dir) if target.is_relative() => dir.join(target),
      _ => target,
    };
  }
  Err(RegistryError::SnapshotIo(format!(
    "cannot write snapshot {}: more than {MAX_SYMLINK_HOPS} symbolic links (a loop?)",
    path.display()
  )))
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// At most this many bytes of the target's name go into the temporary file's name, so that
/// with its prefix and suffix it stays within NAME_MAX (255 bytes on common file systems) for
/// any target name that is itself valid.
const TMP_NAME_KEEP: usize = 200;

/// `.{name}.`: the start of every temporary file's name for `target`, followed by
/// `{pid}.{counter}.tmp`.
fn temp_prefix(target: &Path) -> String {
  let mut name = target
    .file_name()
    .map(|n| n.to_string_lossy().into_owned())
    .unwrap_or_else(|| "snapshot".into());
  if name.len() > TMP_NAME_KEEP {
    let mut cut = TMP_NAME_KEEP;
    while !name.is_char_boundary(cut) {
      cut -= 1;
    }
    name.truncate(cut);
  }
  format!(".{name}.")
}

fn temp_path_for(target: &Path) -> PathBuf {
  let unique = format!(
    "{}{}.{}.tmp",
    temp_prefix(target),
    std::process::id(),
    TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
  );
  target.with_file_name(unique)
}

/// The writer's pid when `name` is exactly one of our temporary names for the target whose
/// prefix is `prefix`; `None` for anything else.
fn temp_writer_pid(name: &str, prefix: &str) -> Option<u32> {
  let (pid, counter) = name
    .strip_prefix(prefix)?
    .strip_suffix(".tmp")?
    .split_once('.')?;
  let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
  if !digits(pid) || !digits(counter) || counter.parse::<u64>().is_err() {
    return None;
  }
  // Never 0 or a negative pid_t: kill() would then ask about process groups.
  pid
    .parse::<u32>()
    .ok()
    .filter(|&p| p > 0 && p <= i32::MAX as u32)
}

/// Whether the writer of a temporary file `age` old, named for `pid`, is gone for good.
#[cfg(unix)]
fn writer_is_gone(pid: u32, age: Duration) -> bool {
  if age < SWEEP_GRACE {
    return false;
  }
  // SAFETY: signal 0 sends nothing; it only asks whether the process exists. EPERM means it
  // exists under another user, so only ESRCH counts as gone.
  let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
  rc == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

#[cfg(not(unix))]
fn writer_is_gone(_pid: u32, age: Duration) -> bool {
  age >= SWEEP_GRACE.max(SWEEP_AGE_WITHOUT_PID)
}

fn parent_dir(path: &Path) -> &Path {
  match path.parent() {
    Some(dir) if !dir.as_os_str().is_empty() => dir,
    _ => Path::new("."),
  }
}

/// Removes the temporary files that writers killed in the middle of a save of `target` left
/// behind. Only regular files with exactly our temporary name for this target, of another
/// process that no longer runs, untouched for [`SWEEP_GRACE`]. Best effort: a file that
/// cannot be removed stays.
fn sweep_stale_temps(target: &Path) {
  let prefix = temp_prefix(target);
  let Ok(entries) = fs::read_dir(parent_dir(target)) else {
    return;
  };
  let now = SystemTime::now();
  for entry in entries.flatten() {
    let name = entry.file_name();
    let Some(pid) = name.to_str().and_then(|n| temp_writer_pid(n, &prefix)) else {
      continue;
    };
    if pid == std::process::id() {
      continue; // this process's own saves, maybe still running
    }
    let Ok(meta) = fs::symlink_metadata(entry.path()) else {
      continue;
    };
    // A modification time in the future counts as fresh.
    let age = meta
      .modified()
      .ok()
      .and_then(|m| now.duration_since(m).ok())
      .unwrap_or_default();
    if meta.is_file() && writer_is_gone(pid, age) {
      let _ = fs::remove_file(entry.path());
    }
  }
}

/// Refuses a snapshot of `len` bytes when it is over `cap`.
fn check_size(path: &Path, len: u64, cap: u64) -> Result<(), RegistryError> {
  if len > cap {
    return Err(too_large(path, format!("would be {len} bytes")));
  }
  Ok(())
}

/// Writes `bytes` to `path` atomically. Blocking: run it off the JS thread.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RegistryError> {
  write_atomic_within(path, bytes, MAX_SNAPSHOT_BYTES)
}

fn write_atomic_within(path: &Path, bytes: &[u8], cap: u64) -> Result<(), RegistryError> {
  if path.file_name().is_none() {
    return Err(RegistryError::SnapshotIo(format!(
      "snapshot path {} does not name a file",
      path.display()
    )));
  }
  check_size(path, bytes.len() as u64, cap)?;
  let real = resolve_target(path)?;
  if real.file_name().is_none() {
    return Err(RegistryError::SnapshotIo(format!(
      "snapshot path {} leads to {}, which does not name a file",
      path.display(),
      real.display()
    )));
  }
  sweep_stale_temps(&real);
  let tmp = temp_path_for(&real);
  let result = (|| {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
      use std::os::unix::fs::OpenOptionsExt;
      options.mode(0o600);
    }
    let mut file = options
      .open(&tmp)
      .map_err(|e| io_error("create temporary file", &tmp, e))?;
    file
      .write_all(bytes)
      .map_err(|e| io_error("write", &tmp, e))?;
    file.sync_all().map_err(|e| io_error("flush", &tmp, e))?;
    drop(file);
    // Looked at again just before the rename: something put there meanwhile is not replaced.
    if let Ok(meta) = fs::symlink_metadata(&real) {
      if !meta.is_file() {
        return Err(not_regular(
          "write snapshot",
          path,
          &real,
          &meta.file_type(),
        ));
      }
    }
    fs::rename(&tmp, &real).map_err(|e| io_error("replace snapshot", &real, e))?;
    // The rename is durable only once the directory entry is on disk.
    #[cfg(unix)]
    if let Ok(d) = File::open(parent_dir(&real)) {
      let _ = d.sync_all();
    }
    Ok(())
  })();
  if result.is_err() {
    let _ = fs::remove_file(&tmp);
  }
  result
}

/// Opens a file for reading without blocking on a FIFO and without making a terminal the
/// process's controlling one, should the path have changed since it was checked.
fn open_for_reading(path: &Path) -> std::io::Result<File> {
  let mut options = OpenOptions::new();
  options.read(true);
  #[cfg(unix)]
  {
    use std::os::unix::fs::OpenOptionsExt;
    options.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
  }
  options.open(path)
}

/// Reads and checks a snapshot. Blocking: run it off the JS thread.
pub fn read(path: &Path) -> Result<SnapshotFile, RegistryError> {
  read_within(path, MAX_SNAPSHOT_BYTES)
}

fn read_within(path: &Path, cap: u64) -> Result<SnapshotFile, RegistryError> {
  // Checked before opening: opening a FIFO or a device can block or have side effects.
  let meta = fs::metadata(path).map_err(|e| io_error("read snapshot", path, e))?;
  if !meta.is_file() {
    return Err(not_regular("read snapshot", path, path, &meta.file_type()));
  }
  let file = open_for_reading(path).map_err(|e| io_error("read snapshot", path, e))?;
  // And again on what was opened, in case the path changed in between.
  let meta = file
    .metadata()
    .map_err(|e| io_error("read snapshot", path, e))?;
  if !meta.is_file() {
    return Err(not_regular("read snapshot", path, path, &meta.file_type()));
  }
  if meta.len() > cap {
    return Err(too_large(path, format!("is {} bytes", meta.len())));
  }
  let mut bytes = Vec::with_capacity(meta.len() as usize);
  // One byte past the cap tells a file that grew since fstat from one that is just full.
  file
    .take(cap + 1)
    .read_to_end(&mut bytes)
    .map_err(|e| io_error("read snapshot", path, e))?;
  if bytes.len() as u64 > cap {
    return Err(too_large(path, "grew while it was read".into()));
  }
  decode(path, &bytes)
}

#[cfg(test)]
mod tests {
  use super::*;

  /// A fresh directory for one test, removed again when the test is done.
  struct Scratch(PathBuf);

  impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
      &self.0
    }
  }

  impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
      &self.0
    }
  }

  impl Drop for Scratch {
    fn drop(&mut self) {
      let _ = fs::remove_dir_all(&self.0);
    }
  }

  fn scratch_dir(name: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("bsr-snap-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
  }

  fn sample() -> Vec<SavedSession> {
    let mut state = SessionState::new(1000.0, true, 0);
    state
      .custom_mut()
      .insert("phone".into(), Value::from("+100"));
    state.more_mut().me = Some(Box::new(Me {
      id: Some("1@s.whatsapp.net".into()),
      lid: Some("2@lid".into()),
    }));
    vec![SavedSession::from_state("user_1", &state)]
  }

  #[test]
  fn round_trip() {
    let dir = scratch_dir("rt");
    let path = dir.join("sessions.json");
    write_atomic(&path, &encode(5.0, sample()).unwrap()).unwrap();
    let back = read(&path).unwrap();
    assert_eq!(back.version, SNAPSHOT_VERSION);
    assert_eq!(back.sessions, sample());
    #[cfg(unix)]
    {
      use std::os::unix::fs::PermissionsExt;
      assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
      );
    }
    let leftovers: Vec<_> = fs::read_dir(&dir).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
  }

  #[test]
  fn bad_files_are_refused_with_their_code() {
    let dir = scratch_dir("bad");
    let path = dir.join("s.json");
    assert_eq!(read(&path).unwrap_err().code(), "ERR_SNAPSHOT_NOT_FOUND");
    fs::write(&path, b"{\"version\":1,\"savedAt\":1,\"sess").unwrap();
    assert_eq!(read(&path).unwrap_err().code(), "ERR_SNAPSHOT_CORRUPT");
    fs::write(&path, b"{\"version\":99,\"savedAt\":1,\"sessions\":[]}").unwrap();
    assert_eq!(read(&path).unwrap_err().code(), "ERR_SNAPSHOT_VERSION");
    fs::write(
      &path,
      b"{\"version\":1,\"savedAt\":1,\"sessions\":[{\"x\":1}]}",
    )
    .unwrap();
    assert_eq!(read(&path).unwrap_err().code(), "ERR_SNAPSHOT_CORRUPT");
    fs::write(&path, b"[]").unwrap();
    assert_eq!(read(&path).unwrap_err().code(), "ERR_SNAPSHOT_CORRUPT");
  }

  #[test]
  fn keys_the_registry_never_stores_are_refused() {
    let dir = scratch_dir("keys");
    let path = dir.join("s.json");
    let with_custom = |custom: &str| {
      let text = String::from_utf8(encode(1.0, sample()).unwrap()).unwrap();
      let text = text.replace("\"phone\": \"+100\"", custom);
      assert!(text.contains(custom), "the sample has the phone key");
      fs::write(&path, text).unwrap();
      read(&path)
    };
    for bad in [
      "\"__proto__\": {\"polluted\": true}",
      "\"constructor\": {\"prototype\": {\"polluted\": true}}",
      "\"nested\": {\"list\": [{\"__proto__\": 1}]}",
      "\"threadId\": 3",
      "\"isConnected\": true",
    ] {
      let err = with_custom(bad).unwrap_err();
      assert_eq!(err.code(), "ERR_SNAPSHOT_CORRUPT", "{bad}");
      assert!(err.to_string().contains("user_1"), "{err}");
    }
    // Ordinary keys, also ones named like saved fields, are data.
    let ok = with_custom("\"sessionId\": \"x\", \"proto\": {\"__protos__\": 1}").unwrap();
    assert_eq!(ok.sessions[0].custom["sessionId"], "x");
  }

  #[test]
  fn a_target_with_a_long_name_is_written() {
    let dir = scratch_dir("long");
    // 250 bytes: a valid name, but not once the temporary prefix and suffix are added.
    let name = format!("{}é.json", "s".repeat(243));
    assert_eq!(name.len(), 250);
    let path = dir.join(&name);
    write_atomic(&path, &encode(1.0, sample()).unwrap()).unwrap();
    assert_eq!(read(&path).unwrap().sessions, sample());
    let names: Vec<_> = fs::read_dir(&dir).unwrap().collect();
    assert_eq!(names.len(), 1, "no temporary file is left behind");
    assert!(temp_path_for(&path).file_name().unwrap().len() <= 255);
  }

  #[test]
  fn a_failed_write_keeps_the_previous_snapshot() {
    let dir = scratch_dir("keep");
    let path = dir.join("s.json");
    write_atomic(&path, &encode(1.0, sample()).unwrap()).unwrap();
    // The target replaced by a directory: the rename fails, nothing is lost or left over.
    let as_dir = dir.join("d.json");
    fs::create_dir(&as_dir).unwrap();
    fs::write(as_dir.join("inside"), b"x").unwrap();
    let err = write_atomic(&as_dir, b"{}").unwrap_err();
    assert_eq!(err.code(), "ERR_SNAPSHOT_IO");
    assert!(as_dir.is_dir());
    let names: Vec<_> = fs::read_dir(&dir)
      .unwrap()
      .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
      .collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    assert_eq!(read(&path).unwrap().sessions, sample());
    // A missing directory.
    let err = write_atomic(&dir.join("nope/s.json"), b"{}").unwrap_err();
    assert_eq!(err.code(), "ERR_SNAPSHOT_IO");
  }
  #[cfg(unix)]
  fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
  }

  #[cfg(unix)]
  #[test]
  fn symbolic_links_are_followed_to_the_file_they_name() {
    use std::os::unix::fs::symlink;
    let dir = scratch_dir("links");
    let real_dir = dir.join("real");
    let link_dir = dir.join("links");
    fs::create_dir_all(&real_dir).unwrap();
    fs::create_dir_all(&link_dir).unwrap();
    let real = real_dir.join("s.json");
    fs::write(&real, b"old").unwrap();
    // A chain with relative targets: links/a -> b -> ../real/s.json
    symlink("b", link_dir.join("a")).unwrap();
    symlink("../real/s.json", link_dir.join("b")).unwrap();
    write_atomic(&link_dir.join("a"), &encode(1.0, sample()).unwrap()).unwrap();
    assert!(fs::symlink_metadata(link_dir.join("a"))
      .unwrap()
      .file_type()
      .is_symlink());
    assert!(fs::symlink_metadata(link_dir.join("b"))
      .unwrap()
      .file_type()
      .is_symlink());
    assert_eq!(read(&real).unwrap().sessions, sample());
    let names = |d: &Path| -> Vec<String> {
      let mut v: Vec<_> = fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
      v.sort();
      v
    };
    assert_eq!(names(&link_dir), ["a", "b"]);
    assert_eq!(names(&real_dir), ["s.json"]);

    // A dangling link: the file is created where it points, the link stays.
    symlink("../real/new.json", link_dir.join("dangling")).unwrap();
    write_atomic(&link_dir.join("dangling"), &encode(2.0, sample()).unwrap()).unwrap();
    assert!(fs::symlink_metadata(link_dir.join("dangling"))
      .unwrap()
      .file_type()
      .is_symlink());
    assert_eq!(read(&real_dir.join("new.json")).unwrap().saved_at, 2.0);

    // A loop: refused, the links untouched.
    symlink("loop2", link_dir.join("loop1")).unwrap();
    symlink("loop1", link_dir.join("loop2")).unwrap();
    let err = write_atomic(&link_dir.join("loop1"), b"{}").unwrap_err();
    assert_eq!(err.code(), "ERR_SNAPSHOT_IO");
    assert!(err.to_string().contains("symbolic links"), "{err}");
    assert_eq!(
      fs::read_link(link_dir.join("loop1")).unwrap(),
      Path::new("loop2")
    );
  }

  #[cfg(unix)]
  #[test]
  fn what_is_not_a_regular_file_is_refused_untouched() {
    use std::os::unix::fs::{symlink, FileTypeExt};
    let dir = scratch_dir("kinds");
    let fifo = dir.join("fifo");
    mkfifo(&fifo);
    let empty_dir = dir.join("empty");
    fs::create_dir(&empty_dir).unwrap();
    symlink("fifo", dir.join("to-fifo")).unwrap();
    for (path, kind) in [
      (&fifo, "a FIFO"),
      (&empty_dir, "a directory"),
      (&dir.join("to-fifo"), "a FIFO"),
    ] {
      let err = write_atomic(path, &encode(1.0, sample()).unwrap()).unwrap_err();
      assert_eq!(err.code(), "ERR_SNAPSHOT_IO");
      assert!(err.to_string().contains(kind), "{err}");
    }
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    assert!(empty_dir.is_dir());
    // Reading: refused at once, never blocking on the FIFO or reading a device.
    for (path, kind) in [
      (fifo.as_path(), "a FIFO"),
      (dir.join("to-fifo").as_path(), "a FIFO"),
      (empty_dir.as_path(), "a directory"),
      (Path::new("/dev/zero"), "a character device"),
    ] {
      let err = read(path).unwrap_err();
      assert_eq!(err.code(), "ERR_SNAPSHOT_IO");
      assert!(err.to_string().contains(kind), "{err}");
    }
    let leftovers: Vec<_> = fs::read_dir(&dir)
      .unwrap()
      .map(|e| e.unwrap().file_name())
      .filter(|n| n.to_string_lossy().ends_with(".tmp"))
      .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
  }

  #[test]
  fn sizes_over_the_cap_are_refused_on_both_sides() {
    let dir = scratch_dir("cap");
    let path = dir.join("s.json");
    let bytes = encode(1.0, sample()).unwrap();
    let len = bytes.len() as u64;
    let err = write_atomic_within(&path, &bytes, len - 1).unwrap_err();
    assert_eq!(err.code(), "ERR_SNAPSHOT_TOO_LARGE");
    assert!(!path.exists(), "nothing written");
    write_atomic_within(&path, &bytes, len).unwrap();
    assert_eq!(read_within(&path, len).unwrap().sessions, sample());
    let err = read_within(&path, len - 1).unwrap_err();
    assert_eq!(err.code(), "ERR_SNAPSHOT_TOO_LARGE");
    assert!(err.to_string().contains(&len.to_string()), "{err}");
    // A 100,000-session registry without custom keys fits well within the real cap.
    let one = encode(
      1.0,
      vec![SavedSession::from_state(
        "user_100000",
        &SessionState::new(1.0, true, 0),
      )],
    )
    .unwrap()
    .len() as u64;
    assert!(
      one * 100_000 < MAX_SNAPSHOT_BYTES / 3,
      "{one} bytes per session"
    );
  }

  #[test]
  fn only_our_own_temporary_names_are_recognised() {
    let prefix = temp_prefix(Path::new("/x/s.json"));
    assert_eq!(prefix, ".s.json.");
    assert_eq!(temp_writer_pid(".s.json.123.0.tmp", &prefix), Some(123));
    assert_eq!(
      temp_writer_pid(".s.json.9.18446744073709551615.tmp", &prefix),
      Some(9)
    );
    for other in [
      ".s.json.0.1.tmp",
      ".s.json.-5.1.tmp",
      ".s.json.2147483648.1.tmp",
      ".s.json.12.x.tmp",
      ".s.json.12..tmp",
      ".s.json..1.tmp",
      ".s.json.12.1.tmp.bak",
      ".s.json.12.1.2.tmp",
      ".s.json.+12.1.tmp",
      "s.json.12.1.tmp",
      ".t.json.12.1.tmp",
      ".s.json.12.1",
    ] {
      assert_eq!(temp_writer_pid(other, &prefix), None, "{other}");
    }
    let mine = temp_path_for(Path::new("/x/s.json"));
    let mine = mine.file_name().unwrap().to_str().unwrap();
    assert_eq!(temp_writer_pid(mine, &prefix), Some(std::process::id()));
  }

  #[cfg(unix)]
  #[test]
  fn the_sweep_removes_only_stale_files_of_dead_writers() {
    use std::process::Command;
    let dir = scratch_dir("sweep");
    let target = dir.join("s.json");
    let mut gone = Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    let mut live = Command::new("sleep").arg("30").spawn().unwrap();
    let old = SystemTime::now() - Duration::from_secs(600);
    let plant = |name: &str, aged: bool| {
      let p = dir.join(name);
      fs::write(&p, b"half a snapshot").unwrap();
      if aged {
        File::options()
          .write(true)
          .open(&p)
          .unwrap()
          .set_modified(old)
          .unwrap();
      }
    };
    let swept = format!(".s.json.{dead}.0.tmp");
    plant(&swept, true);
    let kept = [
      format!(".s.json.{}.1.tmp", live.id()), // a live writer
      format!(".s.json.{}.2.tmp", std::process::id()), // this process
      format!(".s.json.{dead}.3.tmp.bak"),    // not our name
      format!(".other.json.{dead}.4.tmp"),    // another target
      format!("s.json.{dead}.5.tmp"),         // not our name
    ];
    for name in &kept {
      plant(name, true);
    }
    let fresh = format!(".s.json.{dead}.6.tmp"); // within the grace period
    plant(&fresh, false);
    let as_dir = format!(".s.json.{dead}.7.tmp"); // a directory with our name
    fs::create_dir(dir.join(&as_dir)).unwrap();

    write_atomic(&target, &encode(1.0, sample()).unwrap()).unwrap();
    let _ = live.kill();
    let _ = live.wait();
    let mut names: Vec<String> = fs::read_dir(&dir)
      .unwrap()
      .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
      .collect();
    names.sort();
    let mut expected: Vec<String> = kept.to_vec();
    expected.extend([fresh, as_dir, "s.json".into()]);
    expected.sort();
    assert_eq!(names, expected, "only {swept} is gone");
  }
}
