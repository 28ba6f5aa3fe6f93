//! Snapshots: the list of sessions written to disk as JSON, so a bot can re-create its
//! sessions after a restart. Never a socket, never a QR code.
//!
//! Writes are atomic: a temporary file in the same directory (mode 0600), flushed to disk,
//! then renamed over the target, then the directory flushed. A failure at any point leaves the
//! previous snapshot as it was.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

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
      last_activity: s.last_activity,
      is_connected: s.is_connected,
      error: s.error.clone(),
      status: s.status,
      last_disconnect: s.last_disconnect.clone(),
      me: s.me.clone(),
      connects: s.connects,
      disconnects: s.disconnects,
      connected_at: s.connected_at,
      disconnected_at: s.disconnected_at,
      last_inbound_at: s.last_inbound_at,
      last_outbound_at: s.last_outbound_at,
      messages_in: s.messages_in,
      messages_out: s.messages_out,
      custom: s.custom.clone(),
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

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// At most this many bytes of the target's name go into the temporary file's name, so that
/// with its prefix and suffix it stays within NAME_MAX (255 bytes on common file systems) for
/// any target name that is itself valid.
const TMP_NAME_KEEP: usize = 200;

fn temp_path_for(target: &Path) -> PathBuf {
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
  let unique = format!(
    ".{name}.{}.{}.tmp",
    std::process::id(),
    TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
  );
  target.with_file_name(unique)
}

/// Writes `bytes` to `path` atomically. Blocking: run it off the JS thread.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RegistryError> {
  if path.file_name().is_none() {
    return Err(RegistryError::SnapshotIo(format!(
      "snapshot path {} does not name a file",
      path.display()
    )));
  }
  let tmp = temp_path_for(path);
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
    fs::rename(&tmp, path).map_err(|e| io_error("replace snapshot", path, e))?;
    // The rename is durable only once the directory entry is on disk.
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
      let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
      } else {
        dir
      };
      if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
      }
    }
    Ok(())
  })();
  if result.is_err() {
    let _ = fs::remove_file(&tmp);
  }
  result
}

/// Reads and checks a snapshot. Blocking: run it off the JS thread.
pub fn read(path: &Path) -> Result<SnapshotFile, RegistryError> {
  let bytes = fs::read(path).map_err(|e| io_error("read snapshot", path, e))?;
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
    state.custom.insert("phone".into(), Value::from("+100"));
    state.me = Some(Me {
      id: Some("1@s.whatsapp.net".into()),
      lid: Some("2@lid".into()),
    });
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
}
